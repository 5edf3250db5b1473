"""Synthetic data: correct references, split sizes and families, determinism, no train/held-out leakage."""

from __future__ import annotations

import random
import re

import pytest

from rmood.data.prompts import to_messages
from rmood.data.synthetic import FAMILIES, SPLITS, generate_splits, make_task, verbose

SIZES = {"sft": 200, "preference": 150, "unlabeled": 20, "val": 30, "eval": 60, "ood": 40}
OOD = ["format_list", "repeat"]


def generate(**overrides) -> dict[str, list[dict]]:
    kwargs = dict(
        seed=0,
        sizes=SIZES,
        families=list(FAMILIES),
        ood_families=OOD,
        min_items=3,
        max_items=7,
        verbose_fraction=0.3,
    )
    kwargs.update(overrides)
    return generate_splits(**kwargs)


def numbers(text: str) -> list[int]:
    return [int(x) for x in text.split(", ")]


def balanced(text: str) -> bool:
    stack = []
    for char in text:
        if char in "([":
            stack.append(char)
        elif not stack or {")": "(", "]": "["}[char] != stack.pop():
            return False
    return not stack


def fields(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines())


def expected_answer(family: str, text: str) -> str:
    """Solve a task from its input alone, independently of the generator."""
    if family == "reverse":
        return "".join(reversed(text))
    if family == "sort":
        return ", ".join(map(str, sorted(numbers(text))))
    if family == "uppercase":
        return text.upper()
    if family == "add":
        a, b = text.split(" + ")
        return str(int(a) + int(b))
    if family == "count":
        f = fields(text)
        return str(sum(char == f["letter"] for char in f["text"]))
    if family == "max":
        return str(max(numbers(text)))
    if family == "unique":
        seen: list[int] = []
        for n in numbers(text):
            if n not in seen:
                seen.append(n)
        return ", ".join(map(str, seen))
    if family == "brackets":
        return "yes" if balanced(text) else "no"
    if family == "format_list":
        return "\n".join("- " + item for item in text.split(", "))
    if family == "repeat":
        f = fields(text)
        return " ".join([f["word"]] * int(f["times"]))
    raise AssertionError(f"no checker for {family}")


@pytest.mark.parametrize("family", FAMILIES)
def test_make_task_reference_is_correct(family: str) -> None:
    rng = random.Random(family)
    tasks = [make_task(family, rng, 1, 8) for _ in range(200)]
    for task in tasks:
        assert task["task"] == family
        assert task["reference"] == expected_answer(family, task["input"])
        assert len(task["reference"]) < 60
    assert len({task["instruction"] for task in tasks}) >= 2  # several phrasings
    if family == "brackets":
        assert {task["reference"] for task in tasks} == {"yes", "no"}


def test_all_family_names_exist() -> None:
    assert set(FAMILIES) == {
        "reverse", "sort", "uppercase", "add", "count", "max", "unique", "brackets", "format_list", "repeat"
    }


def test_make_task_size_follows_items() -> None:
    rng = random.Random(0)
    for _ in range(50):
        assert len(make_task("reverse", rng, 4, 4)["input"]) == 4
        assert len(numbers(make_task("sort", rng, 2, 5)["input"])) in range(2, 6)


@pytest.mark.parametrize("answer", ["7", "hgfe", "- bad\n- egg", ""])
def test_verbose_pads_the_answer(answer: str) -> None:
    rng = random.Random(0)
    variants = {verbose(answer, rng) for _ in range(50)}
    for v in variants:
        assert answer in v and v != answer
        assert v.startswith("The answer is: ") or v.endswith(" ok ok")
    assert len(variants) >= 2


def test_splits_have_requested_sizes_and_fields() -> None:
    splits = generate()
    assert tuple(splits) == SPLITS
    for split, records in splits.items():
        assert len(records) == SIZES[split]
        for i, record in enumerate(records):
            assert record["id"] == f"{split}-{i:06d}"
            assert record["split"] == split
            assert record["messages"] == to_messages(record["instruction"], record["input"], "plain")
            assert record["reference"] == expected_answer(record["source"], record["input"])
            if split != "sft":
                assert record["output"] == record["reference"]
    ids = [r["id"] for records in splits.values() for r in records]
    assert len(ids) == len(set(ids))


def test_zero_size_gives_empty_split() -> None:
    assert generate(sizes={**SIZES, "unlabeled": 0, "val": 0})["val"] == []


def test_alpaca_template_is_used() -> None:
    record = generate(prompt_template="alpaca")["eval"][0]
    assert record["messages"] == to_messages(record["instruction"], record["input"], "alpaca")
    assert "### Instruction:" in record["messages"][0]["content"]


def test_ood_families_only_in_ood() -> None:
    splits = generate()
    for split, records in splits.items():
        sources = {r["source"] for r in records}
        if split == "ood":
            assert sources == set(OOD)
        else:
            assert sources == set(FAMILIES) - set(OOD)


def test_deterministic_and_seed_dependent() -> None:
    assert generate() == generate()
    assert generate(seed=1)["sft"] != generate()["sft"]


def test_split_streams_are_independent() -> None:
    base = generate()
    changed = generate(sizes={**SIZES, "eval": 7})
    for split in SPLITS:
        if split != "eval":
            assert changed[split] == base[split]
    assert changed["eval"] == base["eval"][:7]


def test_held_out_prompts_not_in_training_splits() -> None:
    # a small task space (sizes 1-2) makes collisions common, so the dedupe is exercised
    splits = generate(min_items=1, max_items=2)
    train = {(r["instruction"], r["input"]) for s in ("sft", "preference") for r in splits[s]}
    for split in ("val", "eval", "ood"):
        assert not train & {(r["instruction"], r["input"]) for r in splits[split]}


def test_verbose_fraction_of_sft_outputs() -> None:
    sft = generate(sizes={**SIZES, "sft": 1000}, verbose_fraction=0.3)["sft"]
    changed = [r for r in sft if r["output"] != r["reference"]]
    assert abs(len(changed) / len(sft) - 0.3) < 0.05
    assert all(r["reference"] in r["output"] for r in changed)
    assert all(r["output"] == r["reference"] for r in generate(verbose_fraction=0.0)["sft"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"families": ["reverse", "sort", "nope"], "ood_families": []}, "unknown task families"),
        ({"families": ["reverse", "sort"], "ood_families": ["max"]}, "not in families"),
        ({"families": ["reverse", "sort"], "ood_families": ["sort"]}, "at least 2 training families"),
        ({"min_items": 5, "max_items": 3}, "min_items"),
        ({"sizes": {**SIZES, "eval": -1}}, ">= 0"),
        ({"sizes": {k: v for k, v in SIZES.items() if k != "val"}}, "missing ['val']"),
        ({"verbose_fraction": 1.5}, "verbose_fraction"),
        ({"prompt_template": "fancy"}, "prompt template"),
    ],
)
def test_invalid_arguments_raise(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        generate(**overrides)


def test_make_task_rejects_unknown_family() -> None:
    with pytest.raises(ValueError, match="unknown task family 'nope'"):
        make_task("nope", random.Random(0), 1, 3)
