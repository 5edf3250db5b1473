"""Gold labels and preference pairs: splits, label semantics (gold vs biased annotator), formats."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from rmood.io import DataError, read_jsonl, write_jsonl
from rmood.data.prompts import conversation
from rmood.labeling.gold import label_gold
from rmood.labeling.pairs import make_pairs

OUT_NAMES = [f"{name}.{fmt}.jsonl" for name in ("train", "test", "ood", "golden") for fmt in ("explicit", "implicit")]

# Prompts whose responses offer no usable pair, and one whose only usable pair is fixed.
ALL_SAME = "pref-all-same"  # every response identical
ALL_TIE = "pref-all-tie"  # distinct responses, equal gold
FORCED = "pref-forced"  # "same"/0.1, "same"/0.9, "other"/0.1: only ("same"/0.9, "other"/0.1) is usable
OOD_FORCED = "ood-forced"
EQUAL_LENGTH = "pref-equal-length-"  # two responses of the same length, the first one better


def prompt(pid: str) -> dict:
    return {"id": pid, "messages": [{"role": "user", "content": f"question {pid}"}], "reference": f"answer {pid}"}


def build_inputs(folder: Path, n_pref: int = 40, n_ood: int = 8, samples: int = 4) -> dict[str, str]:
    """samples.jsonl, gold.jsonl, preference.jsonl, ood.jsonl with random lengths and golds."""
    rng = random.Random(1234)
    preference = [prompt(f"pref-{i}") for i in range(n_pref)] + [prompt(p) for p in (ALL_SAME, ALL_TIE, FORCED)]
    preference += [prompt(f"{EQUAL_LENGTH}{i}") for i in range(8)]
    ood = [prompt(f"ood-{i}") for i in range(n_ood)] + [prompt(OOD_FORCED), prompt("ood-no-samples")]
    sample_records, gold_records = [], []

    def add(pid: str, k: int, response: str, gold: float) -> None:
        sample_records.append({"prompt_id": pid, "sample": k, "response": response, "finished": True})
        gold_records.append({"prompt_id": pid, "sample": k, "gold": gold})

    for p in preference + ood:
        pid = p["id"]
        if pid == "ood-no-samples":
            continue
        for k in range(samples):
            if pid == ALL_SAME:
                add(pid, k, "identical", rng.random())
            elif pid == ALL_TIE:
                add(pid, k, f"tie {k}" + "!" * k, 0.5)
            elif pid.startswith(EQUAL_LENGTH):
                if k < 2:
                    add(pid, k, ["good", "bad!"][k], [0.8, 0.2][k])
            elif pid in (FORCED, OOD_FORCED):
                if k < 3:
                    add(pid, k, ["same", "same", "other"][k], [0.1, 0.9, 0.1][k])
            else:
                # lengths and golds independent, so the longer response is often the worse one
                add(pid, k, f"{pid}/{k} " + "x" * rng.randrange(0, 30), round(rng.random(), 3))
    paths = {
        "samples": folder / "samples.jsonl",
        "gold_labels": folder / "gold.jsonl",
        "preference": folder / "preference.jsonl",
        "ood": folder / "ood.jsonl",
    }
    rng.shuffle(sample_records)  # file order must not matter
    write_jsonl(paths["samples"], sample_records)
    write_jsonl(paths["gold_labels"], gold_records)
    write_jsonl(paths["preference"], preference)
    write_jsonl(paths["ood"], ood)
    return {k: str(v) for k, v in paths.items()}


def run_pairs(
    folder: Path,
    inputs: dict[str, str],
    seed: int = 0,
    test_fraction: float = 0.25,
    length_bias: float = 0.0,
    flip: float = 0.0,
    replicate: int = 0,
) -> dict[str, list[dict]]:
    out_dir = folder / f"pairs-{seed}-{replicate}-{length_bias}-{flip}-{test_fraction}"
    out = [str(out_dir / name) for name in OUT_NAMES]
    make_pairs(
        **inputs,
        out=out,
        seed=seed,
        replicate=replicate,
        pairs={"test_fraction": test_fraction, "per_prompt": 1},
        annotator={"source": "simulated", "length_bias": length_bias, "flip": flip},
        judge={},
    )
    return {Path(path).name.removesuffix(".jsonl"): read_jsonl(path) for path in out}


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, str]:
    return build_inputs(tmp_path)


def ids(records: list[dict]) -> list[str]:
    return [r["id"] for r in records]


# --- make_pairs ---------------------------------------------------------------------------------


def test_splits_are_disjoint_and_each_prompt_has_one_pair(tmp_path: Path, inputs: dict[str, str]) -> None:
    result = run_pairs(tmp_path, inputs)
    train, test, ood = (ids(result[f"{name}.explicit"]) for name in ("train", "test", "ood"))
    for name_ids in (train, test, ood):
        assert len(name_ids) == len(set(name_ids))  # one pair per prompt
    assert not set(train) & set(test)
    preference_ids = set(ids(read_jsonl(inputs["preference"])))
    ood_ids = set(ids(read_jsonl(inputs["ood"])))
    assert set(train) | set(test) == preference_ids - {ALL_SAME, ALL_TIE}
    assert set(ood) == ood_ids - {"ood-no-samples"}
    # the test share is round(n_prompts × fraction) of all preference prompts (unusable ones included)
    n_test = round(len(preference_ids) * 0.25)
    assert n_test - 2 <= len(test) <= n_test  # the two unusable prompts may have been drawn for test
    assert train and test


def test_replicates_share_the_pairs_and_differ_in_the_annotator_labels(tmp_path: Path, inputs: dict[str, str]) -> None:
    one, two = (run_pairs(tmp_path, inputs, length_bias=0.3, flip=0.3, replicate=r) for r in (0, 1))
    for name in ("test", "ood", "golden"):
        assert one[f"{name}.explicit"] == two[f"{name}.explicit"]  # gold-labelled: the same in every replicate
    unordered = [[(p["id"], {p["chosen"], p["rejected"]}) for p in r["train.explicit"]] for r in (one, two)]
    assert unordered[0] == unordered[1]  # the same pairs ...
    assert [p["chosen"] for p in one["train.explicit"]] != [p["chosen"] for p in two["train.explicit"]]  # ... labels


def test_several_pairs_per_prompt_share_no_response(tmp_path: Path) -> None:
    inputs = build_inputs(tmp_path, samples=7)
    out = [str(tmp_path / "pairs" / name) for name in OUT_NAMES]
    make_pairs(**inputs, out=out, seed=0, replicate=0, pairs={"test_fraction": 0.25, "per_prompt": 3},
               annotator={"source": "simulated", "length_bias": 0.0, "flip": 0.0}, judge={})
    result = {Path(path).name.removesuffix(".jsonl"): read_jsonl(path) for path in out}
    single = run_pairs(tmp_path, inputs)  # one pair per prompt
    for name in ("train", "test", "ood"):
        by_prompt: dict[str, list[dict]] = {}
        for r in result[f"{name}.explicit"]:
            by_prompt.setdefault(r["id"], []).append(r)
        assert by_prompt.keys() == set(ids(single[f"{name}.explicit"]))  # the same prompts have pairs
        regular = {pid: records for pid, records in by_prompt.items() if pid.startswith(("pref-", "ood-"))
                   and pid[5:].isdigit() or pid[4:].isdigit()}
        assert regular and all(len(records) == 3 for records in regular.values())  # 7 distinct responses: 3 pairs
        for records in regular.values():
            texts = [text for r in records for text in (r["chosen"], r["rejected"])]
            assert len(set(texts)) == len(texts)  # the pairs of a prompt share no response
    forced = [r for r in result["train.explicit"] + result["test.explicit"] if r["id"] == FORCED]
    assert len(forced) == 1  # only one usable pair
    assert len(result["golden.explicit"]) == len(result["train.explicit"])
    assert all(r["chosen_gold"] > r["rejected_gold"] for r in result["train.explicit"])  # unbiased annotator


def test_test_fraction_zero_fails_for_lack_of_test_pairs(tmp_path: Path, inputs: dict[str, str]) -> None:
    with pytest.raises(DataError, match="no usable test pairs"):
        run_pairs(tmp_path, inputs, test_fraction=0.0)


def test_test_and_ood_labels_follow_gold(tmp_path: Path, inputs: dict[str, str]) -> None:
    result = run_pairs(tmp_path, inputs, length_bias=1.0, flip=1.0)  # the annotator must not touch them
    for name in ("test", "ood"):
        assert result[f"{name}.explicit"]
        for r in result[f"{name}.explicit"]:
            assert r["chosen_gold"] > r["rejected_gold"]
            assert r["labels"] == "gold"
    assert {r["labels"] for r in result["train.explicit"]} == {"annotator"}


def test_identical_responses_and_gold_ties_are_never_paired(tmp_path: Path, inputs: dict[str, str]) -> None:
    result = run_pairs(tmp_path, inputs, length_bias=0.5, flip=0.5)
    every = [r for name in ("train", "test", "ood") for r in result[f"{name}.explicit"]]
    assert len(every) > 10
    for r in every:
        assert r["chosen"] != r["rejected"]
        assert r["chosen_gold"] != r["rejected_gold"]
    forced = {r["id"]: r for r in every if r["id"] in (FORCED, OOD_FORCED)}
    assert set(forced) == {FORCED, OOD_FORCED}
    for r in forced.values():
        assert {(r["chosen"], r["chosen_gold"]), (r["rejected"], r["rejected_gold"])} == {("same", 0.9), ("other", 0.1)}
    assert forced[OOD_FORCED]["chosen"] == "same" and forced[OOD_FORCED]["chosen_gold"] == 0.9


def test_pair_scores_match_the_gold_file(tmp_path: Path, inputs: dict[str, str]) -> None:
    gold = {}
    samples = {(r["prompt_id"], r["sample"]): r["response"] for r in read_jsonl(inputs["samples"])}
    for g in read_jsonl(inputs["gold_labels"]):
        gold.setdefault(g["prompt_id"], {})[samples[(g["prompt_id"], g["sample"])]] = g["gold"]
    result = run_pairs(tmp_path, inputs, length_bias=0.5, flip=0.5)
    for name in ("train", "test", "ood"):
        for r in result[f"{name}.explicit"]:
            if r["id"] in (FORCED, OOD_FORCED):
                continue  # "same" has two golds there by construction
            assert gold[r["id"]][r["chosen"]] == r["chosen_gold"]
            assert gold[r["id"]][r["rejected"]] == r["rejected_gold"]


def test_unbiased_annotator_agrees_with_gold(tmp_path: Path, inputs: dict[str, str]) -> None:
    train = run_pairs(tmp_path, inputs, length_bias=0.0, flip=0.0)["train.explicit"]
    assert len(train) > 10
    assert all(r["chosen_gold"] > r["rejected_gold"] for r in train)


def test_full_length_bias_prefers_the_longer_response(tmp_path: Path, inputs: dict[str, str]) -> None:
    train = run_pairs(tmp_path, inputs, length_bias=1.0, flip=0.0)["train.explicit"]
    differing = [r for r in train if len(r["chosen"]) != len(r["rejected"])]
    assert len(differing) > 10
    assert all(len(r["chosen"]) > len(r["rejected"]) for r in differing)
    assert any(r["chosen_gold"] < r["rejected_gold"] for r in differing)  # the bias really overrides gold
    equal = [r for r in train if len(r["chosen"]) == len(r["rejected"])]
    assert any(r["id"].startswith(EQUAL_LENGTH) for r in equal)
    assert all(r["chosen_gold"] > r["rejected_gold"] for r in equal)  # equal lengths fall back to gold


def test_always_flipping_annotator_disagrees_with_gold(tmp_path: Path, inputs: dict[str, str]) -> None:
    train = run_pairs(tmp_path, inputs, length_bias=0.0, flip=1.0)["train.explicit"]
    assert len(train) > 10
    assert all(r["chosen_gold"] < r["rejected_gold"] for r in train)


def test_implicit_records_are_conversations(tmp_path: Path, inputs: dict[str, str]) -> None:
    result = run_pairs(tmp_path, inputs, length_bias=0.5, flip=0.5)
    prompts = {p["id"]: p for path in (inputs["preference"], inputs["ood"]) for p in read_jsonl(path)}
    for name in ("train", "test", "ood"):
        explicit, implicit = result[f"{name}.explicit"], result[f"{name}.implicit"]
        assert ids(explicit) == ids(implicit)
        for e, i in zip(explicit, implicit):
            messages = prompts[e["id"]]["messages"]
            assert e["prompt"] == messages
            assert i["chosen"] == [*messages, {"role": "assistant", "content": e["chosen"]}]
            assert i["rejected"] == [*messages, {"role": "assistant", "content": e["rejected"]}]
            assert set(i) == {"id", "chosen", "rejected"}


def test_conversation_does_not_modify_the_prompt() -> None:
    p = prompt("a")
    before = list(p["messages"])
    assert conversation(p, "hi")[-1] == {"role": "assistant", "content": "hi"}
    assert p["messages"] == before


def test_deterministic_for_a_seed(tmp_path: Path, inputs: dict[str, str]) -> None:
    first = run_pairs(tmp_path / "a", inputs, seed=7, length_bias=0.3, flip=0.2)
    again = run_pairs(tmp_path / "b", inputs, seed=7, length_bias=0.3, flip=0.2)
    other = run_pairs(tmp_path / "c", inputs, seed=8, length_bias=0.3, flip=0.2)
    assert first == again
    assert first != other


def test_deterministic_output_bytes(tmp_path: Path, inputs: dict[str, str]) -> None:
    run_pairs(tmp_path / "a", inputs, seed=3)
    run_pairs(tmp_path / "b", inputs, seed=3)
    for name in OUT_NAMES:
        a = next((tmp_path / "a").rglob(name)).read_bytes()
        b = next((tmp_path / "b").rglob(name)).read_bytes()
        assert a == b, name


@pytest.mark.parametrize(
    "names",
    [
        OUT_NAMES[:-1],  # one missing
        [*OUT_NAMES[:-1], "ood.other.jsonl"],  # one misnamed
        [*OUT_NAMES, "extra.explicit.jsonl"],  # one too many
    ],
)
def test_wrong_output_names_raise(tmp_path: Path, inputs: dict[str, str], names: list[str]) -> None:
    with pytest.raises(ValueError, match="expected the outputs"):
        make_pairs(
            **inputs,
            out=[str(tmp_path / "out" / n) for n in names],
            seed=0,
            replicate=0,
            pairs={"test_fraction": 0.25, "per_prompt": 1},
            annotator={"source": "simulated", "length_bias": 0.0, "flip": 0.0},
            judge={},
        )
    assert not (tmp_path / "out").exists()  # nothing written


def test_sample_without_gold_label_is_a_data_error(tmp_path: Path, inputs: dict[str, str]) -> None:
    gold = read_jsonl(inputs["gold_labels"])
    write_jsonl(inputs["gold_labels"], gold[1:])
    with pytest.raises(DataError, match=str(inputs["gold_labels"])):
        run_pairs(tmp_path, inputs)


# --- label_gold (programmatic) ------------------------------------------------------------------


def write_samples(path: Path, records: list[tuple[str, int, str, bool]]) -> str:
    write_jsonl(path, [{"prompt_id": p, "sample": k, "response": r, "finished": f} for p, k, r, f in records])
    return str(path)


def test_label_gold_programmatic(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [prompt("p1")])
    write_jsonl(tmp_path / "b.jsonl", [prompt("p2")])
    samples = write_samples(
        tmp_path / "samples.jsonl",
        [
            ("p1", 0, "answer p1", True),  # the reference
            ("p1", 1, "answer p1 and much more text that pads the answer", True),
            ("p2", 0, "  answer p2\n", True),  # the reference, with whitespace
            ("p2", 1, "answer p2", False),  # the reference, unfinished
            ("p2", 2, "wrong", True),
        ],
    )
    out = tmp_path / "gold.jsonl"
    label_gold(samples, [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")], str(out),
               gold={"source": "programmatic", "batch_size": 4}, judge={}, dtype="float32")
    records = read_jsonl(out)
    assert [(r["prompt_id"], r["sample"]) for r in records] == [("p1", 0), ("p1", 1), ("p2", 0), ("p2", 1), ("p2", 2)]
    assert all(set(r) == {"prompt_id", "sample", "gold"} and isinstance(r["gold"], float) for r in records)
    scores = [r["gold"] for r in records]
    assert scores[0] == 1.0 and scores[2] == 1.0
    assert scores[3] == 0.5
    assert 0.0 <= scores[1] < 1.0 and 0.0 <= scores[4] < 1.0


def test_label_gold_unknown_prompt_id(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "prompts.jsonl", [prompt("p1")])
    samples = write_samples(tmp_path / "samples.jsonl", [("p1", 0, "x", True), ("ghost", 0, "y", True)])
    with pytest.raises(DataError, match="ghost"):
        label_gold(samples, [str(tmp_path / "prompts.jsonl")], str(tmp_path / "gold.jsonl"),
                   gold={"source": "programmatic", "batch_size": 4}, judge={}, dtype="float32")
    assert not (tmp_path / "gold.jsonl").exists()


def test_label_gold_needs_a_reference(tmp_path: Path) -> None:
    no_reference = {"id": "p1", "messages": [{"role": "user", "content": "q"}]}
    write_jsonl(tmp_path / "prompts.jsonl", [no_reference])
    samples = write_samples(tmp_path / "samples.jsonl", [("p1", 0, "x", True)])
    with pytest.raises(DataError, match="p1 has no reference"):
        label_gold(samples, [str(tmp_path / "prompts.jsonl")], str(tmp_path / "gold.jsonl"),
                   gold={"source": "programmatic", "batch_size": 4}, judge={}, dtype="float32")
    assert not (tmp_path / "gold.jsonl").exists()


def test_label_gold_requires_sample_fields(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "prompts.jsonl", [prompt("p1")])
    write_jsonl(tmp_path / "samples.jsonl", [{"prompt_id": "p1", "sample": 0, "response": "x"}])
    with pytest.raises(DataError, match=r"samples\.jsonl:1: missing field\(s\) finished"):
        label_gold(str(tmp_path / "samples.jsonl"), [str(tmp_path / "prompts.jsonl")], str(tmp_path / "gold.jsonl"),
                   gold={"source": "programmatic", "batch_size": 4}, judge={}, dtype="float32")


def test_golden_pairs_are_the_train_pairs_labelled_by_gold(tmp_path: Path, inputs: dict[str, str]) -> None:
    result = run_pairs(tmp_path, inputs, length_bias=1.0, flip=0.5)
    train, golden = result["train.explicit"], result["golden.explicit"]
    assert [r["id"] for r in golden] == [r["id"] for r in train]
    for t, g in zip(train, golden):
        assert {t["chosen"], t["rejected"]} == {g["chosen"], g["rejected"]}
        assert g["chosen_gold"] > g["rejected_gold"] and g["labels"] == "gold"
