"""Reward-model ensembles (Coste et al. 2023): mean, worst-case (min) and uncertainty-weighted
(mean − λ·variance) of several RMs that share a tokenizer.

An ensemble is a folder with `ensemble.json` (members as paths relative to it, the reduction and λ);
`rmood.rm.score.load_reward_model` loads it like any RM (`load_ensemble`), and scoring runs every member once per
batch. Where the members have scored the same samples already (Best-of-N, and the check pairs: every member scores
them in its own job), `combine_scores` (and `rmood.rm.check.check_ensemble`) reduce their rewards instead, to the
same numbers bit for bit, without running a member again.
Engines that need one Hugging Face model (PPO with verl or vLLM) cannot serve it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from rmood.io import DataError, read_json, read_jsonl, write_json, write_jsonl

MANIFEST = "ensemble.json"
REDUCTIONS = ("mean", "wco", "uwo")


def make_ensemble(models: list[str], out: str, reduction: str, uwo_lambda: float) -> None:
    """Write the ensemble folder `out` combining `models` with `reduction`."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown ensemble reduction {reduction!r}; expected one of {REDUCTIONS}")
    if len(models) < 2:
        raise ValueError(f"an ensemble needs at least two reward models, got {len(models)}")
    members = [os.path.relpath(Path(m).resolve(), Path(out).resolve()) for m in models]
    write_json(Path(out) / MANIFEST, {"members": members, "reduction": reduction, "uwo_lambda": uwo_lambda})


def is_ensemble(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def reduce_rewards(rewards: torch.Tensor, reduction: str, uwo_lambda: float) -> torch.Tensor:
    """The ensemble's reward of each column of `rewards` (members × items)."""
    if reduction == "mean":
        return rewards.mean(0)
    if reduction == "wco":
        return rewards.min(0).values
    return rewards.mean(0) - uwo_lambda * rewards.var(0, unbiased=False)


def member_reduction(model: str, files: int) -> Callable[[list[Sequence[float]]], np.ndarray]:
    """The reduction of the ensemble `model` applied to its members' rewards read from `files` reward files (one row
    per member, in the order of the ensemble's members: floats do not add associatively), in float32 on the
    logits as `EnsembleRewardModel` does, so that it gives the ensemble's own rewards bit for bit (float64).

    Refuses files that cannot be the members' logits: not one per member, or members with a `config.reward_bias`
    (whose rewards are logit + bias)."""
    manifest = read_json(Path(model) / MANIFEST)
    if files != len(manifest["members"]):
        raise ValueError(f"{model}: an ensemble of {len(manifest['members'])} members, but {files} reward files")
    for member in manifest["members"]:
        bias = read_json(Path(model) / member / "config.json").get("reward_bias", 0.0)
        if bias:
            raise ValueError(f"{Path(model) / member}: a member with a reward_bias ({bias}); its rewards are not its "
                             "logits, which the ensemble reduces")

    def reduce(rewards: list[Sequence[float]]) -> np.ndarray:
        stacked = torch.tensor(np.asarray(rewards, dtype=np.float64), dtype=torch.float32)
        return reduce_rewards(stacked, manifest["reduction"], manifest["uwo_lambda"]).double().numpy()

    return reduce


def combine_scores(model: str, scores: list[str], out: str) -> None:
    """Write `{prompt_id, sample, reward}` per sample: the ensemble `model`'s reward, reduced (`member_reduction`)
    from `scores`, its members' rewards of the same samples (`rmood.rm.score.score_samples` outputs, one per
    member, in the order of the ensemble's members): the rewards of scoring with the ensemble itself."""
    reduce = member_reduction(model, len(scores))
    files = [read_jsonl(path, required=("prompt_id", "sample", "reward")) for path in scores]
    keys = [(r["prompt_id"], r["sample"]) for r in files[0]]
    for path, records in zip(scores[1:], files[1:]):
        if [(r["prompt_id"], r["sample"]) for r in records] != keys:
            raise DataError(f"{path}: not the samples of {scores[0]}, in the same order")
    reward = reduce([[r["reward"] for r in records] for records in files]).tolist()
    write_jsonl(out, ({"prompt_id": p, "sample": k, "reward": x} for (p, k), x in zip(keys, reward)))


class EnsembleRewardModel(torch.nn.Module):
    """Members' rewards reduced to one; `config.pad_token_id` is the members' shared pad id."""

    def __init__(self, members: list[torch.nn.Module], reduction: str, uwo_lambda: float):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.reduction, self.uwo_lambda = reduction, uwo_lambda
        self.config = SimpleNamespace(pad_token_id=members[0].config.pad_token_id, num_labels=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        rewards = torch.stack(
            [m(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0] for m in self.members]
        )
        return SimpleNamespace(logits=reduce_rewards(rewards, self.reduction, self.uwo_lambda)[:, None])
