"""The `ppo_curve` step: one RM's PPO run as gold, proxy and KL per checkpoint (`ppo/<rm>/curve.json`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rmood.io import DataError, read_jsonl, write_json

STEP_DIR = re.compile(r"step_(\d+)")


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


def mean_score(path: str, field: str) -> tuple[float, set[tuple[str, int]]]:
    """The mean of `field` over a JSONL file's samples, and the (prompt_id, sample) keys it covers."""
    records = read_jsonl(path, required=("prompt_id", "sample", field))
    if not records:
        raise DataError(f"{path}: no samples")
    return float(np.mean([r[field] for r in records])), {(r["prompt_id"], r["sample"]) for r in records}


def read_kl(path: str) -> float:
    """The mean per-sequence KL of a KL file (`{prompt_id, sample, kl, tokens}` per sample)."""
    kl, _ = mean_score(path, "kl")
    return kl


def ppo_curve(rm: str, kl_files: list[str], gold_files: list[str], proxy_files: list[str], out: str) -> None:
    """Gather a PPO run's checkpoints into `{"rm", "steps", "kl", "gold", "proxy"}` sorted by step.

    Files are matched by the step of their `step_<k>` parent folder, not by list position. Gold
    (`{prompt_id, sample, gold}`) and proxy (`{prompt_id, sample, reward}`) files must cover the same
    steps, step 0 (the SFT policy) among them, and the same samples per step; gold and proxy are means
    over samples. KL files (`{prompt_id, sample, kl, tokens}` per sample) give the mean per-sequence
    KL(actor ‖ SFT) in nats; step 0 may have none (its KL is then 0 by definition), if it has one it is used.
    """
    gold_paths = by_step(gold_files, "gold")
    proxy_paths = by_step(proxy_files, "proxy")
    kl_paths = by_step(kl_files, "KL")
    steps = sorted(gold_paths)
    if 0 not in gold_paths:
        raise DataError(f"{rm}: no gold file for step 0 (the SFT policy) among {gold_files}")
    if proxy_paths.keys() != gold_paths.keys():
        raise DataError(f"{rm}: gold files cover steps {steps}, proxy files {sorted(proxy_paths)}")
    missing = sorted(set(steps) - kl_paths.keys() - {0})
    extra = sorted(kl_paths.keys() - set(steps))
    if missing or extra:
        raise DataError(f"{rm}: KL files missing for steps {missing} / for steps without samples {extra}")
    curve: dict = {"rm": rm, "steps": steps, "kl": [], "gold": [], "proxy": []}
    for step in steps:
        gold, gold_keys = mean_score(gold_paths[step], "gold")
        proxy, proxy_keys = mean_score(proxy_paths[step], "reward")
        if gold_keys != proxy_keys:
            raise DataError(f"{gold_paths[step]} and {proxy_paths[step]} score different samples")
        curve["kl"].append(read_kl(kl_paths[step]) if step in kl_paths else 0.0)
        curve["gold"].append(gold)
        curve["proxy"].append(proxy)
    write_json(out, curve)
