"""Prompt formatting: an (instruction, input) pair becomes the chat messages every model sees."""

from __future__ import annotations

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
