"""rmood.data.alpacafarm on a tiny local copy in AlpacaFarm's exact layout (no download)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmood.data import alpacafarm
from rmood.data.alpacafarm import SPLIT_FILES, load_splits

EVAL_FILE = "alpaca_farm_evaluation.json"
SIZES = {"sft": 10, "preference": 10, "unlabeled": 10, "val": 10, "eval": 10, "ood": 10}
FIELDS = {"id", "split", "source", "instruction", "input", "messages", "output", "reference"}

SFT = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "1. Eat well."},
    {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
]
PREFERENCE = [
    {"instruction": "Summarise the text.", "input": "Cats sleep a lot.", "output_1": "Cats nap.",
     "output_2": "Dogs bark.", "preference": 1},
    {"instruction": "Write a haiku.", "input": "", "output_1": "a", "output_2": "b", "preference": 2},
]
UNLABELED = [{"instruction": "List two primes.", "input": ""}]
VAL = [{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}]
EVALUATION = [
    {"instruction": "What is the capital of France?", "input": "", "output": "Paris.",
     "generator": "text_davinci_003", "dataset": "helpful_base", "datasplit": "eval"},
    {"instruction": "Explain recursion.", "input": "", "output": "A function calling itself.",
     "generator": "text_davinci_003", "dataset": "koala", "datasplit": "eval"},
    {"instruction": "Fix the grammar.", "input": "he go home", "output": "He goes home.",
     "generator": "text_davinci_003", "dataset": "selfinstruct", "datasplit": "eval"},
    {"instruction": "Tell me a joke.", "input": "", "output": "Knock knock.",
     "generator": "text_davinci_003", "dataset": "koala", "datasplit": "eval"},
    {"instruction": "How do vaccines work?", "input": "", "output": "They train immunity.",
     "generator": "text_davinci_003", "dataset": "oasst", "datasplit": "eval"},
]


def _write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=4), encoding="utf-8")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A local AlpacaFarm copy: alpaca_instructions/*.json plus the evaluation file at the root."""
    for split, records in (("sft", SFT), ("preference", PREFERENCE), ("unlabeled", UNLABELED), ("val", VAL)):
        _write(tmp_path / SPLIT_FILES[split], records)
    _write(tmp_path / EVAL_FILE, EVALUATION)
    return tmp_path


def _load(
    root: Path, sizes: dict[str, int] = SIZES, ood: tuple[str, ...] = ("koala",), template: str = "plain"
) -> dict[str, list[dict]]:
    return load_splits(str(root), sizes, EVAL_FILE, list(ood), template)


def test_records_are_normalised(root: Path) -> None:
    splits = _load(root)
    assert set(splits) == {"sft", "preference", "unlabeled", "val", "eval", "ood"}
    assert [len(splits[s]) for s in ("sft", "preference", "unlabeled", "val")] == [3, 2, 1, 1]
    for split, records in splits.items():
        for i, record in enumerate(records):
            assert set(record) == FIELDS
            assert record["id"] == f"{split}-{i:06d}"
            assert record["split"] == split
            assert record["reference"] is None
    first = splits["sft"][0]
    assert first["source"] == "alpaca_farm"
    assert first["instruction"] == SFT[0]["instruction"] and first["input"] == ""
    assert first["output"] == "1. Eat well."
    assert first["messages"] == [{"role": "user", "content": SFT[0]["instruction"]}]
    assert splits["sft"][1]["messages"][0]["content"] == "Translate to French.\n\nGood morning"
    assert [r["output"] for r in splits["preference"]] == ["", ""]
    assert splits["unlabeled"][0]["output"] == "" and splits["val"][0]["output"] == "5"


def test_alpaca_template(root: Path) -> None:
    sft = _load(root, template="alpaca")["sft"]
    no_input, with_input = sft[0]["messages"][0]["content"], sft[1]["messages"][0]["content"]
    assert "### Instruction:\nGive three tips for staying healthy." in no_input
    assert "### Input:" not in no_input
    assert "### Instruction:\nTranslate to French.\n\n### Input:\nGood morning" in with_input
    assert "### Response:" not in with_input


def test_eval_and_ood_split_by_dataset(root: Path) -> None:
    splits = _load(root)
    assert [r["source"] for r in splits["eval"]] == ["helpful_base", "selfinstruct", "oasst"]
    assert [r["source"] for r in splits["ood"]] == ["koala", "koala"]
    assert [r["id"] for r in splits["ood"]] == ["ood-000000", "ood-000001"]
    assert splits["eval"][1]["input"] == "he go home" and splits["eval"][1]["output"] == "He goes home."
    two = _load(root, ood=("koala", "oasst"))
    assert [r["source"] for r in two["ood"]] == ["koala", "koala", "oasst"]


def test_truncation_keeps_file_order(root: Path) -> None:
    splits = _load(root, sizes={"sft": 2, "preference": 1, "unlabeled": 0, "val": 0, "eval": 2, "ood": 1})
    assert [r["instruction"] for r in splits["sft"]] == [SFT[0]["instruction"], SFT[1]["instruction"]]
    assert len(splits["preference"]) == 1
    assert splits["unlabeled"] == [] and splits["val"] == []
    assert [r["source"] for r in splits["eval"]] == ["helpful_base", "selfinstruct"]
    assert [r["instruction"] for r in splits["ood"]] == ["Explain recursion."]


def test_size_zero_does_not_read_the_file(root: Path) -> None:
    (root / SPLIT_FILES["unlabeled"]).unlink()
    assert _load(root, sizes={**SIZES, "unlabeled": 0})["unlabeled"] == []


def test_missing_file_names_the_path(root: Path) -> None:
    (root / SPLIT_FILES["val"]).unlink()
    with pytest.raises(FileNotFoundError, match="val.json"):
        _load(root)


def test_record_without_instruction(root: Path) -> None:
    _write(root / SPLIT_FILES["sft"], [SFT[0], {"input": "x", "output": "y"}])
    with pytest.raises(ValueError, match=r"sft\.json: record 1 has no `instruction`"):
        _load(root)


def test_eval_record_without_instruction_reports_its_file_index(root: Path) -> None:
    _write(root / EVAL_FILE, [*EVALUATION, {**EVALUATION[1], "instruction": ""}])
    with pytest.raises(ValueError, match=r"alpaca_farm_evaluation\.json: record 5 has no `instruction`"):
        _load(root)


@pytest.mark.parametrize(
    ("ood", "message"),
    [
        (("vicuna",), r"split 'ood' is empty.*vicuna"),
        (("helpful_base", "koala", "selfinstruct", "oasst"), r"split 'eval' is empty"),
    ],
)
def test_empty_eval_or_ood_split(root: Path, ood: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _load(root, ood=ood)


def test_empty_required_instruction_split(root: Path) -> None:
    _write(root / SPLIT_FILES["preference"], [])
    with pytest.raises(ValueError, match=r"split 'preference' is empty.*preference\.json"):
        _load(root)


def test_hf_root_is_joined_as_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_load_dataset(builder: str, data_files: str, split: str) -> None:
        calls.append((builder, data_files, split))
        raise FileNotFoundError(data_files)

    monkeypatch.setattr(alpacafarm.datasets, "load_dataset", fake_load_dataset)
    url = "hf://datasets/tatsu-lab/alpaca_farm/alpaca_instructions/sft.json"
    with pytest.raises(FileNotFoundError, match=url):
        load_splits("hf://datasets/tatsu-lab/alpaca_farm/", SIZES, EVAL_FILE, ["koala"])
    assert calls == [("json", url, "train")]


def test_unknown_template_and_bad_sizes(root: Path) -> None:
    with pytest.raises(ValueError, match="unknown prompt template"):
        _load(root, template="chatml")
    with pytest.raises(ValueError, match="sizes lacks split"):
        _load(root, sizes={"sft": 1})
