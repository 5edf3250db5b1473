"""The `gold_labeling` step: a gold score for every sampled response."""

from __future__ import annotations

from typing import Any

from rmood.generation import RESPONSE_FIELDS
from rmood.io import DataError, Record, read_jsonl, write_jsonl


def conversation(prompt: dict[str, Any], response: str) -> list[dict[str, str]]:
    """The prompt's messages followed by the assistant's response."""
    return [*prompt["messages"], {"role": "assistant", "content": response}]


def read_samples(samples: str, prompt_files: list[str]) -> tuple[list[Record], dict[str, Record]]:
    """The sample records and the prompts they answer (by id); every sample's prompt must be there."""
    prompts = {r["id"]: r for path in prompt_files for r in read_jsonl(path, required=("id", "messages"))}
    records = read_jsonl(samples, required=RESPONSE_FIELDS)
    missing = {r["prompt_id"] for r in records} - prompts.keys()
    if missing:
        raise DataError(f"{samples}: prompt ids not in {prompt_files}, e.g. {sorted(missing)[0]}")
    return records, prompts


def reward_of_samples(model: str, records: list[Record], prompts: dict[str, Record], batch_size: int, dtype: str) -> list[float]:
    """The reward model's score of every sample, rendered as prompt + response with the RM's own template."""
    from rmood.rm.score import load_reward_model, score_conversations

    conversations = [conversation(prompts[r["prompt_id"]], r["response"]) for r in records]
    return score_conversations(*load_reward_model(model, dtype), conversations, batch_size).tolist()


def score_samples(model: str, samples: str, prompt_files: list[str], out: str, scoring: dict[str, Any], dtype: str) -> None:
    """Write `{prompt_id, sample, reward}` per sample: the proxy reward under the reward model `model`."""
    records, prompts = read_samples(samples, prompt_files)
    rewards = reward_of_samples(model, records, prompts, scoring["batch_size"], dtype)
    write_jsonl(out, ({"prompt_id": r["prompt_id"], "sample": r["sample"], "reward": x} for r, x in zip(records, rewards)))


def label_gold(
    samples: str, prompt_files: list[str], out: str, gold: dict[str, Any], judge: dict[str, Any], dtype: str
) -> None:
    """Write `{prompt_id, sample, gold}` per sample: programmatic (synthetic data), the LLM judge's pointwise score
    (its answers cached in `<out>.cache.jsonl`) or a gold RM's reward."""
    records, prompts = read_samples(samples, prompt_files)
    if gold["source"] == "judge":
        from rmood.labeling.judge import Judge, cache_beside

        scores = Judge(judge, cache_beside(out)).score(
            [(f"{r['prompt_id']}/{r['sample']}", prompts[r["prompt_id"]]["messages"], r["response"]) for r in records]
        )
    elif gold["source"] == "programmatic":
        from rmood.labeling.gold import gold_score

        def reference(prompt_id: str) -> str:
            ref = prompts[prompt_id].get("reference")
            if ref is None:
                raise DataError(f"prompt {prompt_id} has no reference answer: the programmatic gold needs synthetic data")
            return ref

        scores = [gold_score(r["response"], reference(r["prompt_id"]), r["finished"]) for r in records]
    else:
        scores = reward_of_samples(gold["source"], records, prompts, gold["batch_size"], dtype)
    write_jsonl(
        out,
        ({"prompt_id": r["prompt_id"], "sample": r["sample"], "gold": float(s)} for r, s in zip(records, scores)),
    )
