"""AlpacaFarm (tatsu-lab/alpaca_farm) read into the project's normalised prompt records.

The instruction splits come from `alpaca_instructions/*.json`; the evaluation file is split by its
`dataset` field into in-distribution `eval` and out-of-distribution `ood` prompts. Every file is read
with `datasets.load_dataset("json", ...)`, so `root` may be a local folder or an `hf://` URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import datasets

from rmood.data import SPLITS
from rmood.data.prompts import TEMPLATES, to_messages
from rmood.io import DataError

SPLIT_FILES = {
    "sft": "alpaca_instructions/sft.json",
    "preference": "alpaca_instructions/preference.json",
    "unlabeled": "alpaca_instructions/unlabeled.json",
    "val": "alpaca_instructions/val.json",
}
SOURCE = "alpaca_farm"


def load_splits(
    root: str,
    sizes: dict[str, int],
    eval_file: str,
    ood_sources: list[str],
    prompt_template: str = "plain",
) -> dict[str, list[dict]]:
    """Read AlpacaFarm's splits, each truncated to `sizes[split]` records in file order.

    Returns normalised records for sft, preference, unlabeled, val, eval (evaluation prompts whose
    `dataset` is not in `ood_sources`) and ood (those whose `dataset` is). A file is read only when
    a split that needs it has a positive size; an empty file, or an empty eval/ood split that was
    asked for, is an error.
    """
    missing = [split for split in SPLITS if split not in sizes]
    if missing:
        raise ValueError(f"sizes lacks split(s) {', '.join(missing)}")
    negative = [split for split in SPLITS if sizes[split] < 0]
    if negative:
        raise ValueError(f"sizes must be >= 0; got a negative size for {', '.join(negative)}")
    if prompt_template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {prompt_template!r}; expected one of {TEMPLATES}")

    splits: dict[str, list[dict]] = {}
    for split, file in SPLIT_FILES.items():
        path = _path(root, file)
        rows: list[tuple[int, dict[str, Any]]] = []
        if sizes[split] > 0:
            dataset = _read(path, split)
            rows = list(enumerate(dataset.select(range(min(sizes[split], len(dataset))))))
        splits[split] = _normalise(split, rows, prompt_template, path)

    ood = sorted(set(ood_sources))
    eval_path = _path(root, eval_file)
    eval_rows = list(enumerate(_read(eval_path, "eval"))) if sizes["eval"] > 0 or sizes["ood"] > 0 else []
    for index, row in eval_rows:
        if not isinstance(row.get("dataset"), str):
            raise DataError(f"{eval_path}: record {index} has no `dataset` field")
    for split, is_ood in (("eval", False), ("ood", True)):
        picked = [(index, row) for index, row in eval_rows if (row["dataset"] in ood) == is_ood]
        splits[split] = _normalise(split, picked[: sizes[split]], prompt_template, eval_path)

    why_empty = {
        "eval": f"every record of {eval_path} has a `dataset` in ood_sources {ood}",
        "ood": f"no record of {eval_path} has a `dataset` in ood_sources {ood}",
    }
    for split, why in why_empty.items():
        if sizes[split] > 0 and not splits[split]:
            raise DataError(f"split {split!r} is empty ({sizes[split]} requested): {why}")
    return splits


def _path(root: str, file: str) -> str:
    """`file` under `root`: a URL is joined with '/', a local folder with the OS separator."""
    return f"{root.rstrip('/')}/{file}" if "://" in root else os.path.join(root, file)


def _read(path: str, split: str) -> datasets.Dataset:
    """One AlpacaFarm JSON file (a JSON array of records), in file order."""
    try:
        return datasets.load_dataset("json", data_files=path, split="train")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"AlpacaFarm {split} file not found: {path} ({err})") from None
    except ValueError as err:  # e.g. an empty JSON array: 'Instruction "train" corresponds to no data!'
        raise DataError(f"split {split!r} is empty: {path} holds no readable records ({err})") from None


def _normalise(
    split: str, rows: Iterable[tuple[int, dict[str, Any]]], prompt_template: str, path: str
) -> list[dict]:
    """Normalised records from (index in file, raw record) pairs; the index goes into error messages."""
    records = []
    for i, (index, row) in enumerate(rows):
        instruction = row.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise DataError(f"{path}: record {index} has no `instruction`")
        input_ = row.get("input") or ""
        records.append(
            {
                "id": f"{split}-{i:06d}",
                "split": split,
                "source": row["dataset"] if split in ("eval", "ood") else SOURCE,
                "instruction": instruction,
                "input": input_,
                "messages": to_messages(instruction, input_, prompt_template),
                "output": row.get("output") or "",
                "reference": None,
            }
        )
    return records
