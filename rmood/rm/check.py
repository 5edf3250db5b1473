"""The `rm_check` step: how well a reward model ranks its training pairs, gold test pairs and ood pairs; and
`check_ensemble`, the same check of an ensemble reduced from its members' rewards of those pairs. Both keep the
rewards they scored (`check_rewards.npz`), from which the report computes paired accuracies."""

from __future__ import annotations

from typing import Any

import numpy as np

from rmood.io import DataError, read_jsonl, read_npz, write_json, write_npz
from rmood.data.prompts import conversation
from rmood.rm.score import load_reward_model, score_conversations

PAIR_FIELDS = ("prompt", "chosen", "rejected")
SPLITS = ("train", "test", "ood")
REWARD_ARRAYS = ("chosen", "rejected", "pairs")  # check_rewards.npz holds <split>_<array> of each


def pair_rewards(model, tokenizer, path: str, batch_size: int,
                 limit: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """The rewards of the chosen and of the rejected responses of the explicit-format pairs in `path` (tie pairs,
    label 0.5, left out), at most `limit` of them (evenly spaced through the file), and how many pairs there are."""
    pairs = [p for p in read_jsonl(path, required=PAIR_FIELDS) if p.get("label", 1.0) != 0.5]
    total = len(pairs)
    if limit is not None and total > limit:
        pairs = [pairs[i] for i in np.linspace(0, total - 1, limit).round().astype(int)]
    prompts = [{"messages": p["prompt"]} for p in pairs]
    chosen = [conversation(q, p["chosen"]) for q, p in zip(prompts, pairs)]
    rejected = [conversation(q, p["rejected"]) for q, p in zip(prompts, pairs)]
    rewards = score_conversations(model, tokenizer, chosen + rejected, batch_size)
    return rewards[: len(pairs)], rewards[len(pairs) :], total


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


def check_rm(model: str, train: str, test: str, ood: str, out: str, rewards: str, scoring: dict[str, Any],
             dtype: str) -> None:
    """Write check.json: `train` (accuracy on the training labels, over at most `scoring.train_pairs` of them),
    `test` (agreement with gold), `ood` (the same on held-out task families); and `rewards` (.npz), each split's
    rewards of the chosen and rejected responses scored (`<split>_chosen`, `<split>_rejected`) and the pairs in
    its file (`<split>_pairs`), from which `check_ensemble` reduces an ensemble's check."""
    rm, tokenizer = load_reward_model(model, dtype)
    limits = {"train": scoring["train_pairs"], "test": None, "ood": None}
    scored = {split: pair_rewards(rm, tokenizer, path, scoring["batch_size"], limits[split])
              for split, path in zip(SPLITS, (train, test, ood))}
    write_npz(rewards, {f"{split}_{key}": value for split, values in scored.items()
                        for key, value in zip(REWARD_ARRAYS, values)})
    write_report(out, {split: summary(chosen - rejected, total) for split, (chosen, rejected, total) in scored.items()})


def check_ensemble(model: str, rewards: list[str], out: str, reduced: str) -> None:
    """Write the check.json of the ensemble `model` and its rewards of the pairs (`reduced`, as rm_check's) from
    `rewards`, its members' rm_check rewards of the same pairs (one file per member, in the order of the ensemble's
    members), reduced as the ensemble reduces its members' logits (`rmood.rm.ensemble.member_reduction`): what the
    ensemble's own rm_check writes, bit for bit."""
    from rmood.rm.ensemble import member_reduction

    reduce = member_reduction(model, len(rewards))
    keys = [f"{split}_{key}" for split in SPLITS for key in REWARD_ARRAYS]
    members = [read_npz(path, keys, "rm_check rewards") for path in rewards]
    for path, arrays in zip(rewards[1:], members[1:]):
        if any(arrays[key].shape != members[0][key].shape or (key.endswith("_pairs") and arrays[key] != members[0][key])
               for key in keys):
            raise DataError(f"{path}: not the rewards of the pairs of {rewards[0]}")
    arrays = {key: members[0][key] if key.endswith("_pairs") else reduce([m[key] for m in members]) for key in keys}
    write_npz(reduced, arrays)
    write_report(out, {split: summary(arrays[f"{split}_chosen"] - arrays[f"{split}_rejected"],
                                      int(arrays[f"{split}_pairs"])) for split in SPLITS})


def write_report(out: str, report: dict[str, dict[str, float | None]]) -> None:
    write_json(out, report)
    for name, stats in report.items():
        print(f"{name}: {stats}")
