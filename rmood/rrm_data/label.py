"""The `rrm_label` step: the Bradley–Terry `rm`'s preference probability for every augmented pair."""

from __future__ import annotations

from typing import Any

from rmood.io import read_jsonl, write_jsonl
from rmood.rrm_data.augment import PAIR_FIELDS, implicit


def label_pairs(model: str, pairs: str, out: str, scoring: dict[str, Any], dtype: str) -> None:
    """Write the augmented `pairs` with `rm_prob` = σ(r(chosen) − r(rejected)) under the reward model `model`."""
    from scipy.special import expit

    from rmood.rm.score import load_reward_model, score_conversations

    records = read_jsonl(pairs, required=(*PAIR_FIELDS, "label"))
    conversations = [implicit(r) for r in records]
    rm, tokenizer = load_reward_model(model, dtype)
    rewards = score_conversations(
        rm, tokenizer, [c["chosen"] for c in conversations] + [c["rejected"] for c in conversations], scoring["batch_size"]
    )
    probs = expit(rewards[: len(records)] - rewards[len(records) :])
    write_jsonl(out, ({**r, "rm_prob": float(p)} for r, p in zip(records, probs)))
    print(f"{len(records)} pairs labelled, mean rm_prob {probs.mean():.3f}" if records else "no pairs to label")
