"""Prompt formatting: an (instruction, input) pair becomes the chat messages every model sees, a prompt and a
response the conversation a reward model scores (`conversation`); prompts that leave no room for a response in a
model's context are skipped (`fit_prompts`)."""

from __future__ import annotations

from typing import Any

# AlpacaFarm's own prompt templates (alpaca_farm/prompts/v0_inputs_noinputs.json), without the trailing
# "### Response:" cue: the chat template's assistant turn plays that role.
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}"
)
TEMPLATES = ("plain", "alpaca")


def to_messages(instruction: str, input: str = "", template: str = "plain") -> list[dict[str, str]]:
    """The single user turn for a prompt; `plain` is instruction + blank line + input."""
    if template == "alpaca":
        content = (ALPACA_WITH_INPUT if input else ALPACA_NO_INPUT).format(instruction=instruction, input=input)
    elif template == "plain":
        content = f"{instruction}\n\n{input}" if input else instruction
    else:
        raise ValueError(f"unknown prompt template {template!r}; expected one of {TEMPLATES}")
    return [{"role": "user", "content": content}]


def conversation(prompt: dict[str, Any], response: str) -> list[dict[str, str]]:
    """The prompt record's messages followed by the assistant's response: what a reward model scores."""
    return [*prompt["messages"], {"role": "assistant", "content": response}]


# A tokenizer without a real length limit reports a huge sentinel as its `model_max_length` (int(1e30)).
NO_LIMIT = 10**9


def context_length(model_config=None, tokenizer=None) -> int | None:
    """The tokens a model attends to: the smaller of its (text) config's `max_position_embeddings` and the
    tokenizer's `model_max_length`, each when given and a real limit; None if neither says."""
    limits = []
    if model_config is not None:
        text_config = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
        limits.append(getattr(text_config, "max_position_embeddings", None))
    if tokenizer is not None:
        limits.append(getattr(tokenizer, "model_max_length", None))
    limits = [limit for limit in limits if isinstance(limit, int) and 0 < limit < NO_LIMIT]
    return min(limits) if limits else None


def fit_prompts(
    encoded: list[tuple[dict, list[int]]], context: int | None, max_new_tokens: int, what: str
) -> list[tuple[dict, list[int]]]:
    """The (prompt record, token ids) pairs whose prompt leaves room for `max_new_tokens` in a `context`-token
    window, in input order; the others are skipped and counted in the log (a truncated instruction would be
    another task). This is the one place where prompts meet a model's context: everything downstream (responses,
    pairs, reward-model inputs) is a kept prompt plus at most `max_new_tokens` tokens.
    """
    if context is None:
        return encoded
    limit = context - max_new_tokens
    if limit < 1:
        raise ValueError(f"{what}: {max_new_tokens} new tokens leave no room for a prompt in a context of {context}")
    kept = [(prompt, ids) for prompt, ids in encoded if len(ids) <= limit]
    if len(kept) < len(encoded):
        first = next(prompt.get("id", "?") for prompt, ids in encoded if len(ids) > limit)
        print(
            f"{what}: skipped {len(encoded) - len(kept)} of {len(encoded)} prompts longer than {limit} tokens "
            f"(context {context} − {max_new_tokens} new tokens), e.g. {first}",
            flush=True,
        )
    return kept
