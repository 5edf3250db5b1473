"""The LLM judge's prompt templates (`judge.pointwise.template`, `judge.pairwise.template`): reading and rendering.

alpaca_eval's prompt format: ChatML text (`<|im_start|>role` … `<|im_end|>` blocks; plain text is one user
message) with the fields `{instruction}` and `{output}` (pointwise), or `{output_1}` and `{output_2}` (pairwise).
Kept apart from `rmood.labeling.judge` so that validating a config (`rmood.config.check_judge`) reads a template
without importing the judge's client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rmood.io import DataError

Message = dict[str, str]
FIELDS = {"pointwise": ("instruction", "output"), "pairwise": ("instruction", "output_1", "output_2")}
CHATML = re.compile(r"<\|im_start\|>(system|user|assistant)\n(.*?)\n?<\|im_end\|>", re.S)
FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Template:
    """A judge prompt: (role, text with `{field}`s) per message."""

    messages: tuple[tuple[str, str], ...]

    def render(self, **fields: str) -> list[Message]:
        """The messages with the fields filled in (a field's value is inserted verbatim, never re-read)."""
        return [{"role": role, "content": FIELD.sub(lambda m: fields[m[1]], text)} for role, text in self.messages]


def load_template(path: str | Path, task: str) -> Template:
    """Read a template file: ChatML blocks (or plain text, one user message) using exactly the task's fields."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the {task} template ({err})") from None
    if "<|im_start|>" in text:
        if CHATML.sub("", text).strip():
            raise DataError(f"{path}: text outside the <|im_start|>role … <|im_end|> blocks")
        messages = tuple(CHATML.findall(text))
    else:
        messages = (("user", text.strip()),)
    used = {name for _, content in messages for name in FIELD.findall(content)}
    if used != set(FIELDS[task]):
        raise DataError(f"{path}: a {task} template uses the fields {sorted(FIELDS[task])}, this one {sorted(used)}")
    return Template(messages)
