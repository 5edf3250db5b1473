"""The `data` step: write the normalised splits `data/<split>.jsonl` from the configured source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rmood.data import SPLITS
from rmood.io import write_jsonl


def prepare_data(out: list[str], seed: int, data: dict[str, Any]) -> None:
    """Generate (synthetic) or read (AlpacaFarm) every split; `out` holds one `<split>.jsonl` per split."""
    targets = {Path(path).name.removesuffix(".jsonl"): path for path in out}
    if sorted(targets) != sorted(SPLITS):
        raise ValueError(f"data: expected one output per split {SPLITS}, got {sorted(targets)}")
    if data["source"] == "synthetic":
        from rmood.data.synthetic import generate_splits

        splits = generate_splits(seed, data["sizes"], prompt_template=data["prompt_template"], **data["synthetic"])
    else:
        from rmood.data.alpacafarm import load_splits

        splits = load_splits(data["root"], data["sizes"], prompt_template=data["prompt_template"], **data["alpacafarm"])
    for split in SPLITS:
        n = write_jsonl(targets[split], splits[split])
        print(f"{split}: {n} records")
