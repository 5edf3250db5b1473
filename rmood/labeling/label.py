"""The `gold_labeling` step: a gold score for every sampled response."""

from __future__ import annotations

from typing import Any

from rmood.generation import SAMPLE_FIELDS
from rmood.io import DataError, read_jsonl, write_jsonl


def conversation(prompt: dict[str, Any], response: str) -> list[dict[str, str]]:
    """The prompt's messages followed by the assistant's response."""
    return [*prompt["messages"], {"role": "assistant", "content": response}]


def label_gold(samples: str, prompt_files: list[str], out: str, gold: dict[str, Any], dtype: str) -> None:
    """Write `{prompt_id, sample, gold}` per sample: programmatic (synthetic data) or a gold RM's reward."""
    prompts = {r["id"]: r for path in prompt_files for r in read_jsonl(path, required=("id", "messages"))}
    records = read_jsonl(samples, required=SAMPLE_FIELDS)
    missing = {r["prompt_id"] for r in records} - prompts.keys()
    if missing:
        raise DataError(f"{samples}: prompt ids not in {prompt_files}, e.g. {sorted(missing)[0]}")
    if gold["source"] == "programmatic":
        from rmood.labeling.gold import gold_score

        def reference(prompt_id: str) -> str:
            ref = prompts[prompt_id].get("reference")
            if ref is None:
                raise DataError(f"prompt {prompt_id} has no reference answer: the programmatic gold needs synthetic data")
            return ref

        scores = [gold_score(r["response"], reference(r["prompt_id"]), r["finished"]) for r in records]
    else:
        from rmood.rm.score import load_reward_model, score_conversations

        model, tokenizer = load_reward_model(gold["source"], dtype)
        conversations = [conversation(prompts[r["prompt_id"]], r["response"]) for r in records]
        scores = score_conversations(model, tokenizer, conversations, gold["batch_size"]).tolist()
    write_jsonl(
        out,
        ({"prompt_id": r["prompt_id"], "sample": r["sample"], "gold": float(s)} for r, s in zip(records, scores)),
    )
