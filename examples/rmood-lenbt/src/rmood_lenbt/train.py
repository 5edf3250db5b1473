"""Training `lenbt`: RMOOD's Bradley–Terry training with each pair's length term as TRL's `margin`."""

from __future__ import annotations

from typing import Any

from rmood.io import Record, read_jsonl
from rmood.rm.train import fit_reward_model, reward_model_from_policy


def response_length(tokenizer, conversation: list[dict[str, str]]) -> int:
    """The length in tokens of a conversation's response (its last message)."""
    return len(tokenizer(conversation[-1]["content"], add_special_tokens=False)["input_ids"])


def length_margins(tokenizer, records: list[Record], alpha: float, tokens: int) -> list[Record]:
    """`records` with `margin` = −α·(ℓ_chosen − ℓ_rejected)/tokens: RewardTrainer's loss
    −log σ(r_c − r_r − margin) is then that of the product of the reward model and the fixed length expert."""
    return [{**r, "margin": -alpha * (response_length(tokenizer, r["chosen"]) -
                                      response_length(tokenizer, r["rejected"])) / tokens} for r in records]


def train_lenbt(
    policy: str, pairs: str, model: str, work_dir: str, seed: int, rm: dict[str, Any], lenbt: dict[str, Any],
    dtype: str, logging: dict[str, Any] | None = None, log_dir: str | None = None,
) -> None:
    """lenbt: initialised from `policy`, trained on the implicit-format `pairs` with the `rm` settings and the length
    expert of `lenbt` (alpha, tokens), saved to `model`."""
    records = [{"chosen": r["chosen"], "rejected": r["rejected"]}
               for r in read_jsonl(pairs, required=("chosen", "rejected"))]
    reward_model, tokenizer = reward_model_from_policy(policy, seed, dtype)
    fit_reward_model(
        reward_model, tokenizer, length_margins(tokenizer, records, lenbt["alpha"], lenbt["tokens"]), model,
        work_dir, seed, rm, dtype, inputs=[policy, pairs], settings={"lenbt": lenbt}, logging=logging,
        log_dir=log_dir,
    )
