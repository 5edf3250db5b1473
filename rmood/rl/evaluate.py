"""The `ppo_eval` step: every checkpoint of one PPO run evaluated in one job (`rl.eval_jobs: run`).

It runs the per-checkpoint steps one after the other and writes the same files they write: each checkpoint's
samples (`rmood.generation.sample_shard`), their gold (`rmood.labeling.gold.label_gold`), their proxy reward
(`score_samples`) and their KL from the reference (`rmood.rl.kl.sequence_kl`), and the proxy reward of the SFT
policy's step-0 samples, which every run shares. One job per run instead of four per checkpoint saves the
start-up of every job, which on the embedded default costs more than the evaluation itself; on a cluster
`rl.eval_jobs: checkpoint` keeps one job per artifact.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rmood.generation import sample_shard
from rmood.labeling.gold import label_gold
from rmood.rm.score import score_samples
from rmood.rl.kl import sequence_kl

STEP_DIR = re.compile(r"step_\d+")


def checkpoint_of(path: str) -> str:
    """The `step_<k>` folder a checkpoint's model or file lies in (a model dir is `step_<k>/model`)."""
    for part in reversed(Path(path).parts):
        if STEP_DIR.fullmatch(part):
            return part
    raise ValueError(f"{path}: not inside a step_<k> folder")


def evaluate_run(
    policies: list[str],
    reference: str,
    reward_model: str,
    step0_samples: str,
    prompt_files: list[str],
    samples: list[str],
    gold_labels: list[str],
    proxy: list[str],
    kl: list[str],
    seed: int,
    sampling: dict[str, Any],
    gold: dict[str, Any],
    judge: dict[str, Any],
    scoring: dict[str, Any],
    dtype: str,
) -> None:
    """Sample, label, score and measure the KL of every checkpoint in `policies` (`step_<k>/model` dirs); the
    outputs are per checkpoint, in the order of `policies`, and `proxy` holds one more, step 0's, first."""
    steps = [checkpoint_of(p) for p in policies]
    for name, files in (("samples", samples), ("gold_labels", gold_labels), ("kl", kl), ("proxy", proxy[1:])):
        if [checkpoint_of(f) for f in files] != steps:
            raise ValueError(f"ppo_eval: the {name} outputs are not one per checkpoint of {steps}, in that order")
    if checkpoint_of(proxy[0]) != checkpoint_of(step0_samples):
        raise ValueError(f"ppo_eval: the first proxy output {proxy[0]} is not for the step-0 samples")
    score_samples(reward_model, step0_samples, prompt_files, proxy[0], scoring, dtype)
    for policy, out, labels, rewards, divergence in zip(policies, samples, gold_labels, proxy[1:], kl):
        print(f"evaluating {policy}", flush=True)
        sample_shard(policy, prompt_files, out, 0, seed, sampling, dtype)
        label_gold(out, prompt_files, labels, gold, judge, dtype)
        score_samples(reward_model, out, prompt_files, rewards, scoring, dtype)
        sequence_kl(policy, reference, out, prompt_files[0], divergence, scoring, sampling, dtype)
