"""The `ppo_curve` step: one RM's PPO run as gold, proxy and KL per checkpoint and prompt."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rmood.io import DataError, read_jsonl, write_json, write_npz

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


PPO_ARRAYS = ("rm", "steps", "prompts", "kl", "gold", "proxy")  # ppo/<rm>/per_prompt.npz


def prompt_means(path: str, field: str) -> tuple[dict[str, float], set[tuple[str, int]]]:
    """The mean of `field` over each prompt's samples in a JSONL file (prompts in file order), and the
    (prompt_id, sample) keys it covers."""
    records = read_jsonl(path, required=("prompt_id", "sample", field))
    if not records:
        raise DataError(f"{path}: no samples")
    values: dict[str, list[float]] = {}
    for r in records:
        values.setdefault(r["prompt_id"], []).append(float(r[field]))
    return {p: float(np.mean(v)) for p, v in values.items()}, {(r["prompt_id"], r["sample"]) for r in records}


def ppo_curve(
    rm: str, kl_files: list[str], gold_files: list[str], proxy_files: list[str], out: str, per_prompt: str
) -> None:
    """Gather a PPO run's checkpoints, per prompt (`ppo/<rm>/per_prompt.npz`) and on average (`curve.json`).

    Files are matched by the step of their `step_<k>` parent folder, not by list position. Gold
    (`{prompt_id, sample, gold}`), proxy (`{prompt_id, sample, reward}`) and KL (`{prompt_id, sample, kl}`, the
    per-sequence KL(actor ‖ SFT) in nats of each sample) files must cover the same steps, step 0 (the SFT policy)
    among them, and the same samples per step, and every step the same prompts. Step 0 may have no KL file (its
    KL is 0 by definition). The npz holds `PPO_ARRAYS`: `steps`, `prompts`, and `kl`, `gold`, `proxy` of shape
    (steps, prompts), each a mean over the prompt's samples; `curve.json` their means over prompts.
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
    prompts: list[str] = []
    table = {name: [] for name in ("kl", "gold", "proxy")}
    for step in steps:
        gold, keys = prompt_means(gold_paths[step], "gold")
        proxy, proxy_keys = prompt_means(proxy_paths[step], "reward")
        if proxy_keys != keys:
            raise DataError(f"{gold_paths[step]} and {proxy_paths[step]} score different samples")
        kl = dict.fromkeys(gold, 0.0)
        if step in kl_paths:
            kl, kl_keys = prompt_means(kl_paths[step], "kl")
            if kl_keys != keys:
                raise DataError(f"{kl_paths[step]} and {gold_paths[step]} hold different samples")
        prompts = prompts or list(gold)
        if set(gold) != set(prompts):
            raise DataError(f"{gold_paths[step]}: other prompts than step {steps[0]}'s")
        for name, values in (("kl", kl), ("gold", gold), ("proxy", proxy)):
            table[name].append([values[p] for p in prompts])
    arrays = {name: np.array(values) for name, values in table.items()}
    write_npz(per_prompt, {"rm": np.array(rm), "steps": np.array(steps), "prompts": np.array(prompts), **arrays})
    write_json(out, {"rm": rm, "steps": steps, **{name: a.mean(axis=1).tolist() for name, a in arrays.items()}})
