"""What every trainer in RMOOD shares: TrainingArguments from a config section and crash-safe resume.

Checkpoints live in a work folder beside the artifact (not inside it, so Snakemake does not delete
them when it reruns a killed job). A fingerprint of the settings and inputs guards them: a rerun with
the same fingerprint resumes from the last complete checkpoint (one whose `trainer_state.json`, the
last file a checkpoint gets, is whole), any other starts afresh. On CPU a run killed and resumed ends
with exactly the weights of an uninterrupted one (the Trainer restores the RNG states and skips the
batches already seen; tests/test_faults.py kills real runs to check). For a loop the Hugging Face Trainer
does not drive (TRL's PPO), `save_optimizer`/`load_optimizer` and `save_rng`/`load_rng` keep the rest
of a training state in safetensors files (no pickle).

Under `accelerate launch` (DDP or DeepSpeed, `training.launcher`) every process runs the same step: the
main process prepares the work folder while the others wait for its fingerprint, and only the main
process writes the final model (`save_trained`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rmood import arithmetic
from rmood.io import atomic_dir, atomic_path, write_json, writing

FINGERPRINT = "fingerprint.json"
REPORTERS = ("tensorboard", "wandb")  # the Trainer integrations `logging.report_to` may name


def fingerprint(settings: dict[str, Any], inputs: list[str | Path]) -> str:
    """A digest of the settings and of each input's path, size and modification time."""
    def stat(path: Path) -> list:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]

    payload = json.dumps({"settings": settings, "inputs": [stat(Path(p)) for p in inputs]}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def prepare_checkpoints(work_dir: str | Path, digest: str) -> str | None:
    """Make `work_dir` ready for this run; return the checkpoint to resume from, if any."""
    work_dir = Path(work_dir)
    stamp = work_dir / FINGERPRINT

    def current() -> bool:
        return is_json(stamp) and json.loads(stamp.read_text()) == digest

    if int(os.environ.get("RANK", "0")) == 0:  # the main process (of `accelerate launch`, or the only one)
        if work_dir.exists() and not current():
            shutil.rmtree(work_dir)
        with writing(work_dir):
            work_dir.mkdir(parents=True, exist_ok=True)
        write_json(stamp, digest)
    else:
        while not current():
            time.sleep(0.2)
    checkpoints = sorted(work_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    complete = [c for c in checkpoints if is_json(c / "trainer_state.json")]
    if complete:
        print(f"resuming from {complete[-1]}", flush=True)
        return str(complete[-1])
    return None


def is_json(path: Path) -> bool:
    """Whether `path` is a whole JSON document (a writer killed mid-file leaves a cut one)."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def save_trained(trainer, out: str | Path, work_dir: str | Path, merge_lora: bool = False) -> None:
    """Save the trained model and its tokenizer to `out` (atomically, from the main process), then drop the
    checkpoints; every process calls it. `merge_lora` folds a LoRA adapter into the weights first."""
    from accelerate.utils import DistributedType

    accelerator = trainer.accelerator
    print(f"trained on {accelerator.num_processes} process(es) ({accelerator.distributed_type.value})", flush=True)
    sharded = accelerator.distributed_type == DistributedType.DEEPSPEED and not merge_lora
    state_dict = accelerator.get_state_dict(trainer.model) if sharded else None  # ZeRO-3 gathers on every process
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(trainer.model)
        arithmetic.count("training", arithmetic.matmul_parameters(model), trained_tokens(trainer))
        with atomic_dir(out) as tmp:
            (model.merge_and_unload() if merge_lora else model).save_pretrained(tmp, state_dict=state_dict)
            trainer.processing_class.save_pretrained(tmp)
        finish(work_dir)
    accelerator.wait_for_everyone()


def trained_tokens(trainer) -> int:
    """The tokens of the trainer's data set (SFT's `input_ids`, a reward model's `chosen_ids` and `rejected_ids`)
    times its epochs."""
    dataset = trainer.train_dataset
    columns = [column for column in ("input_ids", "chosen_ids", "rejected_ids") if column in dataset.column_names]
    return round(sum(len(ids) for column in columns for ids in dataset[column]) * trainer.args.num_train_epochs)


def finish(work_dir: str | Path) -> None:
    """Drop the checkpoints once the final model is saved (they hold optimizer states: large)."""
    shutil.rmtree(work_dir, ignore_errors=True)


def trainer_kwargs(section: dict[str, Any], seed: int, work_dir: str | Path, dtype: str) -> dict[str, Any]:
    """Keyword arguments shared by SFTConfig and RewardConfig."""
    import torch

    on_gpu = torch.cuda.is_available()
    return dict(
        output_dir=str(work_dir),
        num_train_epochs=section["epochs"],
        learning_rate=section["learning_rate"],
        per_device_train_batch_size=section["batch_size"],
        gradient_accumulation_steps=section["gradient_accumulation_steps"],
        lr_scheduler_type=section["lr_scheduler_type"],
        warmup_steps=section["warmup_ratio"],  # a float in [0, 1) is a ratio of the total steps
        max_length=section["max_length"],
        # Batches of similar length (`group_by_length`): much less padding; for reward models see
        # rmood.rm.train.reward_trainer_class, SFT batches by the length of its `input_ids`.
        train_sampling_strategy="group_by_length" if section.get("group_by_length", False) else "random",
        save_strategy="steps",
        save_steps=section["save_steps"],
        save_total_limit=2,
        save_only_model=False,
        logging_steps=10,
        seed=seed,
        data_seed=seed,
        report_to="none",
        use_cpu=not on_gpu,
        bf16=on_gpu and dtype == "bfloat16",
        fp16=on_gpu and dtype == "float16",
        # TRL's SFTConfig/RewardConfig turn activation checkpointing on by default: it saves GPU memory for large
        # models, but on a CPU it only recomputes every forward pass during the backward one (~25% more time).
        activation_checkpointing=on_gpu,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


@contextlib.contextmanager
def training_logs(logging: dict[str, Any] | None, log_dir: str | Path | None, resume: bool) -> Iterator[dict[str, Any]]:
    """Send a Trainer's logs where `logging.report_to` says; yields the Trainer arguments that do it.

    Build the Trainer and train inside the block. With `report_to` empty (the default) or no `logging` section, it
    yields `report_to="none"` and writes nothing. Otherwise every named integration logs into `log_dir`, the job's
    own run folder (outside its work folder and its artifact): TensorBoard's event files straight in `log_dir`
    (through TENSORBOARD_LOGGING_DIR, transformers' setting for it), a W&B run in `log_dir/wandb`, offline unless
    WANDB_MODE says otherwise (so it needs neither network nor key; `wandb sync` uploads it later), in the project
    WANDB_PROJECT or "rmood". A run that starts afresh (`resume` false) empties `log_dir` first; a resumed run adds
    its event file to the earlier one's. The environment is restored and the W&B run finished on leaving, so the
    next job of a warm worker starts clean. Logging changes no weights: the integrations draw no random numbers
    from the training's generators.
    """
    report = list((logging or {}).get("report_to") or [])
    if not report:
        yield {"report_to": "none"}
        return
    unknown = [name for name in report if name not in REPORTERS]
    if unknown:
        raise ValueError(f"logging.report_to: {unknown} (known: {', '.join(REPORTERS)})")
    missing = [name for name in report if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"logging.report_to names {', '.join(missing)}, which is not installed (pip install "
                         f"{' '.join(missing)}, the versions pinned in pyproject.toml)")
    if log_dir is None:
        raise ValueError("logging.report_to is set but the step got no log folder (--log-dir)")
    name, log_dir = str(log_dir), Path(log_dir).resolve()  # the run's name: its folder as the step got it
    main = int(os.environ.get("RANK", "0")) == 0
    if main:
        if not resume:
            shutil.rmtree(log_dir, ignore_errors=True)
        log_dir.mkdir(parents=True, exist_ok=True)
    environment = {"TENSORBOARD_LOGGING_DIR": str(log_dir)}
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    run = None
    try:
        if "wandb" in report and main:
            import wandb

            # Started here, not by transformers' WandbCallback (which uses this run): its folder, mode and project
            # are then this job's even in a worker process that ran another job's W&B run before.
            run = wandb.init(dir=str(log_dir), mode=os.environ.get("WANDB_MODE", "offline"),
                             project=os.environ.get("WANDB_PROJECT", "rmood"), name=name,
                             reinit="finish_previous")
        yield {"report_to": report, "run_name": name}
    finally:
        if run is not None:
            import wandb

            run.finish()
            wandb.teardown()  # stops W&B's service process, which would otherwise live as long as a warm worker
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def length_grouped(trainer_class, lengths):
    """`trainer_class` (a transformers Trainer) batching examples of similar length when its
    `train_sampling_strategy` is `group_by_length`: `lengths(dataset)` gives each example's length, and
    `length_grouped_sampler` batches them."""

    class LengthGrouped(trainer_class):
        def _get_train_sampler(self, train_dataset=None):
            dataset = self.train_dataset if train_dataset is None else train_dataset
            if self.args.train_sampling_strategy != "group_by_length":
                return super()._get_train_sampler(dataset)
            return length_grouped_sampler(lengths(dataset),
                                          self.args.train_batch_size * self.args.gradient_accumulation_steps)

    LengthGrouped.__name__ = LengthGrouped.__qualname__ = f"LengthGrouped{trainer_class.__name__}"
    return LengthGrouped


def length_grouped_sampler(lengths: list[int], batch_size: int, mega_batches: int = 50):
    """A sampler of indices whose consecutive `batch_size` blocks hold examples of similar length, in random order.

    Each epoch: a random permutation (from torch's global generator, seeded by the Trainer like its default random
    sampler) cut into mega-batches of `mega_batches` batches, each sorted by length and cut into batches; then the
    order of all batches is shuffled. transformers' own `LengthGroupedSampler` skips that last shuffle, so every
    mega-batch runs from its longest batch to its shortest: a length (and, in the embedded data, task) sweep every
    50 steps, which hurt the embedded SFT and reward models noticeably.
    """
    import torch
    from torch.utils.data import Sampler

    class LengthGroupedSampler(Sampler):
        def __len__(self) -> int:
            return len(lengths)

        def __iter__(self):
            order = torch.randperm(len(lengths)).tolist()
            size = mega_batches * batch_size
            batches = []
            for start in range(0, len(order), size):
                mega = sorted(order[start : start + size], key=lambda i: lengths[i])
                batches += [mega[i : i + batch_size] for i in range(0, len(mega), batch_size)]
            return iter([i for b in torch.randperm(len(batches)).tolist() for i in batches[b]])

    return LengthGroupedSampler()


def save_optimizer(optimizer, path: str | Path) -> None:
    """An optimizer's state dict as safetensors: its tensors, and its param groups and other values as JSON metadata."""
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors, values = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if hasattr(value, "contiguous"):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                values[f"{index}.{key}"] = value
    metadata = {"param_groups": json.dumps(state["param_groups"]), "values": json.dumps(values)}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)


def load_optimizer(optimizer, path: str | Path) -> None:
    """Load a state written by `save_optimizer` into `optimizer` (same parameters in the same order)."""
    from safetensors import safe_open

    state: dict[int, dict[str, Any]] = {}
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        for name in f.keys():
            index, key = name.split(".", 1)
            state.setdefault(int(index), {})[key] = f.get_tensor(name)
    for name, value in json.loads(metadata["values"]).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
              for group in json.loads(metadata["param_groups"])]  # JSON made tuples (Adam's betas) lists
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_rng(path: str | Path) -> None:
    """The global random states (Python, NumPy, torch CPU and CUDA) as safetensors."""
    import random

    import numpy as np
    import torch
    from safetensors.torch import save_file

    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    tensors = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "python": torch.tensor(internal, dtype=torch.int64),
    }
    if torch.cuda.is_available():
        tensors |= {f"cuda.{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())}
    scalars = {"numpy": [kind, int(position), int(has_gauss), float(gauss)], "python": [version, gauss_next]}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"scalars": json.dumps(scalars)})


def load_rng(path: str | Path) -> None:
    """Restore the global random states written by `save_rng`."""
    import random

    import numpy as np
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        scalars = json.loads(f.metadata()["scalars"])
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    kind, position, has_gauss, gauss = scalars["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), position, has_gauss, gauss))
    version, gauss_next = scalars["python"]
    random.setstate((version, tuple(tensors["python"].tolist()), gauss_next))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(sum(name.startswith("cuda.") for name in tensors))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
