"""A PPO run's checkpoint files (`ppo/<run>/step_<k>/<kind>.jsonl`): which update each is for, and their samples'
values by prompt.

Shared by the curve of a run (`rmood.eval.ppo_curve`) and the tuning rule (`rmood.rl.tuning`), which reads the
checkpoint files itself so that a change to the curve reruns no PPO job.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rmood.io import DataError, read_jsonl

STEP_DIR = re.compile(r"step_(\d+)")
Key = tuple[str, int]  # (prompt_id, sample)


def step_of(path: str) -> int:
    """The checkpoint step k of a file inside a `step_<k>` folder."""
    match = STEP_DIR.fullmatch(Path(path).parent.name)
    if match is None:
        raise DataError(f"{path}: expected to lie in a step_<k> folder")
    return int(match.group(1))


def by_step(files: list[str], what: str) -> dict[int, str]:
    """Map step -> file, refusing two files for one step."""
    paths: dict[int, str] = {}
    for path in files:
        step = step_of(path)
        if step in paths:
            raise DataError(f"two {what} files for step {step}: {paths[step]} and {path}")
        paths[step] = path
    return paths


def sample_values(path: str, field: str, value: Callable[[Any], float] = float) -> dict[Key, float]:
    """`value(field)` of every sample of a JSONL file, by (prompt_id, sample), in file order."""
    records = read_jsonl(path, required=("prompt_id", "sample", field))
    if not records:
        raise DataError(f"{path}: no samples")
    return {(r["prompt_id"], r["sample"]): value(r[field]) for r in records}


def prompt_means(values: dict[Key, float], prompts: list[str]) -> list[float]:
    """The mean of each prompt's samples, in the order of `prompts`."""
    found: dict[str, list[float]] = {}
    for (prompt, _), value in values.items():
        found.setdefault(prompt, []).append(value)
    return [float(np.mean(found[p])) for p in prompts]
