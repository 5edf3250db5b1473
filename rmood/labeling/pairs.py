"""The `preference_pairs` step: pairs of responses to one prompt, in explicit and implicit formats.

Up to `pairs.per_prompt` pairs per prompt (default one), each of two distinct responses with different gold
scores (identical strings and gold ties are dropped); the pairs of one prompt share no response, so k pairs
need 2k sampled responses (`sampling.n`). Prompts are split into train and test; ood prompts form their own pairs. Training
labels come from a simulated annotator (length bias, then random flips) — the situation in which a
learned reward model can be hacked; test and ood labels follow gold, and so do the `golden` pairs:
the training pairs again, labelled by gold, for the golden reference RM.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from rmood.io import DataError, Record, read_jsonl, write_jsonl
from rmood.labeling.label import conversation

PAIR_SETS = ("train", "test", "ood", "golden")  # golden: the train pairs labelled by gold
FORMATS = ("explicit", "implicit")


def candidate_pair(responses: list[Record], rng: random.Random) -> tuple[Record, Record] | None:
    """Two responses with different text and different gold, chosen at random; None if there are none."""
    options = [
        (a, b)
        for i, a in enumerate(responses)
        for b in responses[i + 1 :]
        if a["response"] != b["response"] and a["gold"] != b["gold"]
    ]
    return rng.choice(options) if options else None


def candidate_pairs(responses: list[Record], rng: random.Random, k: int) -> list[tuple[Record, Record]]:
    """Up to `k` pairs drawn one after another by `candidate_pair`, each from the responses no earlier pair used."""
    pairs: list[tuple[Record, Record]] = []
    left = list(responses)
    while len(pairs) < k:
        pair = candidate_pair(left, rng)
        if pair is None:
            break
        pairs.append(pair)
        left = [r for r in left if r is not pair[0] and r is not pair[1]]
    return pairs


def annotate(a: Record, b: Record, rng: random.Random, length_bias: float, flip: float) -> tuple[Record, Record]:
    """(chosen, rejected) as a biased, noisy annotator labels them."""
    if len(a["response"]) != len(b["response"]) and rng.random() < length_bias:
        chosen, rejected = (a, b) if len(a["response"]) > len(b["response"]) else (b, a)
    else:
        chosen, rejected = (a, b) if a["gold"] > b["gold"] else (b, a)
    return (rejected, chosen) if rng.random() < flip else (chosen, rejected)


def by_gold(a: Record, b: Record) -> tuple[Record, Record]:
    return (a, b) if a["gold"] > b["gold"] else (b, a)


def pair_records(prompt: Record, chosen: Record, rejected: Record, labels: str) -> tuple[Record, Record]:
    """The explicit record (prompt messages, chosen, rejected, scores) and the implicit one (conversations)."""
    explicit = {
        "id": prompt["id"],
        "prompt": prompt["messages"],
        "chosen": chosen["response"],
        "rejected": rejected["response"],
        "chosen_gold": chosen["gold"],
        "rejected_gold": rejected["gold"],
        "labels": labels,
    }
    implicit = {
        "id": prompt["id"],
        "chosen": conversation(prompt, chosen["response"]),
        "rejected": conversation(prompt, rejected["response"]),
    }
    return explicit, implicit


def make_pairs(
    samples: str,
    gold_labels: str,
    preference: str,
    ood: str,
    out: list[str],
    seed: int,
    pairs: dict[str, Any],
    annotator: dict[str, Any],
) -> None:
    """Write the pair files; `out` holds `{train,test,ood}.{explicit,implicit}.jsonl`."""
    targets = {Path(path).name.removesuffix(".jsonl"): path for path in out}
    expected = sorted(f"{name}.{fmt}" for name in PAIR_SETS for fmt in FORMATS)
    if sorted(targets) != expected:
        raise ValueError(f"pairs: expected the outputs {expected}, got {sorted(targets)}")
    gold = {(g["prompt_id"], g["sample"]): g["gold"] for g in read_jsonl(gold_labels, required=("prompt_id", "sample", "gold"))}
    responses: dict[str, list[Record]] = defaultdict(list)
    for r in read_jsonl(samples, required=("prompt_id", "sample", "response")):
        key = (r["prompt_id"], r["sample"])
        if key not in gold:
            raise DataError(f"{gold_labels}: no gold label for sample {r['sample']} of prompt {r['prompt_id']}")
        responses[r["prompt_id"]].append({**r, "gold": gold[key]})

    rng = random.Random(f"{seed}-pairs")
    prompts = read_jsonl(preference, required=("id", "messages"))
    test_ids = set(rng.sample([p["id"] for p in prompts], round(len(prompts) * pairs["test_fraction"])))
    pairs_by_set: dict[str, list[tuple[Record, Record]]] = {name: [] for name in PAIR_SETS}
    stats: dict[str, int] = defaultdict(int)
    per_prompt = pairs.get("per_prompt", 1)
    for name, prompt in [("preference", p) for p in prompts] + [("ood", p) for p in read_jsonl(ood, required=("id", "messages"))]:
        drawn = candidate_pairs(responses.get(prompt["id"], []), rng, per_prompt)
        if not drawn:
            stats["prompts without a usable pair"] += 1
        for pair in drawn:
            if name == "ood":
                pairs_by_set["ood"].append(pair_records(prompt, *by_gold(*pair), "gold"))
            elif prompt["id"] in test_ids:
                pairs_by_set["test"].append(pair_records(prompt, *by_gold(*pair), "gold"))
            else:
                chosen, rejected = annotate(*pair, rng, annotator["length_bias"], annotator["flip"])
                stats["train labels that disagree with gold"] += chosen["gold"] < rejected["gold"]
                pairs_by_set["golden"].append(pair_records(prompt, *by_gold(*pair), "gold"))
                pairs_by_set["train"].append(pair_records(prompt, chosen, rejected, "annotator"))
    empty = [name for name in ("train", "test") if not pairs_by_set[name]]
    if empty:
        raise DataError(f"{samples}: no usable {' or '.join(empty)} pairs (every prompt's responses tie or repeat)")
    for name, records in pairs_by_set.items():
        write_jsonl(targets[f"{name}.explicit"], (e for e, _ in records))
        write_jsonl(targets[f"{name}.implicit"], (i for _, i in records))
        print(f"{name}: {len(records)} pairs")
    for key, value in stats.items():
        print(f"{key}: {value}")
