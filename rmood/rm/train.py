"""Reward-model training with TRL's RewardTrainer: the Bradley–Terry `rm` and the shared machinery
(initialisation from the policy, checkpoints and resume, atomic save) its variants reuse."""

from __future__ import annotations

from typing import Any

from rmood.io import Record, read_jsonl
from rmood.training import fingerprint, prepare_checkpoints, save_trained, trainer_kwargs


def reward_model_from_policy(policy: str, seed: int, dtype: str):
    """A `*ForSequenceClassification` (num_labels=1, seeded random head) on the policy's backbone, and its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        policy, num_labels=1, dtype=getattr(torch, dtype), pad_token_id=tokenizer.pad_token_id
    )
    return model, tokenizer


def fit_reward_model(
    model,
    tokenizer,
    records: list[Record],
    out: str,
    work_dir: str,
    seed: int,
    rm: dict[str, Any],
    dtype: str,
    inputs: list[str],
    trainer_class=None,
    settings: dict[str, Any] | None = None,
    trainer_args: dict[str, Any] | None = None,
) -> None:
    """Train `model` on `records` (implicit-format `chosen`/`rejected` plus any extra columns) and save it to `out`.

    `trainer_class` defaults to TRL's RewardTrainer; `trainer_args` are extra RewardConfig arguments;
    `settings` (e.g. a variant's config section) join `rm`, `seed` and `dtype` in the checkpoint
    fingerprint, so checkpoints are resumed only when all of them and the `inputs` are unchanged.
    """
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    digest = fingerprint({"rm": rm, "seed": seed, "dtype": dtype, **(settings or {})}, inputs)
    resume = prepare_checkpoints(work_dir, digest)
    trainer = (trainer_class or RewardTrainer)(
        model=model,
        args=RewardConfig(**trainer_kwargs(rm, seed, work_dir, dtype), **(trainer_args or {})),
        train_dataset=Dataset.from_list(records),
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=resume)
    save_trained(trainer, out, work_dir)


def train_reward_model(
    policy: str, pairs: str, model: str, work_dir: str, seed: int, rm: dict[str, Any], dtype: str
) -> None:
    """Bradley–Terry RM: initialised from `policy`, trained on the implicit-format `pairs`, saved to `model`."""
    records = [{"chosen": r["chosen"], "rejected": r["rejected"]} for r in read_jsonl(pairs, required=("chosen", "rejected"))]
    reward_model, tokenizer = reward_model_from_policy(policy, seed, dtype)
    fit_reward_model(reward_model, tokenizer, records, model, work_dir, seed, rm, dtype, inputs=[policy, pairs])
