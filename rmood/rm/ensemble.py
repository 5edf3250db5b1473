"""Reward-model ensembles (Coste et al. 2023): mean, worst-case (min) and uncertainty-weighted
(mean − λ·variance) of several RMs that share a tokenizer.

An ensemble is a folder with `ensemble.json` (members as paths relative to it, the reduction and λ);
`rmood.rm.score.load_reward_model` loads it like any RM (`load_ensemble`), and scoring runs every member once per
batch.
Engines that need one Hugging Face model (PPO with verl or vLLM) cannot serve it.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import torch

from rmood.io import write_json

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
        if self.reduction == "mean":
            reward = rewards.mean(0)
        elif self.reduction == "wco":
            reward = rewards.min(0).values
        else:
            reward = rewards.mean(0) - self.uwo_lambda * rewards.var(0, unbiased=False)
        return SimpleNamespace(logits=reward[:, None])
