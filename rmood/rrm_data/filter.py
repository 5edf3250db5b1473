"""The `rrm_filter` step: keep the originals and the augmented pairs the `rm` gets wrong.

An augmented pair is kept when |rm_prob − label| ≥ `rrm.threshold`; the boundary itself is kept, with
a tolerance of `TOLERANCE` so that float rounding (1.0 − 0.8 = 0.19999999999999996) does not drop it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rmood.io import read_jsonl, write_json, write_jsonl
from rmood.rrm_data.augment import TYPES

TOLERANCE = 1e-9


def filter_pairs(labeled: str, out: str, stats: str, rrm: dict[str, Any]) -> None:
    """Write the kept pairs to `out` and, per type, how many pairs came in and how many were kept to `stats`."""
    records = read_jsonl(labeled, required=("type", "label", "rm_prob"))
    kept = [
        r for r in records
        if r["type"] == "original" or abs(r["rm_prob"] - r["label"]) >= rrm["threshold"] - TOLERANCE
    ]
    write_jsonl(out, kept)
    n_in, n_kept = Counter(r["type"] for r in records), Counter(r["type"] for r in kept)
    summary = {kind: {"in": n_in[kind], "kept": n_kept[kind]} for kind in TYPES}
    write_json(stats, summary)
    for kind, counts in summary.items():
        print(f"{kind}: kept {counts['kept']} of {counts['in']}")
