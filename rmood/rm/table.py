"""The `rm_table` step: every reward model's checks side by side (CSV and Markdown)."""

from __future__ import annotations

from pathlib import Path

from rmood.io import atomic_open, read_json

COLUMNS = {
    "train_accuracy": ("train", "accuracy"),
    "test_accuracy": ("test", "accuracy"),
    "ood_accuracy": ("ood", "accuracy"),
    "test_margin_mean": ("test", "margin_mean"),
    "ood_margin_mean": ("ood", "margin_mean"),
    "train_pairs": ("train", "pairs"),
}


def rm_table(checks: list[str], csv: str, markdown: str) -> None:
    """One row per `rm/<name>/check.json`: accuracies (test and ood against gold), mean margins, training pairs."""
    import pandas as pd

    rows = []
    for path in checks:
        check = read_json(path)
        rows.append({"rm": Path(path).parent.name, **{col: check[a][b] for col, (a, b) in COLUMNS.items()}})
    table = pd.DataFrame(rows)
    with atomic_open(csv) as f:
        table.to_csv(f, index=False, float_format="%.4f")
    with atomic_open(markdown) as f:
        f.write(table.to_markdown(index=False, floatfmt=".3f") + "\n")
    print(table.to_string(index=False))
