"""The Markdown of the `mrm_eval` report, written from `reports/summary.csv` and `reports/curves.csv` alone.

Every number is printed with its interval, and a sentence states a difference (an over-optimisation drop, one
RM better than another) only when the interval excludes zero (`rmood.eval.stats` verdicts). The README's
results block is `results_block` of the same table (`python -m rmood results`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from rmood.eval.estimates import POOLED
from rmood.eval.stats import difference_verdict, drop_verdict

Row = Any  # a pandas row (Series) of the summary table


def cell(row: Row, name: str, sign: str = "") -> str:
    """`value [lo, hi]` of an estimate, or – when the RM has none."""
    value = row.get(name)
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:{sign}.3f} [{row[name + '_lo']:{sign}.3f}, {row[name + '_hi']:{sign}.3f}]"


def has(row: Row, name: str) -> bool:
    value = row.get(name)
    return value is not None and math.isfinite(value)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def bon_table(pooled: Any, n_max: int, baseline: str) -> list[str]:
    header = ["RM", "ID accuracy (pairs)", "OOD accuracy (pairs)", f"BoN gold, n = {n_max}", "BoN peak: n, gold",
              "drop from peak", f"Δ gold vs `{baseline}`, n = {n_max}"]
    rows = [[f"`{r['rm']}`", f"{cell(r, 'id_accuracy')} ({r['id_pairs']:.0f})",
             f"{cell(r, 'ood_accuracy')} ({r['ood_pairs']:.0f})", cell(r, "bon_gold_at_N"),
             f"{r['bon_peak_n']:.0f}: {cell(r, 'bon_peak_gold')}", cell(r, "bon_drop"), cell(r, "bon_delta_at_N", "+")]
            for _, r in pooled.iterrows()]
    return table(header, rows)


def ppo_table(pooled: Any, baseline: str) -> list[str]:
    ppo = pooled[pooled["ppo_final_gold"].notna()]
    if ppo.empty:
        return ["No PPO runs."]
    header = ["RM", "KL, last", "gold, last", "peak: update, gold", "drop from peak", f"Δ gold vs `{baseline}`, last",
              f"Δ gold vs `{baseline}`, matched KL", "Spearman(update, KL)"]
    rows = [[f"`{r['rm']}`", cell(r, "ppo_final_kl"), cell(r, "ppo_final_gold"),
             f"{r['ppo_peak_step']:.0f}: {cell(r, 'ppo_peak_gold')}", cell(r, "ppo_drop"),
             cell(r, "ppo_delta_final", "+"),
             f"{cell(r, 'ppo_delta_matched', '+')} at {r['ppo_matched_kl']:.2f} nats" if has(r, "ppo_delta_matched")
             else "–", f"{r['ppo_kl_spearman']:.2f}" if has(r, "ppo_kl_spearman") else "–"]
            for _, r in ppo.iterrows()]
    return table(header, rows)


def fit_table(pooled: Any) -> list[str]:
    header = ["RM", "BoN α", "BoN β", "BoN R²", "RL α", "RL β", "RL R²"]

    def r2(value: float) -> str:
        return f"{value:.2f}" if math.isfinite(value) else "–"

    rows = [[f"`{r['rm']}`", cell(r, "bon_alpha"), cell(r, "bon_beta"), r2(r["bon_r2"]), cell(r, "rl_alpha"),
             cell(r, "rl_beta"), r2(r["rl_r2"])] for _, r in pooled.iterrows()]
    return table(header, rows)


def verdicts(pooled: Any, n_max: int, level: float) -> list[str]:
    """One sentence per RM: is its gold's drop from the peak significant, under best-of-n and PPO?"""
    lines = []
    for _, r in pooled.iterrows():
        bon = drop_verdict(r["bon_drop"], r["bon_drop_lo"], r["bon_drop_hi"], level)
        sentence = f"- `{r['rm']}`: best-of-n (peak n = {r['bon_peak_n']:.0f}, largest n = {n_max}) {bon}"
        if has(r, "ppo_drop"):
            ppo = drop_verdict(r["ppo_drop"], r["ppo_drop_lo"], r["ppo_drop_hi"], level)
            sentence += f"; PPO (peak at update {r['ppo_peak_step']:.0f}) {ppo}"
        lines.append(sentence + ".")
    return lines


def comparisons(pooled: Any, n_max: int, baseline: str, level: float) -> list[str]:
    """One sentence per RM: its paired gold difference from the baseline RM, each a test."""
    lines = []
    for _, r in pooled.iterrows():
        if r["rm"] == baseline:
            continue
        parts = [f"best-of-{n_max}: " + difference_verdict(r["bon_delta_at_N"], r["bon_delta_at_N_lo"],
                                                           r["bon_delta_at_N_hi"], baseline, level)]
        if has(r, "ppo_delta_final"):
            parts.append("PPO, last checkpoint: " + difference_verdict(
                r["ppo_delta_final"], r["ppo_delta_final_lo"], r["ppo_delta_final_hi"], baseline, level))
        if has(r, "ppo_delta_matched"):
            parts.append(f"PPO at matched KL {r['ppo_matched_kl']:.2f} nats: " + difference_verdict(
                r["ppo_delta_matched"], r["ppo_delta_matched_lo"], r["ppo_delta_matched_hi"], baseline, level))
        lines.append(f"- `{r['rm']}`: " + "; ".join(parts) + ".")
    return lines


def results_block(summary: Any, level: float, baseline: str, n_max: int) -> str:
    """The pooled results: the tables and the verdict sentences (also the README's results block)."""
    pooled = summary[summary["replicate"] == POOLED]
    lines = ["**Reward models and Best-of-N** (gold, mean over eval prompts and replicates):", "",
             *bon_table(pooled, n_max, baseline), "", "**PPO:**", "", *ppo_table(pooled, baseline), "",
             "**Over-optimisation** (the drop of gold from its peak to the largest n or the last checkpoint; the peak "
             "is chosen again in every resample):", "", *verdicts(pooled, n_max, level), "",
             f"**Compared with `{baseline}`** (paired: the same prompts and, for Best-of-N, the same samples):", "",
             *comparisons(pooled, n_max, baseline, level)]
    return "\n".join(lines)


def replicate_table(summary: Any) -> list[str]:
    """Every replicate's main numbers, one row per replicate and RM."""
    rows = summary[summary["replicate"] != POOLED]
    header = ["replicate", "RM", "ID accuracy", "BoN gold, n = N", "BoN drop", "PPO gold, last", "PPO drop"]
    return table(header, [[str(r["replicate"]), f"`{r['rm']}`", cell(r, "id_accuracy"), cell(r, "bon_gold_at_N"),
                           cell(r, "bon_drop"), cell(r, "ppo_final_gold"), cell(r, "ppo_drop")]
                          for _, r in rows.iterrows()])


def baseline_line(curves: Any, level: float) -> str:
    """The SFT policy's gold with its interval: best-of-1, and PPO step 0 (when there are PPO runs)."""
    pooled = curves[curves["replicate"] == POOLED]
    bon = pooled[(pooled["method"] == "bon") & (pooled["point"] == 1)].iloc[0]
    line = f"- **SFT policy's gold** (best-of-1): {cell(bon, 'gold')}"
    step0 = pooled[(pooled["method"] == "ppo") & (pooled["point"] == 0)]
    if not step0.empty:
        line += f"; its PPO evaluation samples (update 0): {cell(step0.iloc[0], 'gold')}"
    return line + f" ({level:.0%} intervals)."


def markdown_report(summary: Any, curves: Any, run: dict[str, Any], plots: dict[str, str], markdown: str,
                    figures: list[str]) -> str:
    """The human report: what was run and how the intervals are made, the pooled results, every replicate, the
    plots, and the representation figures of the distribution analysis."""
    level, baseline = run["level"], run["baseline"]
    bon_points = sorted(curves[curves["method"] == "bon"]["point"].unique())
    ppo_points = sorted(curves[curves["method"] == "ppo"]["point"].unique())
    n_max = int(bon_points[-1])
    replicates = run["replicates"]
    lines = [
        "# Reward-model over-optimisation (mrm_eval)", "", "## What was run", "",
        f"- **Reward models** ({summary['rm'].nunique()}): {', '.join(f'`{rm}`' for rm in summary['rm'].unique())}.",
        f"- **Replicates** ({len(replicates)}, seeds {', '.join(map(str, replicates))}): the annotator's labels, every "
        "reward model, Best-of-N sampling and PPO repeat per replicate; data, base model and SFT are shared.",
        f"- **Best-of-n** for n = {', '.join(str(int(n)) for n in bon_points)} over {run['prompts']} eval prompts.",
        f"- **PPO** checkpoints at updates {', '.join(str(int(s)) for s in ppo_points)}." if ppo_points else
        "- **PPO**: none.",
        baseline_line(curves, level),
        f"- **Intervals**: {level:.0%} percentile intervals of {run['resamples']} resamples of a hierarchical "
        "bootstrap: replicates with replacement, then the eval prompts of each drawn replicate with replacement "
        "(a prompt's samples stay together). Accuracies: the Wilson interval for one replicate, else the same "
        "bootstrap over replicates and pairs. With few replicates the interval understates the spread between "
        "seeds (see README). Differences between reward models are paired. A verdict states a difference only "
        "when its interval excludes zero.",
        "", "## Results (pooled over the replicates)", "", results_block(summary, level, baseline, n_max), "",
        "## Over-optimisation fits (Gao et al. 2022)", "",
        "Δgold = d(α − βd) for Best-of-N and d(α − β log d) for PPO, d = √KL, gold relative to the SFT policy; "
        "R² of the pooled curve.", "", *fit_table(summary[summary["replicate"] == POOLED]), "",
    ]
    if len(replicates) > 1:
        lines += ["## Every replicate", "", *replicate_table(summary), ""]
    lines += ["## Plots", ""]
    captions = {
        "bon_gold": "Best-of-n: gold reward vs KL_BoN",
        "bon_proxy": "Best-of-n: proxy reward gain vs KL_BoN",
        "ppo_gold": "PPO: gold reward vs √KL",
        "ppo_proxy": "PPO: proxy reward gain vs √KL",
        "rm_accuracy": "RM accuracy, ID and OOD",
        "forest": f"Paired gold differences from `{baseline}`",
    }
    for stem, path in plots.items():
        rel = Path(os.path.relpath(path, Path(markdown).parent)).as_posix()
        lines += [f"### {captions[stem]}", "", f"![{captions[stem]}]({rel})", ""]
    if figures:
        lines += ["## Representations", "", "The numbers behind each figure are in the JSON file beside it.", ""]
        for figure in figures:
            rel = Path(os.path.relpath(figure, Path(markdown).parent)).as_posix()
            lines += [f"### {Path(figure).parent.name}/{Path(figure).stem}", "", f"![{Path(figure).stem}]({rel})", ""]
    return "\n".join(lines)


README_BLOCK = ("<!-- results:begin -->", "<!-- results:end -->")


def results_markdown(summary: str | os.PathLike, config: dict[str, Any]) -> str:
    """The results block of an experiment's `reports/summary.csv`, with the config's level, baseline and N."""
    import pandas as pd

    from rmood.io import DataError

    if not Path(summary).is_file():
        raise DataError(f"{summary}: no such file (run the study first: snakemake mrm_eval)")
    report = config["report"]
    return results_block(pd.read_csv(summary), report["level"], report["baseline"], config["bon"]["n"])


def update_readme(readme: str | os.PathLike, block: str) -> None:
    """Replace the text between the README's results markers with `block` (atomically)."""
    from rmood.io import DataError, atomic_open

    text = Path(readme).read_text(encoding="utf-8")
    begin, end = README_BLOCK
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise DataError(f"{readme}: expected one {begin} ... {end} block")
    head, rest = text.split(begin)
    tail = rest.split(end)[1]
    with atomic_open(readme) as f:
        f.write(f"{head}{begin}\n{block}\n{end}{tail}")
