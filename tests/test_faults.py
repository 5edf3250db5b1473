"""Faults that really happen: a sampling job killed with SIGKILL mid-run and rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rmood.io import read_jsonl

SAMPLING = dict(backend="hf", n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, batch_size=1, shards=1)
SCRIPT = """
import sys, json
from rmood.generation import sample_shard
model, prompts, out, sampling = sys.argv[1:5]
sample_shard(model, [prompts], out, 0, 0, json.loads(sampling), "float32")
"""


def run_sampler(tiny_base: Path, prompts: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(tiny_base), str(prompts), str(out), json.dumps(SAMPLING)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_killed_sampling_shard_resumes_without_duplicates(tiny_base, prompt_data, tmp_path):
    from rmood.generation import sample_shard

    full = tmp_path / "full.jsonl"
    sample_shard(str(tiny_base), [str(prompt_data["preference"])], str(full), 0, 0, SAMPLING, "float32")
    expected = read_jsonl(full)

    out = tmp_path / "killed.jsonl"
    partial = out.with_name(out.name + ".partial")
    process = run_sampler(tiny_base, prompt_data["preference"], out)
    deadline = time.monotonic() + 120
    while not (partial.exists() and partial.read_bytes().count(b"\n") >= 2 * SAMPLING["n"]):
        assert process.poll() is None, "the sampler finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = partial.read_bytes().count(b"\n")
    assert not out.exists() and 0 < written < len(expected)  # killed mid-run: nothing looks finished

    sample_shard(str(tiny_base), [str(prompt_data["preference"])], str(out), 0, 0, SAMPLING, "float32")
    resumed = read_jsonl(out)
    keys = [(r["prompt_id"], r["sample"]) for r in resumed]
    assert len(keys) == len(set(keys)) == len(expected)
    assert sorted(resumed, key=json.dumps) == sorted(expected, key=json.dumps)
    assert not partial.exists()
