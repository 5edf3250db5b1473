"""The `rrm_augment` step: RRM's augmented preference pairs.

For every training pair (x, c, r) the output holds the pair itself ("original", label 1) and pairs built
from another pair (x', c', r') with a different prompt id:

- "non_contextual": for x, one of x's own responses (c or r) is preferred over c' or r' (label 1);
- "neutral": for x, c' against r' — neither answers x, so neither is better (a tie, label 0.5).

A response whose text is one of x's own responses never counts as off-context, and a pair never
compares a string with itself; a draw that breaks a rule, or repeats a pair already made for x, is
redrawn (at most `MAX_DRAWS` times, then that augmented pair is skipped and counted).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from rmood.io import DataError, Record, read_jsonl, write_jsonl
from rmood.data.prompts import conversation

PAIR_FIELDS = ("id", "prompt", "chosen", "rejected")
TYPES = ("original", "non_contextual", "neutral")
LABELS = {"original": 1.0, "non_contextual": 1.0, "neutral": 0.5}
MAX_DRAWS = 100


def augmented_record(pair: Record, kind: str, k: int, chosen: str, rejected: str, source: list[str]) -> Record:
    """One output record for the prompt of `pair`."""
    return {
        "id": f"{pair['id']}/{kind}/{k}",
        "prompt": pair["prompt"],
        "chosen": chosen,
        "rejected": rejected,
        "label": LABELS[kind],
        "type": kind,
        "source": source,
    }


def draw(pair: Record, kind: str, pairs: list[Record], rng: random.Random, seen: set) -> tuple[str, str, list[str]] | None:
    """(chosen, rejected, source) of one valid, new augmented pair of `kind` for `pair`; None if none was found."""
    own = {pair["chosen"], pair["rejected"]}
    for _ in range(MAX_DRAWS):
        other = rng.choice(pairs)
        if other["id"] == pair["id"]:
            continue
        if kind == "non_contextual":
            mine, theirs = rng.choice(("chosen", "rejected")), rng.choice(("chosen", "rejected"))
            chosen, rejected = pair[mine], other[theirs]
            source = [pair["id"], other["id"]]
            off_context = [rejected]
        else:
            chosen, rejected = other["chosen"], other["rejected"]
            source = [other["id"], other["id"]]
            off_context = [chosen, rejected]
        key = (kind, frozenset((chosen, rejected)))
        if chosen != rejected and own.isdisjoint(off_context) and key not in seen:
            seen.add(key)
            return chosen, rejected, source
    return None


def augment_pairs(pairs: str, out: str, seed: int, rrm: dict[str, Any]) -> None:
    """Write the original pairs and `rrm.non_contextual` + `rrm.neutral` augmented pairs per original to `out`."""
    records = read_jsonl(pairs, required=PAIR_FIELDS)
    if len({r["id"] for r in records}) < 2:
        raise DataError(f"{pairs}: RRM augmentation needs pairs of at least 2 distinct prompts")
    rng = random.Random(f"{seed}-rrm")
    counts: Counter[str] = Counter()
    skipped: Counter[str] = Counter()

    def augmented():
        for pair in records:
            yield augmented_record(pair, "original", 0, pair["chosen"], pair["rejected"], [pair["id"], pair["id"]])
            counts["original"] += 1
            seen: set = set()
            for kind in ("non_contextual", "neutral"):
                for k in range(rrm[kind]):
                    found = draw(pair, kind, records, rng, seen)
                    if found is None:
                        skipped[kind] += 1
                        continue
                    counts[kind] += 1
                    yield augmented_record(pair, kind, k, *found)

    write_jsonl(out, augmented())
    for kind in TYPES:
        print(f"{kind}: {counts[kind]} pairs")
    for kind, n in skipped.items():
        print(f"{kind}: {n} skipped (no valid pair in {MAX_DRAWS} draws)")


def implicit(record: Record) -> Record:
    """An augmented record in the implicit format: `chosen`/`rejected` conversations, plus `id` and `label`."""
    prompt = {"messages": record["prompt"]}
    return {
        "id": record["id"],
        "chosen": conversation(prompt, record["chosen"]),
        "rejected": conversation(prompt, record["rejected"]),
        "label": record["label"],
    }
