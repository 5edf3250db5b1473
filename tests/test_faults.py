"""Faults that really happen: jobs killed with SIGKILL mid-run and rerun, a read-only or full output disk."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmood.io import read_jsonl, write_jsonl

SAMPLING = dict(backend="hf", n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, batch_size=1, shards=1)
SCRIPT = """
import sys, json
from rmood.generation import sample_shard
model, prompts, out, sampling = sys.argv[1:5]
sample_shard(model, [prompts], out, 0, 0, json.loads(sampling), "float32")
"""
TRAINER = ["max_length=128", "warmup_ratio=0.0", "batch_size=4", "save_steps=4", "lr_scheduler_type=cosine"]


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


# --- training steps killed mid-run ----------------------------------------------------------------


def kill_when(argv: list[str], ready, log: Path, timeout: float = 240) -> None:
    """Run `python -m rmood argv` and SIGKILL it as soon as `ready()` holds (it must not finish first)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "rmood", *argv], env=env, stdout=output, stderr=output)
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"rmood {argv[0]} was not killed mid-run (exit code {process.poll()}):\n"
                        + log.read_text(errors="replace")[-3000:])
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def completed_checkpoints(work: Path) -> list[int]:
    return sorted(int(p.parent.name.split("-")[1]) for p in work.glob("checkpoint-*/trainer_state.json"))


def rerun(argv: list[str]) -> tuple[str, list[str]]:
    """Rerun `python -m rmood argv` in this process; its stdout and the trainer's log messages."""
    import contextlib
    import io

    import transformers

    from rmood.cli import main

    class Collect(logging.Handler):  # its own handler: each record once, whatever propagation other tests set
        def __init__(self) -> None:
            super().__init__(logging.INFO)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    logger, collect = logging.getLogger("transformers"), Collect()
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_info()
    logger.addHandler(collect)
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            main(argv)
    finally:
        logger.removeHandler(collect)
        transformers.logging.set_verbosity(verbosity)
    return stdout.getvalue(), collect.messages


def assert_same_weights(first: Path, second: Path) -> None:
    from safetensors.torch import load_file

    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys()
    different = [name for name in a if not (a[name] == b[name]).all()]
    assert not different, f"{first} and {second} differ in {different}"


def kill_and_resume(step: str, args: list[str], sets: list[str], out: Path, work: Path, tmp_path: Path) -> int:
    """Kill `step` after its first checkpoint, rerun it to the end; returns the update it resumed from."""
    argv = [step, *args, "--model", str(out), "--work-dir", str(work), *[a for s in sets for a in ("--set", s)]]
    kill_when(argv, lambda: bool(completed_checkpoints(work)), tmp_path / f"{step}.log")
    done = completed_checkpoints(work)
    assert not out.exists() and done  # killed mid-run: no model, a checkpoint to resume from
    stdout, messages = rerun(argv)
    assert f"resuming from {work / f'checkpoint-{done[-1]}'}" in stdout
    resuming = re.compile(r"Resuming training from checkpoint .* global step (\d+)")
    resumed = [int(m) for line in messages for m in resuming.findall(line)]
    assert resumed == [done[-1]]  # the trainer itself continued from that step, not from scratch
    assert (out / "model.safetensors").is_file() and not work.exists()
    return done[-1]


def test_a_checkpoint_cut_while_saving_its_trainer_state_is_not_resumed_from(tmp_path):
    from rmood.training import prepare_checkpoints

    work = tmp_path / "work"
    prepare_checkpoints(work, "digest")
    for step, state in ((2, '{"global_step": 2}'), (4, '{"global_step": 4')):  # killed mid-file at step 4
        (work / f"checkpoint-{step}").mkdir()
        (work / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert prepare_checkpoints(work, "digest") == str(work / "checkpoint-2")


def test_a_killed_sft_resumes_from_its_last_checkpoint(tiny_base, prompt_data, tmp_path, one_thread):
    from transformers import AutoModelForCausalLM

    sets = ["sft.epochs=2", *(f"sft.{s}" for s in TRAINER)]  # 64 demonstrations: 32 steps, a checkpoint every 4
    args = ["--base", str(tiny_base), "--train", str(prompt_data["sft"])]
    step = kill_and_resume("sft", args, sets, tmp_path / "sft", tmp_path / "work", tmp_path)
    assert 4 <= step < 32
    AutoModelForCausalLM.from_pretrained(tmp_path / "sft")
    rerun(["sft", *args, "--model", str(tmp_path / "uninterrupted"), "--work-dir", str(tmp_path / "work2"),
           *[a for s in sets for a in ("--set", s)]])
    assert_same_weights(tmp_path / "sft", tmp_path / "uninterrupted")


def test_a_killed_reward_model_training_resumes_from_its_last_checkpoint(tiny_base, prompt_data, tmp_path,
                                                                        one_thread):
    from transformers import AutoModelForSequenceClassification

    from test_models import conversations

    convs = conversations(prompt_data["preference"], 24)
    write_jsonl(tmp_path / "pairs.jsonl", [{"chosen": c, "rejected": convs[i - 1]} for i, c in enumerate(convs)])
    sets = ["rm.epochs=3", *(f"rm.{s}" for s in TRAINER)]  # 24 pairs: 18 steps, a checkpoint every 4
    args = ["--policy", str(tiny_base), "--pairs", str(tmp_path / "pairs.jsonl")]
    step = kill_and_resume("train_rm", args, sets, tmp_path / "rm", tmp_path / "work", tmp_path)
    assert 4 <= step < 18
    AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    rerun(["train_rm", *args, "--model", str(tmp_path / "uninterrupted"), "--work-dir", str(tmp_path / "work2"),
           *[a for s in sets for a in ("--set", s)]])
    assert_same_weights(tmp_path / "rm", tmp_path / "uninterrupted")


def test_a_killed_ppo_run_resumes_from_its_last_saved_update(tiny_base, prompt_data, tmp_path, one_thread):
    """PPO killed after a saved update, its outputs then deleted (as Snakemake does before a rerun): the rerun
    restores them, continues from that update and writes exactly the checkpoints of an uninterrupted run."""
    import shutil

    from transformers import AutoModelForCausalLM

    from test_models import save_reward_model

    reward_model = save_reward_model(tiny_base, tmp_path / "rm")
    sets = ["rl.steps=3", "rl.checkpoints=[1, 2]", "rl.batch_size=4", "rl.mini_batches=2", "rl.ppo_epochs=1",
            "rl.learning_rate=0.01", "rl.response_length=8", "rl.missing_eos_penalty=null", "sampling.temperature=1.0"]

    def argv(folder: Path) -> list[str]:  # 8 prompts, 4 a batch: update 3 starts a second epoch
        out = [str(folder / f"step_{k}" / "model") for k in (1, 2, 3)]
        return ["train_ppo", "--policy", str(tiny_base), "--reward-model", str(reward_model),
                "--prompts", str(prompt_data["ood"]), "--out", *out, "--work-dir", str(folder / "work"),
                *[a for s in sets for a in ("--set", s)]]

    folder, work = tmp_path / "ppo", tmp_path / "ppo" / "work"
    kill_when(argv(folder), lambda: bool(completed_checkpoints(work)), tmp_path / "ppo.log")
    done = completed_checkpoints(work)[-1]  # (older states are deleted once a newer one is complete)
    assert 1 <= done < 3
    for k in range(1, 4):
        shutil.rmtree(folder / f"step_{k}", ignore_errors=True)

    stdout, _ = rerun(argv(folder))
    assert f"resuming PPO from update {done} of 3" in stdout
    assert stdout.count("from the work folder") == done  # the deleted outputs of the updates done
    assert sorted(p.name for p in folder.iterdir()) == ["step_1", "step_2", "step_3"]  # the work folder is gone
    for k in (1, 2, 3):
        AutoModelForCausalLM.from_pretrained(folder / f"step_{k}" / "model")

    rerun(argv(tmp_path / "uninterrupted"))
    for k in (1, 2, 3):
        assert_same_weights(folder / f"step_{k}" / "model", tmp_path / "uninterrupted" / f"step_{k}" / "model")


# --- an output disk that is full or not writable --------------------------------------------------


@pytest.mark.parametrize("fault", ["full disk", "read-only folder"])
def test_a_step_that_cannot_write_its_output_says_which_and_why(tmp_path, fault):
    from test_io import write_full_disk, write_read_only

    prompts = [{"id": f"p{i}", "messages": [{"role": "user", "content": "hi"}]} for i in range(100)]
    write_jsonl(tmp_path / "prompts.jsonl", prompts)
    write_jsonl(tmp_path / "shard.jsonl", [{"prompt_id": p["id"], "sample": 0, "response": "x" * 1000, "finished": True}
                                           for p in prompts])  # 100 kB of samples: more than the 64 kB disk holds
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "samples.jsonl"
    args = ["-m", "rmood", "gather", "--shards", str(tmp_path / "shard.jsonl"),
            "--prompt-files", str(tmp_path / "prompts.jsonl"), "--out", str(out)]
    run = write_full_disk if fault == "full disk" else write_read_only
    result = run(folder, args)
    cause = ("No space left on device (the file system of {} is full)" if fault == "full disk"
             else "Permission denied ({} is not writable by this process)").format(folder)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"rmood gather: cannot write {out}: {cause}"
    if fault == "read-only folder":  # (the full disk is gone with its namespace: test_io looks inside it)
        assert not list(folder.iterdir())


def test_a_training_step_whose_checkpoints_fill_the_disk_names_its_work_folder(tiny_base, prompt_data, tmp_path):
    """The Trainer writes its checkpoints itself (safetensors, torch.save, JSON): the step names its work folder."""
    from test_io import write_full_disk
    from test_models import conversations

    convs = conversations(prompt_data["preference"], 8)
    write_jsonl(tmp_path / "pairs.jsonl", [{"chosen": c, "rejected": convs[i - 1]} for i, c in enumerate(convs)])
    folder = tmp_path / "disk"
    folder.mkdir()
    sets = ["rm.epochs=1", *(f"rm.{s}" for s in TRAINER), "rm.save_steps=1"]  # a checkpoint does not fit 64 KiB
    result = write_full_disk(folder, ["-m", "rmood", "train_rm", "--policy", str(tiny_base),
                                      "--pairs", str(tmp_path / "pairs.jsonl"), "--model", str(tmp_path / "rm"),
                                      "--work-dir", str(folder / "work"), *[a for s in sets for a in ("--set", s)]],
                             timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert (f"rmood train_rm: cannot write {folder / 'work'}: No space left on device (the file system of {folder} is "
            "full)") in result.stderr.splitlines()  # (the Trainer's progress bar is closed after it, at exit)
    assert not (tmp_path / "rm").exists()
