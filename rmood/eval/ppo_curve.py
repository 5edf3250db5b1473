"""The `ppo_curve` step: one RM's PPO run as gold, proxy, KL, finish rate, response length, distance from the RM's
training distribution and share of outliers per checkpoint and prompt."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rmood.io import DataError, read_jsonl, write_json, write_npz
from rmood.mrm.distance import outlier_threshold

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


CHANNELS = ("kl", "gold", "proxy", "finished", "tokens", "distance", "outlier")  # (steps, prompts) arrays
PPO_ARRAYS = ("rm", "steps", "prompts", *CHANNELS)  # ppo/<rm>/per_prompt.npz


def prompt_means(path: str, field: str, value: Callable[[Any], float] = float
                 ) -> tuple[dict[str, float], set[tuple[str, int]]]:
    """The mean of `value(field)` over each prompt's samples in a JSONL file (prompts in file order), and the
    (prompt_id, sample) keys it covers."""
    records = read_jsonl(path, required=("prompt_id", "sample", field))
    if not records:
        raise DataError(f"{path}: no samples")
    values: dict[str, list[float]] = {}
    for r in records:
        values.setdefault(r["prompt_id"], []).append(value(r[field]))
    return {p: float(np.mean(v)) for p, v in values.items()}, {(r["prompt_id"], r["sample"]) for r in records}


def ppo_curve(rm: str, samples_files: list[str], kl_files: list[str], gold_files: list[str], proxy_files: list[str],
              distance_files: list[str], reference: str, out: str, per_prompt: str) -> None:
    """Gather a PPO run's checkpoints, per prompt (`ppo/<rm>/per_prompt.npz`) and on average (`curve.json`).

    Files are matched by the step of their `step_<k>` parent folder, not by list position. Samples (`{prompt_id,
    sample, finished, tokens}`: whether a response ended with the end-of-turn token, and its sampled token ids), gold
    (`{prompt_id, sample, gold}`), proxy (`{prompt_id, sample, reward}`), distance (`{prompt_id, sample, distance}`,
    `rmood.mrm.distance`) and KL (`{prompt_id, sample, kl}`, the per-sequence KL(actor ‖ SFT) in nats of each sample)
    files must cover the same steps, step 0 (the SFT policy) among them, and the same samples per step, and every step
    the same prompts. Step 0 may have no KL file (its KL is 0 by definition). The npz holds `PPO_ARRAYS`: `steps`,
    `prompts`, and `CHANNELS` of shape (steps, prompts), each a mean over the prompt's samples (`finished`: the share
    that ended, `tokens`: response length in tokens, `outlier`: the share farther than the `threshold` of `reference`);
    `curve.json` their means over prompts.
    """
    paths = {what: by_step(files, what) for what, files in (("samples", samples_files), ("gold", gold_files),
                                                             ("proxy", proxy_files), ("distance", distance_files),
                                                             ("KL", kl_files))}
    threshold = outlier_threshold(reference)
    gold_paths, kl_paths = paths["gold"], paths["KL"]
    steps = sorted(gold_paths)
    if 0 not in gold_paths:
        raise DataError(f"{rm}: no gold file for step 0 (the SFT policy) among {gold_files}")
    for what in ("samples", "proxy", "distance"):
        if paths[what].keys() != gold_paths.keys():
            raise DataError(f"{rm}: gold files cover steps {steps}, {what} files {sorted(paths[what])}")
    missing = sorted(set(steps) - kl_paths.keys() - {0})
    extra = sorted(kl_paths.keys() - set(steps))
    if missing or extra:
        raise DataError(f"{rm}: KL files missing for steps {missing} / for steps without samples {extra}")
    prompts: list[str] = []
    table: dict[str, list[list[float]]] = {name: [] for name in CHANNELS}
    for step in steps:
        gold, keys = prompt_means(gold_paths[step], "gold")
        means = {"gold": gold}
        for name, path, field, value in (("proxy", paths["proxy"][step], "reward", float),
                                         ("finished", paths["samples"][step], "finished", float),
                                         ("tokens", paths["samples"][step], "tokens", len),
                                         ("distance", paths["distance"][step], "distance", float),
                                         ("outlier", paths["distance"][step], "distance", lambda d: float(d > threshold)),
                                         ("kl", kl_paths.get(step), "kl", float)):
            if path is None:  # step 0 without a KL file
                means[name] = dict.fromkeys(gold, 0.0)
                continue
            means[name], covered = prompt_means(path, field, value)
            if covered != keys:
                raise DataError(f"{path} and {gold_paths[step]} hold different samples")
        prompts = prompts or list(gold)
        if set(gold) != set(prompts):
            raise DataError(f"{gold_paths[step]}: other prompts than step {steps[0]}'s")
        for name in CHANNELS:
            table[name].append([means[name][p] for p in prompts])
    arrays = {name: np.array(values) for name, values in table.items()}
    write_npz(per_prompt, {"rm": np.array(rm), "steps": np.array(steps), "prompts": np.array(prompts), **arrays})
    write_json(out, {"rm": rm, "steps": steps, **{name: a.mean(axis=1).tolist() for name, a in arrays.items()}})
