"""The `rm_check` step: how well a reward model ranks its training pairs, gold test pairs and ood pairs."""

from __future__ import annotations

from typing import Any

import numpy as np

from rmood.io import read_jsonl, write_json
from rmood.data.prompts import conversation
from rmood.rm.score import load_reward_model, score_conversations

PAIR_FIELDS = ("prompt", "chosen", "rejected")


def margins(model, tokenizer, path: str, batch_size: int, limit: int | None = None) -> tuple[np.ndarray, int]:
    """r(chosen) − r(rejected) of the explicit-format pairs in `path` (tie pairs, label 0.5, left out), at most
    `limit` of them (evenly spaced through the file), and how many pairs there are."""
    pairs = [p for p in read_jsonl(path, required=PAIR_FIELDS) if p.get("label", 1.0) != 0.5]
    total = len(pairs)
    if limit is not None and total > limit:
        pairs = [pairs[i] for i in np.linspace(0, total - 1, limit).round().astype(int)]
    prompts = [{"messages": p["prompt"]} for p in pairs]
    chosen = [conversation(q, p["chosen"]) for q, p in zip(prompts, pairs)]
    rejected = [conversation(q, p["rejected"]) for q, p in zip(prompts, pairs)]
    rewards = score_conversations(model, tokenizer, chosen + rejected, batch_size)
    return rewards[: len(pairs)] - rewards[len(pairs) :], total


def summary(diff: np.ndarray, pairs: int) -> dict[str, float | None]:
    """Accuracy (share of positive margins) and the distribution of the margins (None when no pairs) over the `n`
    pairs scored, of `pairs` in the file."""
    if diff.size == 0:
        return {"n": 0, "pairs": pairs,
                **dict.fromkeys(("accuracy", "margin_mean", "margin_std", "margin_min", "margin_median", "margin_max"))}
    return {
        "n": int(diff.size),
        "pairs": pairs,
        "accuracy": float(np.mean(diff > 0)),
        "margin_mean": float(np.mean(diff)),
        "margin_std": float(np.std(diff)),
        "margin_min": float(np.min(diff)),
        "margin_median": float(np.median(diff)),
        "margin_max": float(np.max(diff)),
    }


def check_rm(model: str, train: str, test: str, ood: str, out: str, scoring: dict[str, Any], dtype: str) -> None:
    """Write check.json: `train` (accuracy on the training labels, over at most `scoring.train_pairs` of them),
    `test` (agreement with gold), `ood` (the same on held-out task families)."""
    rm, tokenizer = load_reward_model(model, dtype)
    limits = {"train": scoring["train_pairs"], "test": None, "ood": None}
    report = {name: summary(*margins(rm, tokenizer, path, scoring["batch_size"], limits[name])) for name, path in
              (("train", train), ("test", test), ("ood", ood))}
    write_json(out, report)
    for name, stats in report.items():
        print(f"{name}: {stats}")
