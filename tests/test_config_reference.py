"""The configuration reference (config/README.md) is generated from the schema, complete and up to date."""

from __future__ import annotations

import copy

import pytest

from conftest import ROOT
from rmood import config_reference
from rmood.config import schema

COMMAND = "python -m rmood config-reference --out config/README.md"


def test_every_key_of_the_schema_has_a_description() -> None:
    document = schema()
    undescribed = [key for key, node in config_reference.keys(document, document["$defs"])
                   if not node.get("description")]
    assert undescribed == [], "describe these keys in config/schema.yaml"


def test_the_reference_is_up_to_date() -> None:
    assert (ROOT / "config" / "README.md").read_text(encoding="utf-8") == config_reference.reference(), (
        f"config/README.md is stale: run `{COMMAND}`")


def test_a_schema_edit_makes_the_reference_stale(monkeypatch) -> None:
    """What the staleness test catches: a description changed in the schema changes the reference."""
    edited = copy.deepcopy(schema())
    edited["properties"]["bon"]["properties"]["n"]["description"] = "how many responses Best-of-N draws"
    monkeypatch.setattr(config_reference, "schema", lambda: edited)
    text = config_reference.reference()
    assert text != (ROOT / "config" / "README.md").read_text(encoding="utf-8")
    assert "| `bon.n` | integer | `32` | ≥ 2 | how many responses Best-of-N draws |" in text


@pytest.mark.parametrize("key, row", [
    ("sampling.top_p", "| `sampling.top_p` | number | `1.0` | > 0, ≤ 1 |"),
    ("reward_models", "| `reward_models` | list of string | "),
    ("judge.base_url", "| `judge.base_url` | string or null | `null` | matches `^https?://` |"),
])
def test_a_row_gives_type_default_and_allowed_values(key: str, row: str) -> None:
    [line] = [line for line in config_reference.reference().splitlines() if line.startswith(f"| `{key}` |")]
    assert line.startswith(row)
