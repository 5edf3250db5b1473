"""Bradley–Terry reward model training with TRL's RewardTrainer on the implicit-format pairs."""

from __future__ import annotations

from typing import Any

from rmood.io import atomic_dir, read_jsonl
from rmood.training import finish, fingerprint, prepare_checkpoints, trainer_kwargs


def train_reward_model(
    policy: str, pairs: str, model: str, work_dir: str, seed: int, rm: dict[str, Any], dtype: str
) -> None:
    """Initialise a `*ForSequenceClassification` (num_labels=1) from `policy`, train it on `pairs`, save it."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    resume = prepare_checkpoints(work_dir, fingerprint({"rm": rm, "seed": seed, "dtype": dtype}, [policy, pairs]))
    tokenizer = AutoTokenizer.from_pretrained(policy)
    torch.manual_seed(seed)  # the score head is initialised at random
    reward_model = AutoModelForSequenceClassification.from_pretrained(
        policy, num_labels=1, dtype=getattr(torch, dtype), pad_token_id=tokenizer.pad_token_id
    )
    records = read_jsonl(pairs, required=("chosen", "rejected"))
    dataset = Dataset.from_list([{"chosen": r["chosen"], "rejected": r["rejected"]} for r in records])
    trainer = RewardTrainer(
        model=reward_model,
        args=RewardConfig(**trainer_kwargs(rm, seed, work_dir, dtype)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=resume)
    with atomic_dir(model) as tmp:
        trainer.model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    finish(work_dir)
