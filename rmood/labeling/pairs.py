"""The `preference_pairs` step: pairs of responses to one prompt, in explicit and implicit formats.

Up to `pairs.per_prompt` pairs per prompt, each of two distinct responses with different gold scores
(identical strings and gold ties are dropped); the pairs of one prompt share no response, so k pairs need 2k
sampled responses (`sampling.n`). Prompts are split into train and test; ood prompts form their own pairs. Training
labels come from a simulated annotator (length bias, then random flips) — the situation in which a
learned reward model can be hacked — or from an LLM judge (`annotator.source: judge`, rmood.labeling.judge);
test and ood labels follow gold, and so do the `golden` pairs: the training pairs again, labelled by gold,
for the golden reference RM.

The split and the pairs are drawn from `seed` (shared by every replicate); the annotator's random choices
from `replicate`, so replicates differ in their training labels only.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from rmood.io import DataError, Record, read_jsonl, write_jsonl
from rmood.data.prompts import conversation

PAIR_SETS = ("train", "test", "ood", "golden")  # golden: the train pairs labelled by gold
FORMATS = ("explicit", "implicit")
UNLABELLED = "train pairs the judge left unlabelled (its two orders disagree)"


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


def label_train_pairs(
    train: list[tuple[Record, tuple[Record, Record]]],
    annotator: dict[str, Any],
    judge: dict[str, Any],
    rng: random.Random,
    targets: dict[str, str],
) -> list[tuple[Record, Record] | None]:
    """(chosen, rejected) of each (prompt, pair) by the annotator: simulated (its choices drawn from `rng`), or the LLM
    judge asked in both orders (None where the orders disagree: such a pair is left out of train and golden)."""
    if annotator["source"] != "judge":
        return [annotate(*pair, rng, annotator["length_bias"], annotator["flip"]) for _, pair in train]
    from rmood.labeling.judge import Judge, cache_beside

    items = [(prompt["id"], prompt["messages"], a["response"], b["response"]) for prompt, (a, b) in train]
    labels = Judge(judge, cache_beside(targets["train.explicit"])).prefer(items)
    return [None if label is None else (pair if label == 0 else pair[::-1]) for label, (_, pair) in zip(labels, train)]


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
    replicate: int,
    pairs: dict[str, Any],
    annotator: dict[str, Any],
    judge: dict[str, Any],
) -> None:
    """Write the pair files; `out` holds `{train,test,ood,golden}.{explicit,implicit}.jsonl`. With the LLM judge
    as annotator, its answers are cached in `train.explicit.jsonl.cache.jsonl`."""
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
    annotator_rng = random.Random(f"{replicate}-annotator")
    prompts = read_jsonl(preference, required=("id", "messages"))
    test_ids = set(rng.sample([p["id"] for p in prompts], round(len(prompts) * pairs["test_fraction"])))
    pairs_by_set: dict[str, list[tuple[Record, Record]]] = {name: [] for name in PAIR_SETS}
    stats: dict[str, int] = defaultdict(int)
    train: list[tuple[Record, tuple[Record, Record]]] = []
    for name, prompt in [("preference", p) for p in prompts] + [("ood", p) for p in read_jsonl(ood, required=("id", "messages"))]:
        drawn = candidate_pairs(responses.get(prompt["id"], []), rng, pairs["per_prompt"])
        if not drawn:
            stats["prompts without a usable pair"] += 1
        for pair in drawn:
            if name == "ood":
                pairs_by_set["ood"].append(pair_records(prompt, *by_gold(*pair), "gold"))
            elif prompt["id"] in test_ids:
                pairs_by_set["test"].append(pair_records(prompt, *by_gold(*pair), "gold"))
            else:
                train.append((prompt, pair))
    for (prompt, pair), labelled in zip(train, label_train_pairs(train, annotator, judge, annotator_rng, targets)):
        if labelled is None:
            stats[UNLABELLED] += 1
            continue
        chosen, rejected = labelled
        stats["train labels that disagree with gold"] += chosen["gold"] < rejected["gold"]
        pairs_by_set["golden"].append(pair_records(prompt, *by_gold(*pair), "gold"))
        pairs_by_set["train"].append(pair_records(prompt, chosen, rejected, "annotator"))
    empty = [name for name in ("train", "test") if not pairs_by_set[name]]
    if empty:
        reason = f"{stats[UNLABELLED]} {UNLABELLED}" if stats[UNLABELLED] else "every prompt's responses tie or repeat"
        raise DataError(f"{samples}: no usable {' or '.join(empty)} pairs ({reason})")
    for name, records in pairs_by_set.items():
        write_jsonl(targets[f"{name}.explicit"], (e for e, _ in records))
        write_jsonl(targets[f"{name}.implicit"], (i for _, i in records))
        print(f"{name}: {len(records)} pairs")
    for key, value in stats.items():
        print(f"{key}: {value}")
