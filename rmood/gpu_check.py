"""`make gpu-check` (`python -m rmood.gpu_check`): does the GPU path of the study work on this node?

In a few minutes on one GPU it builds a tiny model and data with the project's own steps (`data`, `base`)
in a work folder and runs, each through the code path a study runs:

- vllm:      step `sample_vllm` (sampling.backend vllm) in `environments.vllm`, killed with SIGKILL after
             its first batch and rerun: it must resume from the last complete batch, without duplicates;
- verl:      step `train_ppo_verl` (rl.engine verl) in `environments.verl`: 2 PPO updates of the tiny policy
             against a tiny reward model, merged into a loadable policy;
- deepspeed: step `train_rm` under `accelerate launch` with a DeepSpeed ZeRO-2 config (training.launcher
             accelerate), in bf16;
- bf16:      `python -m rmood train_rm` (the plain python launcher) in bf16 on the GPU: a finite loss, and the
             saved model reloads in bf16 on the GPU and scores the pairs finitely.

It prints one line per item, PASS, FAIL with the reason or SKIP with the reason (no CUDA device, a package
not installed), and exits 1 if any item FAILs. Each item first composes and checks its config (a bad config is
a FAIL, even without a GPU), then its prerequisites (SKIP), then runs under a time limit; one item's failure
does not stop the others. The work folder is removed unless an item failed (its logs are there) or --keep.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rmood.config import DEFAULT, ROOT, ConfigError, accelerate_config, load_config

ITEMS: dict[str, str] = {
    "vllm": "vLLM sampling (sample_vllm), killed and resumed",
    "verl": "2 verl PPO updates (train_ppo_verl)",
    "deepspeed": "RM training, DeepSpeed ZeRO-2 under accelerate launch, bf16",
    "bf16": "RM training in bf16 on the GPU (python launcher)",
}
NO_CUDA = "no CUDA device"
ZERO2 = "config/accelerate/zero2.yaml"
SEED = 0
PAIRS = 32  # RM training pairs: 4 updates of 8
# Every item: the tiny model of the embedded default, few prompts, one short epoch, no logs. `--set` goes after.
SHARED = [
    "experiment=gpu_check",
    "data.source=synthetic",
    "data.sizes={sft: 64, preference: 64, unlabeled: 0, val: 0, eval: 8, ood: 8}",
    "model.source=tiny",
    "rm.epochs=1",
    "rm.batch_size=8",
    "rm.gradient_accumulation_steps=1",
    "rm.warmup_ratio=0.0",
    "rm.save_steps=1000",
    "logging.report_to=[]",
]
ITEM_SETS: dict[str, list[str]] = {
    "vllm": [
        "sampling.backend=vllm", "sampling.n=2", "sampling.batch_size=1", "sampling.max_new_tokens=48",
        "sampling.shards=1", "sampling.vllm.tensor_parallel_size=1", "sampling.vllm.gpu_memory_utilization=0.3",
        "sampling.vllm.enforce_eager=true", "model.dtype=bfloat16", "resources.sample.gpus=1",
        "rl.eval_jobs=checkpoint",
    ],
    "verl": [
        "rl.engine=verl", "rl.steps=2", "rl.checkpoints=[2]", "rl.learning_rate=1.0e-5", "rl.batch_size=4",
        "rl.mini_batches=1", "rl.ppo_epochs=1", "rl.response_length=16", "rl.missing_eos_penalty=null",
        "rl.verl.n_gpus_per_node=1", "rl.verl.nnodes=1", "rl.verl.tensor_parallel_size=1", "rl.verl.gpu_memory_utilization=0.2", "rl.verl.micro_batch_size_per_gpu=2",
        "rl.verl.max_prompt_length=256", "rl.reward_models=[rm]", "rl.kl_penalised.kl_coefs=[]", "resources.ppo.gpus=1",
    ],
    "deepspeed": ["training.launcher=accelerate", "training.num_processes=1", "model.dtype=bfloat16"],
    "bf16": ["training.launcher=python", "model.dtype=bfloat16"],
}
# What each step environment must hold, and where `make envs` builds it.
ENV_MODULES = {"vllm": ("vllm",), "verl": ("verl", "vllm")}


class Skip(Exception):
    """The item cannot run here (no GPU, a package not installed): not a failure."""


class Fail(Exception):
    """The item ran, or its config was composed, and something is wrong: the message says what."""


class Check:
    """The options of one `gpu-check` run and what its items share: the CUDA probe and the tiny assets."""

    def __init__(self, workdir: Path, config: str = str(DEFAULT), sets: list[str] = (),
                 accelerate_config: str = ZERO2, vllm_python: str | None = None, verl_python: str | None = None,
                 timeout: float = 900) -> None:
        self.workdir = workdir
        self.config = config
        self.sets = list(sets)
        self.accelerate_config = accelerate_config
        self.pythons = {"vllm": vllm_python, "verl": verl_python}
        self.timeout = timeout
        self._cuda: str | None = None
        self._assets: dict[str, Path] | None = None

    # --- configs -------------------------------------------------------------------------------------
    def assignments(self, item: str | None = None, python: str | None = None) -> list[str]:
        """The `--set` assignments of an item's config (of the shared steps when `item` is None)."""
        extra = list(ITEM_SETS[item]) if item else []
        if item == "deepspeed":
            extra.append(f"training.accelerate_config={self.accelerate_config}")
        if python is not None:
            extra.append(f"environments.{item}={python}")
        return [*SHARED, *extra, *self.sets]

    def item_config(self, item: str | None = None, python: str | None = None) -> dict[str, Any]:
        """The item's config, validated as every step's is (schema and cross-key checks); a bad one is a Fail."""
        try:
            return load_config(self.config, self.assignments(item, python))
        except ConfigError as error:
            raise Fail(f"config: {error}") from None

    # --- prerequisites -------------------------------------------------------------------------------
    def require_cuda(self) -> None:
        """Skip without a CUDA device seen by this interpreter's torch."""
        if self._cuda is None:
            import torch

            if torch.cuda.is_available():
                self._cuda = ""
            else:
                built = "" if torch.version.cuda else f"; torch {torch.__version__} here is built without CUDA"
                self._cuda = f"{NO_CUDA} (python {sys.executable}{built})"
        if self._cuda:
            raise Skip(self._cuda)

    def step_python(self, env: str) -> str:
        """The interpreter of step environment `env` that has its packages: --<env>-python, RMOOD_<ENV>_PYTHON,
        .venv-<env>, then this one; a Skip saying where it looked when none has them. Its torch must see CUDA."""
        modules = ENV_MODULES[env]
        given = self.pythons[env]
        if given is not None and not Path(given).is_file():
            raise Fail(f"--{env}-python {given} does not exist")
        candidates = [given] if given else [os.environ.get(f"RMOOD_{env.upper()}_PYTHON"),
                                            str(ROOT / f".venv-{env}" / "bin" / "python"), sys.executable]
        looked = []
        for python in dict.fromkeys(c for c in candidates if c and Path(c).is_file()):
            looked.append(python)
            if has_modules(python, modules):
                probe = subprocess.run([python, "-c", "import torch; print(torch.cuda.device_count())"],
                                       capture_output=True, text=True, timeout=300)
                if probe.returncode != 0 or not probe.stdout.strip().isdigit():
                    raise Fail(f"{python}: torch does not import: {last_line(probe.stderr)}")
                if int(probe.stdout) == 0:
                    raise Skip(f"{NO_CUDA} in {python} (its torch sees none)")
                return python
        raise Skip(f"{' and '.join(modules)} not installed (looked in {', '.join(looked) or 'no interpreter'}; "
                   f"`make envs ENVS={env}` builds .venv-{env}, or pass --{env}-python)")

    # --- the tiny model and data, built once by the project's own steps ------------------------------
    def assets(self) -> dict[str, Path]:
        """data/<split>.jsonl (step `data`), base/ (step `base`), pairs.jsonl (RM training pairs)."""
        if self._assets is None:
            from rmood.data import SPLITS

            folder = self.workdir / "assets"
            data = {split: folder / "data" / f"{split}.jsonl" for split in SPLITS}
            sets = set_args(self.assignments())
            steps = {
                "data": ["--out", *map(str, data.values())],
                "base": ["--data-files", str(data["sft"]), str(data["preference"]), "--out", str(folder / "base")],
            }
            for step, args in steps.items():
                log = self.workdir / f"{step}.log"
                code = run_logged([sys.executable, "-m", "rmood", step, *args, "--config", self.config, *sets],
                                  log, self.timeout)
                if code != 0:
                    raise Fail(f"building the tiny {step} failed (exit code {code}): {log_tail(log)}; see {log}")
            pairs = folder / "pairs.jsonl"
            write_pairs(data["preference"], pairs, PAIRS)
            self._assets = {"prompts": data["preference"], "base": folder / "base", "pairs": pairs}
        return self._assets

    def untrained_rm(self) -> Path:
        """A reward model on the tiny base (random head), servable by verl: one label and a chat template."""
        out = self.workdir / "assets" / "rm"
        if not (out / "config.json").is_file():
            from rmood.rm.train import reward_model_from_policy

            model, tokenizer = reward_model_from_policy(str(self.assets()["base"]), SEED, "float32")
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
        return out


# --- helpers ----------------------------------------------------------------------------------------

def set_args(assignments: list[str]) -> list[str]:
    """`--set KEY=VALUE` for each assignment, as `python -m rmood <step>` takes them."""
    return [arg for assignment in assignments for arg in ("--set", assignment)]


def has_modules(python: str, modules: tuple[str, ...]) -> bool:
    """Whether `python` can import every module (found, not imported: fast)."""
    code = "import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in sys.argv[1:]) else 1)"
    return subprocess.run([python, "-c", code, *modules], capture_output=True, timeout=120).returncode == 0


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def log_tail(log: Path) -> str:
    return last_line(log.read_text(encoding="utf-8", errors="replace")) if log.is_file() else "(no log)"


def start_logged(command: list[str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    """Start `command` in a process group of its own (vLLM, Ray and DeepSpeed start children), output to `log`."""
    from rmood.runner import own_process_env

    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=own_process_env(4),
                                start_new_session=True)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process and every child it started (its process group), then reap it."""
    from rmood.worker import kill

    kill(process.pid)
    process.wait()


def wait_logged(process: subprocess.Popen, log: Path, timeout: float) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        raise Fail(f"timed out after {timeout:.0f} s: {log_tail(log)}; see {log}") from None
    except BaseException:
        kill_group(process)
        raise
    finally:
        if process.returncode is not None:
            try:  # children left behind by a finished command (a Ray worker, a vLLM engine)
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def run_logged(command: list[str], log: Path, timeout: float) -> int:
    """Run `command` to its end (killed with its children after `timeout` s: a Fail); its exit code."""
    return wait_logged(start_logged(command, log), log, timeout)


def step_command(step: str, config: dict[str, Any], paths: dict[str, Any], extra: dict[str, Any], folder: Path
                 ) -> list[str]:
    """The command a Snakemake job of `step` runs (`rmood.runner.own_process`, its request file appended)."""
    from rmood.runner import own_process
    from rmood.steps import settings

    command = own_process(step, config)
    if command is None:
        raise Fail(f"step {step} would run in the workflow's own process, not in its environment or launcher")
    request = folder / f"{step}.request.json"
    request.parent.mkdir(parents=True, exist_ok=True)
    request.write_text(json.dumps({"step": step, "paths": paths, "settings": settings(step, config) | extra}))
    return [*command, str(request)]


def require_success(code: int, log: Path, what: str) -> None:
    if code != 0:
        raise Fail(f"{what} exited with code {code}: {log_tail(log)}; see {log}")


def write_pairs(prompts: Path, out: Path, count: int) -> None:
    """Implicit-format RM pairs from the prompts: the exact answer is chosen over a wrong one."""
    from rmood.io import read_jsonl, write_jsonl

    rows = []
    for record in read_jsonl(prompts)[:count]:
        wrong = record["reference"][::-1] + " and more" if record["reference"] else "no"
        rows.append({"chosen": [*record["messages"], {"role": "assistant", "content": record["reference"]}],
                     "rejected": [*record["messages"], {"role": "assistant", "content": wrong}]})
    write_jsonl(out, rows)


def train_loss(log: Path) -> float | None:
    """The Trainer's final `train_loss` as its log prints it, or None if it printed none."""
    import re

    found = re.findall(r"""['"]train_loss['"]:\s*['"]?([-+0-9.eEinfaINFA]+)""", log.read_text(errors="replace"))
    return float(found[-1]) if found else None


def check_reward_model(model_dir: Path, pairs: Path, log: Path) -> str:
    """The trained RM: a finite training loss in its log, and reloaded in bf16 on the GPU (rmood's scoring), finite
    rewards and a finite pair loss. Returns what it saw, for the PASS line."""
    import numpy as np

    from rmood.io import read_jsonl
    from rmood.rm.score import load_reward_model, score_conversations

    loss = train_loss(log)
    if loss is not None and not math.isfinite(loss):
        raise Fail(f"training loss is {loss}; see {log}")
    model, tokenizer = load_reward_model(model_dir, "bfloat16")
    device = next(model.parameters()).device
    if device.type != "cuda":
        raise Fail(f"{model_dir} reloaded on {device}, not on the GPU")
    saved = json.loads((model_dir / "config.json").read_text()).get("dtype", "?")
    rows = read_jsonl(pairs)
    rewards = score_conversations(model, tokenizer, [r["chosen"] for r in rows] + [r["rejected"] for r in rows], 16)
    del model
    if not np.all(np.isfinite(rewards)):
        raise Fail(f"{model_dir}: non-finite rewards after reloading")
    margin = rewards[: len(rows)] - rewards[len(rows):]
    pair_loss = float(np.mean(np.logaddexp(0.0, -margin)))
    trained = "train_loss " + (f"{loss:.4f}" if loss is not None else "not printed")
    return (f"{trained}; saved {saved}, reloaded in bf16 on {device}: pair loss {pair_loss:.4f}, "
            f"accuracy {float(np.mean(margin > 0)):.2f} on {len(rows)} pairs")


# --- the items --------------------------------------------------------------------------------------

def check_vllm(check: Check) -> str:
    from rmood.generation import BackendError, require_backend
    from rmood.io import read_jsonl
    from rmood.vllm_sampling import engine_kwargs, request_kwargs

    config = check.item_config("vllm")
    sampling = config["sampling"]
    try:
        require_backend(sampling, "vllm", "sample_vllm")
    except BackendError as error:
        raise Fail(str(error)) from None
    engine_kwargs("model", SEED, config["model"]["dtype"], sampling["vllm"])
    request_kwargs(sampling, 0, SEED, 1)
    check.require_cuda()
    python = check.step_python("vllm")
    assets = check.assets()
    config = check.item_config("vllm", python)
    folder = check.workdir / "vllm"
    out = folder / "samples.jsonl"
    partial = out.with_name(out.name + ".partial")
    command = step_command("sample_vllm", config, {"model": str(assets["base"]), "prompt_files": [str(assets["prompts"])],
                                                  "out": str(out)}, {"shard": 0}, folder)
    n, prompts = sampling["n"], len(read_jsonl(assets["prompts"]))
    per_batch = n * sampling["batch_size"]

    # the first run: killed (SIGKILL, with vLLM's engine process) as soon as one batch is on disk
    log = folder / "killed.log"
    process = start_logged(command, log)
    deadline = time.monotonic() + check.timeout
    while not (partial.is_file() and partial.read_bytes().count(b"\n") >= per_batch):
        if process.poll() is not None:
            if process.returncode == 0:
                raise Fail(f"the shard was sampled to its end before it could be killed ({prompts} prompts); see {log}")
            require_success(process.returncode, log, "the first vLLM sampling run")
        if time.monotonic() > deadline:
            kill_group(process)
            raise Fail(f"no batch sampled within {check.timeout:.0f} s: {log_tail(log)}; see {log}")
        time.sleep(0.01)
    kill_group(process)
    if out.exists():
        raise Fail(f"{out} exists after the kill: a killed run must leave only {partial.name}")
    lines = partial.read_bytes().split(b"\n")
    before = [json.loads(line) for line in lines[:-1]]  # complete lines only
    counts: dict[str, int] = {}
    for record in before:
        counts[record["prompt_id"]] = counts.get(record["prompt_id"], 0) + 1
    kept = [r for r in before if counts[r["prompt_id"]] == n]

    # the rerun: resumes after the complete batches and finishes the shard
    log = folder / "resumed.log"
    require_success(run_logged(command, log, check.timeout), log, "the resumed vLLM sampling run")
    text = log.read_text(errors="replace")
    if "resuming" not in text:
        raise Fail(f"the rerun did not resume from {partial.name}; see {log}")
    records = read_jsonl(out)
    keys = {(r["prompt_id"], r["sample"]) for r in records}
    if len(records) != prompts * n or len(keys) != len(records):
        raise Fail(f"{out}: {len(records)} records ({len(keys)} distinct), expected {prompts} prompts x {n}")
    missing = [r for r in kept if r not in records]
    if missing:
        raise Fail(f"{len(missing)} sample(s) of the batches finished before the kill were not kept as they were")
    return (f"killed after {len(kept) // per_batch}/{prompts} batches, resumed: {len(records)} samples, "
            f"no duplicates, earlier batches kept")


def check_verl(check: Check) -> str:
    from transformers import AutoModelForCausalLM

    from rmood.rl.ppo import checkpoint_steps
    from rmood.rl.verl import overrides

    config = check.item_config("verl")
    rl = config["rl"]
    folder = check.workdir / "verl"
    out = [str(folder / "ppo" / "rm" / f"step_{k}" / "model") for k in checkpoint_steps(rl["steps"], rl["checkpoints"])]
    try:  # verl's settings from ours (pure): refuses what verl cannot do
        overrides("policy", "rm", folder / "prompts.parquet", folder / "work", SEED, rl, config["sampling"])
    except ValueError as error:
        raise Fail(f"config: {error}") from None
    check.require_cuda()
    python = check.step_python("verl")
    assets = check.assets()
    reward_model = check.untrained_rm()
    config = check.item_config("verl", python)
    command = step_command("train_ppo_verl", config, {"policy": str(assets["base"]), "reward_model": str(reward_model),
                                                     "prompts": str(assets["prompts"]), "out": out,
                                                     "work_dir": str(folder / "work")}, {}, folder)
    log = folder / "train_ppo_verl.log"
    require_success(run_logged(command, log, check.timeout), log, "verl's PPO")
    import torch

    for path in out:
        model = AutoModelForCausalLM.from_pretrained(path)
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise Fail(f"{path}: non-finite weights after PPO")
    return f"{rl['steps']} updates; merged policy {Path(out[-1]).relative_to(folder)} loads with finite weights"


def deepspeed_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The DeepSpeed config that `training.accelerate_config` selects, checked: ZeRO stage 2 and bf16 (on, or
    'auto': the Trainer's bf16, which model.dtype bfloat16 turns on on a GPU), no fp16."""
    path = accelerate_config(config)
    if not path.is_file():
        raise Fail(f"training.accelerate_config: {path} does not exist")
    settings = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if settings.get("distributed_type") != "DEEPSPEED":
        raise Fail(f"{path}: distributed_type is {settings.get('distributed_type')}, not DEEPSPEED")
    section = settings.get("deepspeed_config") or {}
    file = section.get("deepspeed_config_file")
    if file is not None:  # accelerate reads it from the folder the job runs in: the project folder
        ds_path = Path(file) if Path(file).is_absolute() else ROOT / file
        if not ds_path.is_file():
            raise Fail(f"{path}: its deepspeed_config_file {ds_path} does not exist")
        ds = json.loads(ds_path.read_text(encoding="utf-8"))
        stage = (ds.get("zero_optimization") or {}).get("stage")
        bf16 = (ds.get("bf16") or {}).get("enabled", False)
        fp16 = (ds.get("fp16") or {}).get("enabled", False)
    else:
        ds_path = path
        stage = section.get("zero_stage")
        bf16 = "auto" if settings.get("mixed_precision") in (None, "no", "bf16") else False
        fp16 = settings.get("mixed_precision") == "fp16"
    if stage != 2:
        raise Fail(f"{ds_path}: ZeRO stage {stage}, but this item checks ZeRO-2 ({ZERO2})")
    if bf16 not in (True, "auto") or fp16 is True:
        raise Fail(f"{ds_path}: bf16 is {bf16!r} and fp16 {fp16!r}: this item checks bf16")
    if config["model"]["dtype"] != "bfloat16":
        raise Fail(f"model.dtype is {config['model']['dtype']}, but this item checks bf16")
    return {"accelerate": path, "deepspeed": ds_path, "stage": stage, "bf16": bf16}


def check_deepspeed(check: Check) -> str:
    config = check.item_config("deepspeed")
    ds = deepspeed_settings(config)
    check.require_cuda()
    if importlib.util.find_spec("deepspeed") is None:
        raise Skip(f"deepspeed not installed in {sys.executable} (pip install '.[cluster]')")
    assets = check.assets()
    folder = check.workdir / "deepspeed"
    out = folder / "rm"
    command = step_command("train_rm", config, {"policy": str(assets["base"]), "pairs": str(assets["pairs"]),
                                                "model": str(out)}, {"work_dir": str(folder / "work")}, folder)
    log = folder / "train_rm.log"
    require_success(run_logged(command, log, check.timeout), log, "accelerate launch (DeepSpeed)")
    if "(DEEPSPEED)" not in log.read_text(errors="replace"):
        raise Fail(f"the run did not train under DeepSpeed (no 'trained on … (DEEPSPEED)' line); see {log}")
    return f"ZeRO-{ds['stage']} ({ds['deepspeed'].relative_to(ROOT) if ds['deepspeed'].is_relative_to(ROOT) else ds['deepspeed']}); " \
           + check_reward_model(out, assets["pairs"], log)


def check_bf16(check: Check) -> str:
    config = check.item_config("bf16")
    if config["model"]["dtype"] != "bfloat16" or config["training"]["launcher"] != "python":
        raise Fail(f"model.dtype {config['model']['dtype']} and training.launcher {config['training']['launcher']}: "
                   "this item checks bfloat16 with the python launcher")
    check.require_cuda()
    import torch

    if not torch.cuda.is_bf16_supported():
        raise Fail(f"{torch.cuda.get_device_name()} does not support bf16")
    assets = check.assets()
    folder = check.workdir / "bf16"
    out = folder / "rm"
    sets = set_args(check.assignments("bf16"))
    command = [sys.executable, "-m", "rmood", "train_rm", "--policy", str(assets["base"]), "--pairs",
               str(assets["pairs"]), "--model", str(out), "--work-dir", str(folder / "work"), "--config", check.config,
               *sets]
    log = folder / "train_rm.log"
    require_success(run_logged(command, log, check.timeout), log, "python -m rmood train_rm")
    return f"{torch.cuda.get_device_name()}; " + check_reward_model(out, assets["pairs"], log)


CHECKS: dict[str, Callable[[Check], str]] = {
    "vllm": check_vllm, "verl": check_verl, "deepspeed": check_deepspeed, "bf16": check_bf16,
}


def run_item(check: Check, item: str) -> tuple[str, str]:
    """(PASS | FAIL | SKIP, one-line detail) of one item; nothing it raises stops the others."""
    start = time.monotonic()
    try:
        status, detail = "PASS", CHECKS[item](check)
    except Skip as reason:
        status, detail = "SKIP", str(reason)
    except Fail as reason:
        status, detail = "FAIL", str(reason)
    except Exception as error:  # a bug, or a library raising: still one line, and the other items run
        status, detail = "FAIL", f"{type(error).__name__}: {error}"
    detail = " ".join(detail.split())
    if status != "SKIP":
        detail = f"{detail} ({time.monotonic() - start:.0f} s)"
    return status, detail


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m rmood.gpu_check", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--items", default=",".join(ITEMS),
                     help=f"comma-separated items to run, in this order (default {','.join(ITEMS)})")
    top.add_argument("--config", default=str(DEFAULT), help=f"experiment config the items start from (default {DEFAULT})")
    top.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key of every item (after the check's own tiny settings; repeatable)")
    top.add_argument("--accelerate-config", default=ZERO2,
                     help=f"accelerate config of the deepspeed item, from the project folder (default {ZERO2})")
    top.add_argument("--vllm-python", help="python of the vLLM environment (default: RMOOD_VLLM_PYTHON, .venv-vllm, "
                                           "this python)")
    top.add_argument("--verl-python", help="python of the verl environment (default: RMOOD_VERL_PYTHON, .venv-verl, "
                                           "this python)")
    top.add_argument("--timeout", type=float, default=900, help="seconds per command of an item (default 900)")
    top.add_argument("--workdir", help="work folder (default: a new temporary folder)")
    top.add_argument("--keep", action="store_true", help="keep the work folder (it is kept anyway when an item fails)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    items = [item.strip() for item in args.items.split(",") if item.strip()]
    unknown = [item for item in items if item not in ITEMS]
    if unknown or not items:
        parser().error(f"--items: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(ITEMS)}")
    workdir = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="rmood-gpu-check-"))
    workdir.mkdir(parents=True, exist_ok=True)
    check = Check(workdir, args.config, args.set, args.accelerate_config, args.vllm_python, args.verl_python,
                  args.timeout)
    width = max(map(len, items))
    statuses = []
    for item in items:
        status, detail = run_item(check, item)
        statuses.append(status)
        print(f"{status} {item:<{width}}  {ITEMS[item]}: {detail}", flush=True)
    failed = statuses.count("FAIL")
    if failed or args.keep or args.workdir:
        print(f"gpu-check: work folder and logs kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"gpu-check: {statuses.count('PASS')} passed, {failed} failed, {statuses.count('SKIP')} skipped",
          file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
