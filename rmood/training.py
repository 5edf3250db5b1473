"""What every trainer in RMOOD shares: TrainingArguments from a config section and crash-safe resume.

Checkpoints live in a work folder beside the artifact (not inside it, so Snakemake does not delete
them when it reruns a killed job). A fingerprint of the settings and inputs guards them: a rerun with
the same fingerprint resumes from the last checkpoint, any other starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

FINGERPRINT = "fingerprint.json"


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
    if work_dir.exists() and not (stamp.is_file() and json.loads(stamp.read_text()) == digest):
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(digest))
    checkpoints = sorted(work_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    complete = [c for c in checkpoints if (c / "trainer_state.json").is_file()]
    if complete:
        print(f"resuming from {complete[-1]}", flush=True)
        return str(complete[-1])
    return None


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
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
