"""The cluster path: part of the DAG through a real one-node Slurm on this machine with `--profile profiles/slurm`.

scripts/local-slurm.sh installs Slurm when it is missing (root, apt-get), starts it in a temporary folder and writes
wrappers for the Slurm clients; they go first on PATH. The same targets also run locally, and the artifacts of the
two runs must be the same bytes (model weights: the same tensors).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slurm
SCRIPT = ROOT / "scripts" / "local-slurm.sh"
EXPERIMENT = "test"
TARGET = f"results/{EXPERIMENT}/rep0/labels/gold.jsonl"  # replicate 0's policy side (replicate_scope: full)
# data -> base -> sft -> sft_sampling -> gold_labeling (2 shards each, side by side) -> gather_labels
JOBS = {"data": 1, "base": 1, "sft": 1, "sft_sampling": 2, "gold_labeling": 2, "gather_labels": 1}
GPU_RULE = "gold_labeling"
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.")


def script(command: str, folder: Path, timeout: int) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(SCRIPT), command, str(folder)], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"local-slurm.sh {command} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> Path:
    """A running one-node Slurm; yields the folder of its client wrappers (bin/). Always stopped afterwards."""
    folder = tmp_path_factory.mktemp("slurm")
    started = time.monotonic()
    try:
        script("start", folder, timeout=600)  # apt-get install included when the packages are missing
        print(f"Slurm installed/started in {time.monotonic() - started:.1f} s")
        yield folder / "bin"
    finally:
        stopped = time.monotonic()
        script("stop", folder, timeout=120)
        print(f"Slurm stopped in {time.monotonic() - stopped:.1f} s")


def snakemake(workdir: Path, path: list[str], *args: str) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(ROOT / ".test" / "config.yaml"), *args, "--", TARGET,
    ]
    env = {**os.environ, "PATH": os.pathsep.join([*path, str(Path(sys.executable).parent), os.environ["PATH"]])}
    return subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: int) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()  # the Slurm jobs it left are cancelled when the fixture stops Slurm
        output, _ = process.communicate()
        pytest.fail(f"snakemake ran past {timeout} s:\n{output[-5000:]}")
    assert process.returncode == 0, output[-5000:]
    return output


def same_tensors(a: Path, b: Path) -> bool:
    from safetensors.numpy import load_file

    left, right = load_file(a), load_file(b)
    return left.keys() == right.keys() and all(
        left[k].dtype == right[k].dtype and left[k].tobytes() == right[k].tobytes() for k in left
    )


@pytest.fixture(scope="module")
def runs(slurm, tmp_path_factory) -> dict[str, Path | str]:
    """The targets through Slurm and, meanwhile, locally (each in its own folder)."""
    on_slurm, local = tmp_path_factory.mktemp("on_slurm"), tmp_path_factory.mktemp("local")
    started = time.monotonic()
    local_run = snakemake(local, [], "--profile", str(ROOT / "profiles" / "default"), "--cores", "1")
    try:
        # one GPU job (the test config asks for none): Slurm must give it the node's (fake) GPU
        slurm_run = snakemake(on_slurm, [str(slurm)], "--profile", str(ROOT / "profiles" / "slurm"),
                              "--set-resources", f"{GPU_RULE}:gpu=1")
        output = finish(slurm_run, timeout=600)
        print(f"DAG through Slurm in {time.monotonic() - started:.1f} s")
        finish(local_run, timeout=300)
    finally:
        if local_run.poll() is None:
            local_run.kill()
            local_run.communicate()
    return {"slurm": on_slurm, "local": local, "output": output, "bin": slurm}


def test_every_job_went_through_slurm(runs):
    submitted = {slurm_id: Path(log) for _, slurm_id, log in SUBMITTED.findall(runs["output"])}
    rules = {}
    for slurm_id, log in submitted.items():
        rules[slurm_id] = log.relative_to(runs["slurm"] / "logs" / "slurm").parts[0].removeprefix("rule_")
        assert f"rule {rules[slurm_id]}:" in log.read_text(), log.read_text()[-2000:]
    assert sorted(rules.values()) == sorted(rule for rule, n in JOBS.items() for _ in range(n)), runs["output"][-5000:]

    # finished jobs stay in squeue for MinJobAge (300 s): every one COMPLETED, only the GPU job with a GPU
    squeue = [runs["bin"] / "squeue", "-h", "--states=all", "-O", "JobID,State,tres-per-job", "-j", ",".join(rules)]
    rows = subprocess.run(squeue, capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    jobs = {slurm_id: (state, tres) for slurm_id, state, tres in (row.split() for row in rows)}
    assert jobs == {i: ("COMPLETED", "gres:gpu:1" if rule == GPU_RULE else "N/A") for i, rule in rules.items()}


def test_artifacts_equal_a_local_run(runs):
    slurm_results = runs["slurm"] / "results" / EXPERIMENT
    local_results = runs["local"] / "results" / EXPERIMENT
    records = sorted(p.relative_to(local_results) for p in local_results.rglob("*.jsonl"))
    assert len(records) >= 10  # data splits, sampling shards, samples, gold labels
    for name in records:
        assert (slurm_results / name).read_bytes() == (local_results / name).read_bytes(), name
    for model in ("rep0/base", "rep0/sft/model"):
        assert same_tensors(slurm_results / model / "model.safetensors", local_results / model / "model.safetensors")
