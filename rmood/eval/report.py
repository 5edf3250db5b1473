"""The `report` step: the study's summary and curves with their intervals, the Markdown report and its plots.

Inputs, per replicate (`rep<seed>/` in their paths): every RM's `rm/<rm>/check.json`, the best-of-n table
`bon/per_prompt.npz` (see `rmood.eval.bon`) and the table of each PPO run `ppo/<rm>/per_prompt.npz` (see
`rmood.eval.ppo_curve`). `rmood.eval.estimates` turns them into `reports/summary.csv` (one row per RM, pooled and
per replicate; every estimate `x` with `x_lo`, `x_hi`) and `reports/curves.csv` (one row per RM and best-of-n
n or PPO checkpoint); `rmood.eval.markdown` writes `reports/mrm_eval.md` from those tables alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rmood.eval import PLOTS
from rmood.eval.bon import BON_ARRAYS
from rmood.eval.estimates import CURVE_COLUMNS, POOLED, SUMMARY_COLUMNS, Replicate, Settings, estimate_study
from rmood.eval.ppo_curve import PPO_ARRAYS
from rmood.io import DataError, atomic_open, read_json, read_npz

REPLICATE_DIR = re.compile(r"rep(\d+)")


def replicate_of(path: str) -> int:
    """The seed of the `rep<seed>` folder a per-replicate file lies in."""
    seeds = [int(m.group(1)) for part in Path(path).parts if (m := REPLICATE_DIR.fullmatch(part))]
    if len(seeds) != 1:
        raise DataError(f"{path}: expected to lie in exactly one rep<seed> folder")
    return seeds[0]


def plots_by_stem(plots: list[str]) -> dict[str, str]:
    """Map each expected plot name to its path; refuse unknown, duplicate or missing names."""
    paths: dict[str, str] = {}
    for path in plots:
        stem = Path(path).stem
        if stem not in PLOTS or stem in paths or Path(path).suffix != ".png":
            raise DataError(
                f"unexpected or duplicate plot {path}: expected one each of {', '.join(p + '.png' for p in PLOTS)}"
            )
        paths[stem] = path
    missing = [p for p in PLOTS if p not in paths]
    if missing:
        raise DataError(f"plots missing from the outputs: {', '.join(missing)}")
    return paths


def read_counts(path: str) -> dict[str, tuple[int, int]]:
    """{"id": (k, n), "ood": (k, n)} of a check.json: pairs ranked as gold ranks them, of held-out pairs."""
    check = read_json(path)
    counts = {}
    for prefix, block in (("id", "test"), ("ood", "ood")):
        stats = check.get(block) if isinstance(check, dict) else None
        if not isinstance(stats, dict) or not isinstance(stats.get("n"), int) or stats["n"] < 1:
            raise DataError(f"{path}: expected a '{block}' block with a positive pair count n")
        counts[prefix] = (round(stats["accuracy"] * stats["n"]), stats["n"])
    return counts


def read_replicates(checks: list[str], bon: list[str], ppo: list[str], reward_models: list[str]) -> list[Replicate]:
    """The per-replicate inputs, grouped by the seed in their paths (in seed order)."""
    tables = {}
    for path in bon:
        seed = replicate_of(path)
        if seed in tables:
            raise DataError(f"two best-of-n tables for replicate {seed}: {tables[seed]['path']} and {path}")
        tables[seed] = {**read_npz(path, BON_ARRAYS, "best-of-n table"), "path": path}
    replicates = {seed: Replicate(seed, {}, table) for seed, table in sorted(tables.items())}
    for path in checks:
        rep = replicates.get(replicate_of(path))
        rm = Path(path).parent.name
        if rep is None or rm not in reward_models or rm in rep.accuracy:
            raise DataError(f"{path}: unexpected (no best-of-n table of its replicate, an unknown RM, or a repeat)")
        rep.accuracy[rm] = read_counts(path)
    for path in ppo:
        rep = replicates.get(replicate_of(path))
        run = read_npz(path, PPO_ARRAYS, "PPO table")
        rm = str(run["rm"])
        if rep is None or rm not in reward_models or rm in rep.ppo:
            raise DataError(f"{path}: unexpected (no best-of-n table of its replicate, an unknown RM, or a repeat)")
        rep.ppo[rm] = run
    for rep in replicates.values():
        missing = [rm for rm in reward_models if rm not in rep.accuracy]
        if missing:
            raise DataError(f"replicate {rep.seed}: no check.json of {', '.join(missing)}")
    if not replicates:
        raise DataError("no best-of-n table: nothing to report")
    return list(replicates.values())


def make_report(
    checks: list[str],
    bon: list[str],
    ppo: list[str],
    figures: list[str],
    summary: str,
    curves: str,
    markdown: str,
    plots: list[str],
    reward_models: list[str],
    report: dict[str, Any],
    seed: int,
) -> None:
    """Write `reports/summary.csv`, `reports/curves.csv`, `reports/mrm_eval.md` and the plots; `figures` (PNGs made
    elsewhere, e.g. the distribution analysis) are linked from the Markdown."""
    import pandas as pd

    from rmood.eval.markdown import markdown_report
    from rmood.eval.plots import draw_plots

    if not reward_models:
        raise DataError("reward_models is empty")
    plot_paths = plots_by_stem(plots)
    replicates = read_replicates(checks, bon, ppo, reward_models)
    settings = Settings(reward_models, report["baseline"], report["bootstrap"], report["level"], seed)
    rows, points = estimate_study(replicates, settings)
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    curve_table = pd.DataFrame(points, columns=CURVE_COLUMNS)
    for frame, path in ((table, summary), (curve_table, curves)):
        with atomic_open(path) as f:
            frame.to_csv(f, index=False)  # full precision: the README block rendered from it matches mrm_eval.md
    draw_plots(plot_paths, table[table["replicate"] == POOLED], curve_table[curve_table["replicate"] == POOLED],
               settings)
    run = {"replicates": [rep.seed for rep in replicates], "prompts": len(replicates[0].bon["prompts"]),
           "resamples": settings.resamples, "level": settings.level, "baseline": settings.baseline}
    with atomic_open(markdown) as f:
        f.write(markdown_report(table, curve_table, run, plot_paths, markdown, figures) + "\n")
    pooled = table[table["replicate"] == POOLED]
    print(pooled[["rm", "id_accuracy", "bon_gold_at_N", "bon_peak_n", "bon_drop", "bon_drop_lo", "ppo_final_gold",
                  "ppo_drop", "ppo_drop_lo"]].to_string(index=False))
