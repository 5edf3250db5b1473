"""The `report` step: the study's summary, curves and variance components with their intervals, the Markdown report
and its plots.

Inputs, per replicate (`rep<seed>/` in their paths): every RM's `rm/<rm>/check_rewards.npz` (its rewards of the
held-out pairs, see `rmood.rm.check`) with the pairs themselves (`pairs/{test,ood}.explicit.jsonl`: each pair's
prompt and gold), the best-of-n table `bon/per_prompt.npz` (see `rmood.eval.bon`) and the table of each
PPO run `ppo/<rm>/per_prompt.npz` (see `rmood.eval.ppo_curve`), and the reference levels of the distances
(`mrm/distance_reference.json`, see `rmood.mrm.distance`). `rmood.eval.estimates` turns them into
`reports/summary.csv` (one row per RM, pooled and per replicate; every estimate `x` with `x_lo`, `x_hi`, every
comparison with the baseline also with `x_mdd`), `reports/curves.csv` (one row per RM and best-of-n n or PPO
checkpoint), `reports/budgets.csv` (one row per PPO run and KL budget) and `reports/variance.csv` (the variance
components of every comparison, read by `rmood power`);
`rmood.eval.markdown` writes `reports/mrm_eval.md` from those tables alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from rmood.config import penalised_baseline, ppo_arms
from rmood.eval import PLOTS
from rmood.eval.bon import BON_ARRAYS
from rmood.eval.estimates import (BUDGET_COLUMNS, CURVE_COLUMNS, POOLED, SPLITS, SUMMARY_COLUMNS, VARIANCE_COLUMNS,
                                  Pairs, Replicate, Settings, estimate_study)
from rmood.eval.ppo_curve import PPO_ARRAYS
from rmood.io import DataError, atomic_open, read_json, read_jsonl, read_npz

PAIR_FILES = {"id": "test", "ood": "ood"}  # split -> pairs/<name>.explicit.jsonl and <name>_* of check_rewards.npz
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


def read_pairs(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Each held-out pair's prompt id and gold gap (chosen − rejected) of an explicit pairs file."""
    records = read_jsonl(path, required=("id", "chosen_gold", "rejected_gold"))
    gap = np.array([r["chosen_gold"] - r["rejected_gold"] for r in records], dtype=float)
    if (gap <= 0).any():
        raise DataError(f"{path}: a held-out pair whose chosen response is not the gold-better one")
    return np.array([r["id"] for r in records]), gap


def read_correct(path: str, split: str, pairs: int) -> np.ndarray:
    """Whether an RM rewards the chosen response of each held-out pair of `split` more (its check_rewards.npz)."""
    name = PAIR_FILES[split]
    arrays = read_npz(path, [f"{name}_chosen", f"{name}_rejected"], "rm_check rewards")
    chosen, rejected = arrays[f"{name}_chosen"], arrays[f"{name}_rejected"]
    if chosen.shape != (pairs,) or rejected.shape != (pairs,):
        raise DataError(f"{path}: {chosen.shape[0]} {name} pairs scored, the pairs file has {pairs}")
    return chosen > rejected


def read_replicates(rewards: list[str], pairs: list[str], bon: list[str], ppo: list[str],
                    reward_models: list[str], ppo_runs: list[str]) -> list[Replicate]:
    """The per-replicate inputs, grouped by the seed in their paths (in seed order)."""
    tables = {}
    for path in bon:
        seed = replicate_of(path)
        if seed in tables:
            raise DataError(f"two best-of-n tables for replicate {seed}: {tables[seed]['path']} and {path}")
        tables[seed] = {**read_npz(path, BON_ARRAYS, "best-of-n table"), "path": path}
    if not tables:
        raise DataError("no best-of-n table: nothing to report")
    held_out: dict[int, dict[str, Pairs]] = {seed: {} for seed in tables}
    for path in pairs:
        split = next((s for s, name in PAIR_FILES.items() if Path(path).name == f"{name}.explicit.jsonl"), None)
        found = held_out.get(replicate_of(path))
        if split is None or found is None or split in found:
            raise DataError(f"{path}: unexpected (not test or ood pairs, no best-of-n table of its replicate, or a "
                            "repeat)")
        found[split] = Pairs(*read_pairs(path), {})
    for seed, found in held_out.items():
        if sorted(found) != sorted(SPLITS):
            raise DataError(f"replicate {seed}: no {' or '.join(sorted(set(SPLITS) - set(found)))} pairs")
    replicates = {seed: Replicate(seed, held_out[seed], table) for seed, table in sorted(tables.items())}
    for path in rewards:
        rep = replicates.get(replicate_of(path))
        rm = Path(path).parent.name
        if rep is None or rm not in reward_models or rm in rep.pairs["id"].correct:
            raise DataError(f"{path}: unexpected (no best-of-n table of its replicate, an unknown RM, or a repeat)")
        for split, found in rep.pairs.items():
            found.correct[rm] = read_correct(path, split, len(found.gap))
    for path in ppo:
        rep = replicates.get(replicate_of(path))
        run = read_npz(path, PPO_ARRAYS, "PPO table")
        rm = str(run["rm"])
        if rep is None or rm not in ppo_runs or rm in rep.ppo:
            raise DataError(f"{path}: unexpected (no best-of-n table of its replicate, an unknown PPO run, or a "
                            "repeat)")
        rep.ppo[rm] = run
    for rep in replicates.values():
        missing = [rm for rm in reward_models if rm not in rep.pairs["id"].correct]
        if missing:
            raise DataError(f"replicate {rep.seed}: no check_rewards.npz of {', '.join(missing)}")
    return list(replicates.values())


def reference_levels(references: list[str], seeds: list[int]) -> dict[str, float]:
    """The mean over replicates of the SFT samples' and the training responses' mean distance, and the outlier
    quantile, from one `distance_reference.json` per replicate."""
    found = {}
    for path in references:
        seed = replicate_of(path)
        if seed in found or seed not in seeds:
            raise DataError(f"{path}: unexpected (a repeat, or no best-of-n table of its replicate)")
        found[seed] = read_json(path)
    missing = sorted(set(seeds) - found.keys())
    if missing:
        raise DataError(f"no distance_reference.json of replicate(s) {', '.join(map(str, missing))}")
    quantiles = {r["quantile"] for r in found.values()}
    if len(quantiles) != 1:
        raise DataError(f"the replicates' outlier thresholds are other quantiles: {sorted(quantiles)}")
    return {"sft": float(np.mean([r["sft"]["mean"] for r in found.values()])),
            "train": float(np.mean([r["train"]["mean"] for r in found.values()])), "quantile": quantiles.pop()}


def make_report(
    rewards: list[str],
    pairs: list[str],
    bon: list[str],
    ppo: list[str],
    figures: list[str],
    references: list[str],
    summary: str,
    curves: str,
    budgets: str,
    variance: str,
    markdown: str,
    plots: list[str],
    reward_models: list[str],
    report: dict[str, Any],
    rl: dict[str, Any],
    replicate_scope: str,
    tuning: str | None = None,
    stop: str | None = None,
) -> None:
    """Write `reports/summary.csv`, `reports/curves.csv`, `reports/budgets.csv`, `reports/variance.csv`,
    `reports/mrm_eval.md` and the plots; `figures` (PNGs made elsewhere, e.g. the distribution analysis) are linked
    from the Markdown; `references` (each replicate's `mrm/distance_reference.json`) give the distances' reference
    levels; `stop` (`tuning/stop.json`) the early-stopping rule's outlier share, scored here against gold."""
    import pandas as pd

    from rmood.eval.markdown import markdown_report
    from rmood.eval.plots import draw_plots

    if not reward_models:
        raise DataError("reward_models is empty")
    plot_paths = plots_by_stem(plots)
    runs = list(ppo_arms(rl, reward_models))
    replicates = read_replicates(rewards, pairs, bon, ppo, reward_models, runs)
    levels = reference_levels(references, [rep.seed for rep in replicates])
    settings = Settings(reward_models, report["baseline"], report["level"], report["gold_gap"], report["kl_budgets"],
                        report["degenerate"]["finish_rate"], report["degenerate"]["kl_per_token"], runs,
                        penalised_baseline(rl, report["baseline"]), None if stop is None else read_json(stop)["stop_share"])
    rows = estimate_study(replicates, settings)
    tables = {path: pd.DataFrame(data, columns=columns) for path, data, columns in (
        (summary, rows.summary, SUMMARY_COLUMNS), (curves, rows.curves, CURVE_COLUMNS),
        (budgets, rows.budgets, BUDGET_COLUMNS), (variance, rows.variance, VARIANCE_COLUMNS))}
    for path, frame in tables.items():
        with atomic_open(path) as f:
            frame.to_csv(f, index=False)  # full precision: the README block rendered from it matches mrm_eval.md
    table, curve_table, budget_table = tables[summary], tables[curves], tables[budgets]

    def pooled(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["replicate"] == POOLED]

    draw_plots(plot_paths, pooled(table), pooled(curve_table), pooled(budget_table), settings, levels)
    run = {"replicates": [rep.seed for rep in replicates], "prompts": len(replicates[0].bon["prompts"]),
           "level": settings.level, "baseline": settings.baseline, "penalised": settings.penalised,
           "gold_gap": settings.gold_gap, "finish_rate": settings.finish_rate, "kl_per_token": settings.kl_per_token,
           "replicate_scope": replicate_scope, "tuning": None if tuning is None else read_json(tuning),
           "references": levels, "stop": None if stop is None else read_json(stop)}
    with atomic_open(markdown) as f:
        f.write(markdown_report(table, curve_table, budget_table, run, plot_paths, markdown, figures) + "\n")
    pooled = table[table["replicate"] == POOLED]
    print(pooled[["rm", "id_accuracy", "bon_gold_at_N", "bon_peak_n", "bon_verdict", "ppo_final_gold",
                  "ppo_verdict"]].to_string(index=False))
