"""The configuration reference, generated: every key of config/schema.yaml (`rmood.config.schema`) with its type,
its value in the embedded default (config/config.yaml), the values it allows and its description, as Markdown.

`python -m rmood config-reference --out config/README.md` writes it (the Snakemake workflow catalog reads a
workflow's config/README.md); tests/test_config_reference.py fails when a key has no description or the file is
stale.
"""

from __future__ import annotations

import json
from typing import Any

from rmood.config import DEFAULT, lookup, schema

HEADER = """# Configuration reference

Generated from `config/schema.yaml` by `python -m rmood config-reference --out config/README.md`: do not edit by
hand. Every key is checked when Snakemake parses the workflow and when a `python -m rmood` step reads a config;
an invalid one stops it with the key and the reason. `config/config.yaml` is the embedded default (the **default**
column); give your own values in a file merged over it (`snakemake … --configfile my.yaml`) or as
`--config key=value`. The reward-model names come from the registry of methods (`rmood/rm/methods.py`), plugins
included.
"""


def resolved(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """`node` with the `$defs` entry it refers to merged under it (its own keys win, properties combined)."""
    if "$ref" not in node:
        return node
    target = resolved(defs[node["$ref"].rsplit("/", 1)[1]], defs)
    merged = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
    if "properties" in target or "properties" in node:
        merged["properties"] = {**target.get("properties", {}), **node.get("properties", {})}
    return merged


def keys(node: dict[str, Any], defs: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
    """Every key below `node`, dotted, with its resolved schema, depth first in the schema's order."""
    found = []
    for name, child in resolved(node, defs).get("properties", {}).items():
        child = resolved(child, defs)
        found.append((".".join((*path, name)), child))
        found += keys(child, defs, (*path, name))
    return found


def kind(node: dict[str, Any], defs: dict[str, Any]) -> str:
    kinds = node.get("type", "string")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "array" in kinds and "items" in node:
        return "list of " + kind(resolved(node["items"], defs), defs)
    return " or ".join(kinds)


def allowed(node: dict[str, Any], defs: dict[str, Any]) -> str:
    """The values `node` allows beyond its type: its names, bounds or pattern (of its items, for a list)."""
    if "items" in node:
        return allowed(resolved(node["items"], defs), defs)
    if "enum" in node:
        return ", ".join(code(str(value)) for value in node["enum"])
    bounds = [f"{sign} {node[key]}" for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"),
                                                       ("maximum", "≤"), ("exclusiveMaximum", "<")) if key in node]
    if "pattern" in node:
        bounds.append(f"matches {code(node['pattern'])}")
    return ", ".join(bounds)


def cell(text: str) -> str:
    """`text` on one line, as a Markdown table cell shows it literally."""
    text = " ".join(str(text).split())
    for char, escaped in (("|", "\\|"), ("*", "\\*"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(char, escaped)
    return text


def code(text: str) -> str:
    """`text` as inline code in a table cell (empty stays empty)."""
    return f"`{text.replace('|', '&#124;')}`" if text else ""


def reference() -> str:
    """The reference as Markdown: the top-level keys, then one table per section."""
    import yaml

    document = schema()
    defs = document["$defs"]
    default = yaml.safe_load(DEFAULT.read_text(encoding="utf-8"))
    rows: dict[str, list[str]] = {}
    for key, node in keys(document, defs):
        section = key.split(".")[0] if "properties" in resolved(document["properties"][key.split(".")[0]], defs) \
            else ""
        if key == section:
            continue
        try:
            value = json.dumps(lookup(default, key), ensure_ascii=False)
        except KeyError:
            value = ""  # a plugin's section, absent from the default
        rows.setdefault(section, []).append(
            f"| `{key}` | {kind(node, defs)} | {code(value)} | {allowed(node, defs)} | "
            f"{cell(node.get('description', ''))} |")
    lines = [HEADER]
    for section, table in rows.items():
        title = f"`{section}`" if section else "Top level"
        description = resolved(document["properties"][section], defs).get("description", "") if section else ""
        lines += [f"## {title}", "", *([cell(description), ""] if description else []),
                  "| key | type | default | allowed | description |", "|---|---|---|---|---|", *table, ""]
    return "\n".join(lines)
