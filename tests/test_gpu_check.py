"""`make gpu-check` (rmood.gpu_check) on a CPU machine: every GPU item SKIPs with its reason, the configs it
composes pass the project's own validation, and a bad input is a FAIL with its reason and exit code 1.
What the items do on a GPU (vLLM, verl, DeepSpeed, bf16 training) cannot run here."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from rmood import gpu_check
from rmood.runner import own_process
from rmood.config import ConfigError
from rmood.steps import settings

torch = pytest.importorskip("torch")
needs_cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


def lines(text: str) -> dict[str, str]:
    """Item -> its status line, from what gpu-check printed on stdout."""
    rows = [line for line in text.splitlines() if line.strip()]
    return {line.split()[1]: line for line in rows}


@needs_cpu_only
def test_without_cuda_every_item_skips_with_the_reason_and_exits_0(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rmood.gpu_check"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    seen = lines(result.stdout)
    assert list(seen) == list(gpu_check.ITEMS)  # one line per item, in order, nothing else on stdout
    for item, line in seen.items():
        assert line.startswith(f"SKIP {item} ") and "no CUDA device" in line, line
    assert "0 failed, 4 skipped" in result.stderr


def test_the_make_target_runs_the_check():
    result = subprocess.run(["make", "-n", "gpu-check"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "python -m rmood.gpu_check" in result.stdout, result.stdout + result.stderr


def test_every_item_config_passes_the_projects_validation(tmp_path):
    check = gpu_check.Check(tmp_path)
    python = sys.executable  # a step environment's interpreter (any existing file does for composing)

    vllm = check.item_config("vllm", python)  # load_config: schema and cross-key checks (vLLM GPUs, eval jobs)
    assert vllm["sampling"]["backend"] == "vllm" and vllm["model"]["dtype"] == "bfloat16"
    assert own_process("sample_vllm", vllm) == [python, "-m", "rmood.job"]  # the step runs in environments.vllm
    assert settings("sample_vllm", vllm)["sampling"]["vllm"]["enforce_eager"] is True

    verl = check.item_config("verl", python)
    assert own_process("train_ppo_verl", verl) == [python, "-m", "rmood.job"]
    from rmood.rl.verl import overrides

    composed = overrides("policy", "rm", tmp_path / "p.parquet", tmp_path / "work", 0, verl["rl"], verl["sampling"])
    assert {"trainer.total_training_steps=2", "trainer.n_gpus_per_node=1", "trainer.nnodes=1",
            "actor_rollout_ref.rollout.name=vllm"} <= set(composed)

    deepspeed = check.item_config("deepspeed")
    ds = gpu_check.deepspeed_settings(deepspeed)
    assert ds["accelerate"] == ROOT / "config/accelerate/zero2.yaml" and ds["deepspeed"] == ROOT / "config/accelerate/zero2.json"
    assert ds["stage"] == 2 and ds["bf16"] in (True, "auto")
    command = own_process("train_rm", deepspeed)  # accelerate launch with the ZeRO-2 config, then rmood.job
    assert command[1:] == ["-m", "accelerate.commands.launch", "--config_file", str(ds["accelerate"]),
                           "--num_processes", "1", "-m", "rmood.job"]
    assert settings("train_rm", deepspeed)["dtype"] == "bfloat16"

    bf16 = check.item_config("bf16")
    assert own_process("train_rm", bf16) is None  # the plain python launcher: the step runs in its own command
    assert settings("train_rm", bf16)["dtype"] == "bfloat16"


def test_the_tiny_rm_pairs_prefer_the_exact_answer(prompt_data, tmp_path):
    from rmood.io import read_jsonl

    gpu_check.write_pairs(prompt_data["preference"], tmp_path / "pairs.jsonl", 8)
    pairs = read_jsonl(tmp_path / "pairs.jsonl")
    assert len(pairs) == 8
    for pair, prompt in zip(pairs, read_jsonl(prompt_data["preference"]), strict=False):
        assert pair["chosen"][:-1] == pair["rejected"][:-1] == prompt["messages"]
        assert pair["chosen"][-1] == {"role": "assistant", "content": prompt["reference"]}
        assert pair["rejected"][-1]["content"] != prompt["reference"]


@pytest.mark.parametrize(("accelerate", "reason"), [
    ("config/accelerate/zero3.yaml", "ZeRO stage 3, but this item checks ZeRO-2"),
    ("config/accelerate/ddp.yaml", "not DEEPSPEED"),
    ("config/accelerate/missing.yaml", "does not exist"),
])
def test_a_deepspeed_config_that_is_not_zero2_bf16_fails_with_its_reason(accelerate, reason, tmp_path, capsys):
    code = gpu_check.main(["--items", "deepspeed", "--accelerate-config", accelerate, "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("FAIL deepspeed ") and reason in out and len(out.splitlines()) == 1, out


def test_a_bad_config_key_fails_every_item_and_each_still_reports(tmp_path, capsys):
    code = gpu_check.main(["--set", "rm.nonsense=1", "--workdir", str(tmp_path)])
    seen = lines(capsys.readouterr().out)
    assert code == 1 and list(seen) == list(gpu_check.ITEMS)
    for item, line in seen.items():
        assert line.startswith(f"FAIL {item} ") and "'nonsense' was unexpected" in line, line


def test_a_missing_config_file_and_a_missing_step_interpreter_are_fails(tmp_path):
    check = gpu_check.Check(tmp_path, config=str(tmp_path / "none.yaml"))
    status, detail = gpu_check.run_item(check, "bf16")
    assert status == "FAIL" and "none.yaml" in detail
    check = gpu_check.Check(tmp_path, vllm_python=str(tmp_path / "no-python"))
    with pytest.raises(gpu_check.Fail, match="--vllm-python .*no-python does not exist"):
        check.step_python("vllm")
    with pytest.raises(ConfigError, match="environments.vllm"):  # the workflow's own guard, for the same mistake
        own_process("sample_vllm", check.item_config("vllm", str(tmp_path / "no-python")))


def test_unknown_items_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--items", "vllm,tpu"])
    assert exit_.value.code == 2 and "unknown tpu" in capsys.readouterr().err


def test_a_step_environment_without_its_packages_is_a_skip_that_says_how_to_build_it(tmp_path):
    check = gpu_check.Check(tmp_path, verl_python=sys.executable)  # the main env: no verl, no vllm
    if gpu_check.has_modules(sys.executable, gpu_check.ENV_MODULES["verl"]):
        pytest.skip("this environment has verl and vllm")
    with pytest.raises(gpu_check.Skip, match=r"verl and vllm not installed .*make envs ENVS=verl"):
        check.step_python("verl")


def test_a_command_past_its_time_limit_is_killed_with_its_children(tmp_path):
    import psutil

    log, pid_file = tmp_path / "sleep.log", tmp_path / "child.pid"
    child = (f"import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
             f"open({str(pid_file)!r}, 'w').write(str(c.pid)); print('started', flush=True); time.sleep(60)")
    with pytest.raises(gpu_check.Fail, match="timed out after 2 s: started"):
        gpu_check.run_logged([sys.executable, "-c", child], log, timeout=2)
    # The grandchild (as a vLLM engine or a Ray worker would be) is killed too. SIGKILL takes effect when the kernel
    # next schedules it, so on a busy machine it may still read as running for a moment: give it a few seconds.
    grandchild, deadline = int(pid_file.read_text()), time.monotonic() + 10
    while True:
        try:
            status = psutil.Process(grandchild).status()
        except psutil.NoSuchProcess:
            break
        if status == psutil.STATUS_ZOMBIE:
            break
        assert time.monotonic() < deadline, f"the grandchild is still {status} 10 s after its group was killed"
        time.sleep(0.05)
