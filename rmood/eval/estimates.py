"""Every number of the `mrm_eval` report with its interval: the summary (one row per RM) and the curves.

The inputs are per replicate: each RM's accuracy counts on held-out pairs (`check.json`), the per-prompt
best-of-n table (`bon/per_prompt.npz`) and each PPO run's per-prompt table (`ppo/<rm>/per_prompt.npz`). An
estimate is a mean over replicates of a mean over prompts; its interval comes from the hierarchical
bootstrap of `rmood.eval.stats` (replicates, then prompts), drawn once per family (best-of-n, PPO) for all
RMs together, so every difference between RMs is paired: the same prompts and, for best-of-n, the same
samples. Rows are computed for the pooled replicates ("pooled") and for each replicate alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from rmood.eval.fit import fit_bon, fit_bon_rows, fit_rl, fit_rl_rows
from rmood.eval.stats import (
    bootstrap_means,
    bootstrap_proportion,
    drop_interval,
    interpolate_at,
    interval,
    peak_index,
    point_means,
    wilson,
)
from rmood.io import DataError

POOLED = "pooled"
PAIR_SETS = {"id": "test", "ood": "ood"}  # summary prefix -> check.json block
GOLD, PROXY = 0, 1  # channels of the best-of-n table
KL, PPO_GOLD, PPO_PROXY = 0, 1, 2  # channels of the PPO table


@dataclass
class Replicate:
    """What one replicate contributes: accuracy counts, the best-of-n table and the PPO tables."""

    seed: int
    accuracy: dict[str, dict[str, tuple[int, int]]]  # rm -> {"id" | "ood": (pairs ranked as gold ranks them, pairs)}
    bon: dict[str, np.ndarray]  # rmood.eval.bon.BON_ARRAYS
    ppo: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # rm -> rmood.eval.ppo_curve.PPO_ARRAYS


@dataclass(frozen=True)
class Family:
    """Point estimates (features) and bootstrap draws (B, *features) of one family's per-prompt means."""

    point: np.ndarray
    draws: np.ndarray

    def estimate(self, statistic: Callable[[np.ndarray], np.ndarray], level: float) -> tuple[float, float, float]:
        """(value, lo, hi) of a statistic of the means, computed on the point and on every draw."""
        lo, hi = interval(statistic(self.draws), level)
        return float(statistic(self.point)), float(lo), float(hi)


def family(tables: list[np.ndarray], resamples: int, seed: int) -> Family:
    """Point means and hierarchical bootstrap draws of per-replicate tables (prompts first)."""
    return Family(point_means(tables), bootstrap_means(tables, resamples, seed))


def put(row: dict[str, Any], name: str, value: tuple[float, float, float]) -> None:
    """`name`, `name_lo` and `name_hi` of an estimate."""
    row[name], row[f"{name}_lo"], row[f"{name}_hi"] = value


def bon_tables(replicates: list[Replicate], reward_models: list[str]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per replicate (prompts, RMs, gold|proxy, n) in `reward_models` order; and the common n and KL_BoN."""
    first = replicates[0].bon
    tables = []
    for rep in replicates:
        bon = rep.bon
        if not np.array_equal(bon["n"], first["n"]):
            raise DataError(f"replicate {rep.seed}: best-of-n over n = {bon['n'].tolist()}, "
                            f"replicate {replicates[0].seed} over {first['n'].tolist()}")
        names = bon["rms"].tolist()
        missing = [rm for rm in reward_models if rm not in names]
        if missing:
            raise DataError(f"replicate {rep.seed}: no best-of-n scores of {', '.join(missing)}")
        order = [names.index(rm) for rm in reward_models]
        tables.append(np.stack([bon["gold"][order], bon["proxy"][order]], axis=2).transpose(1, 0, 2, 3))
    return tables, first["n"], first["kl"]


def ppo_tables(replicates: list[Replicate], reward_models: list[str]) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """The RMs with a PPO run (in `reward_models` order), per replicate (prompts, RMs, kl|gold|proxy, steps), and the
    steps. Every replicate must have run the same RMs on the same schedule and, within a replicate, on the same
    prompts."""
    models = [rm for rm in reward_models if rm in replicates[0].ppo]
    tables, steps = [], None
    for rep in replicates:
        if sorted(rep.ppo) != sorted(models):
            raise DataError(f"replicate {rep.seed}: PPO runs of {sorted(rep.ppo)}, replicate {replicates[0].seed} "
                            f"of {sorted(models)}")
        runs = [rep.ppo[rm] for rm in models]
        for rm, run in zip(models, runs):
            steps = run["steps"] if steps is None else steps
            if not np.array_equal(run["steps"], steps) or not np.array_equal(run["prompts"], runs[0]["prompts"]):
                raise DataError(f"replicate {rep.seed}: the PPO run of {rm} has other steps or prompts than the others")
        if runs:
            tables.append(np.stack([np.stack([run[c] for c in ("kl", "gold", "proxy")]) for run in runs])
                          .transpose(3, 0, 1, 2))
    return models, tables, steps if steps is not None else np.array([], dtype=int)


def accuracy_estimate(counts: list[tuple[int, int]], resamples: int, seed: int,
                      level: float) -> tuple[float, float, float]:
    """Mean accuracy over replicates with its interval: Wilson for one replicate, else the hierarchical bootstrap
    over replicates then pairs."""
    value = float(np.mean([k / n for k, n in counts]))
    if len(counts) == 1:
        return (value, *wilson(*counts[0], level))
    lo, hi = interval(bootstrap_proportion(counts, resamples, seed), level)
    return value, float(lo), float(hi)


def matched_kl(kl: np.ndarray, a: int, b: int) -> float:
    """The largest KL both runs `a` and `b` reached (their point-estimate KL curves are kl[a], kl[b])."""
    return float(min(kl[a].max(), kl[b].max()))


def spearman(values: np.ndarray) -> float:
    """Spearman's rank correlation of the checkpoint order with `values` (NaN when constant)."""
    if len(values) < 2 or np.ptp(values) == 0:
        return float("nan")
    return float(spearmanr(np.arange(len(values)), values).statistic)


@dataclass
class Settings:
    reward_models: list[str]
    baseline: str
    resamples: int
    level: float
    seed: int


def group_rows(label: str, replicates: list[Replicate], s: Settings) -> tuple[list[dict], list[dict]]:
    """The summary rows (one per RM) and curve rows (one per RM and point) of a group of replicates."""
    rms, base = s.reward_models, s.reward_models.index(s.baseline)
    tables, ns, kl_bon = bon_tables(replicates, rms)
    bon = family(tables, s.resamples, s.seed)
    ppo_models, ppo_data, steps = ppo_tables(replicates, rms)
    ppo = family(ppo_data, s.resamples, s.seed) if ppo_models else None
    summary, curves = [], []
    for i, rm in enumerate(rms):
        row: dict[str, Any] = {"replicate": label, "rm": rm}
        for prefix, block in PAIR_SETS.items():
            counts = [rep.accuracy[rm][prefix] for rep in replicates]
            put(row, f"{prefix}_accuracy", accuracy_estimate(counts, s.resamples, s.seed, s.level))
            row[f"{prefix}_pairs"] = float(np.mean([n for _, n in counts]))  # per replicate
        gold_curve = bon.point[i, GOLD]
        put(row, "bon_gold_at_N", bon.estimate(lambda m: m[..., i, GOLD, -1], s.level))
        put(row, "bon_proxy_at_N", bon.estimate(lambda m: m[..., i, PROXY, -1], s.level))
        peak = int(peak_index(gold_curve))
        row["bon_peak_n"] = int(ns[peak])
        put(row, "bon_peak_gold", bon.estimate(lambda m: m[..., i, GOLD, peak], s.level))
        row["bon_drop"] = float(gold_curve.max() - gold_curve[-1])
        row["bon_drop_lo"], row["bon_drop_hi"] = map(float, drop_interval(gold_curve, bon.draws[:, i, GOLD], s.level))
        put(row, "bon_delta_at_N",
            bon.estimate(lambda m: m[..., i, GOLD, -1] - m[..., base, GOLD, -1], s.level) if i != base else (np.nan,) * 3)
        fit = fit_bon(kl_bon, gold_curve)
        alpha, beta = fit_bon_rows(kl_bon, bon.draws[:, i, GOLD])
        put(row, "bon_alpha", (nan(fit["alpha"]), *map(float, interval(alpha, s.level))))
        put(row, "bon_beta", (nan(fit["beta"]), *map(float, interval(beta, s.level))))
        row["bon_r2"] = nan(fit["r2"])
        for k, n in enumerate(ns):
            point = {"replicate": label, "method": "bon", "rm": rm, "point": int(n), "kl": float(kl_bon[k]),
                     "kl_lo": float(kl_bon[k]), "kl_hi": float(kl_bon[k])}
            put(point, "gold", bon.estimate(lambda m: m[..., i, GOLD, k], s.level))
            put(point, "proxy", bon.estimate(lambda m: m[..., i, PROXY, k], s.level))
            put(point, "delta_gold", bon.estimate(lambda m: m[..., i, GOLD, k] - m[..., base, GOLD, k], s.level)
                if i != base else (np.nan,) * 3)
            curves.append(point)
        row.update(ppo_row(rm, ppo_models, ppo, steps, s) if ppo is not None else {})
        summary.append(row)
        if ppo is not None and rm in ppo_models:
            curves += ppo_curve_rows(label, rm, ppo_models, ppo, steps, s)
    return summary, curves


def nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def ppo_row(rm: str, models: list[str], ppo: Family, steps: np.ndarray, s: Settings) -> dict[str, Any]:
    """The PPO columns of one RM's summary row (empty when the RM has no PPO run)."""
    if rm not in models:
        return {}
    j = models.index(rm)
    row: dict[str, Any] = {}
    kl_curve, gold_curve = ppo.point[j, KL], ppo.point[j, PPO_GOLD]
    put(row, "ppo_final_kl", ppo.estimate(lambda m: m[..., j, KL, -1], s.level))
    put(row, "ppo_final_gold", ppo.estimate(lambda m: m[..., j, PPO_GOLD, -1], s.level))
    put(row, "ppo_final_proxy", ppo.estimate(lambda m: m[..., j, PPO_PROXY, -1], s.level))
    peak = int(peak_index(gold_curve))
    row["ppo_peak_step"] = int(steps[peak])
    put(row, "ppo_peak_gold", ppo.estimate(lambda m: m[..., j, PPO_GOLD, peak], s.level))
    row["ppo_peak_kl"] = float(kl_curve[peak])
    row["ppo_drop"] = float(gold_curve.max() - gold_curve[-1])
    row["ppo_drop_lo"], row["ppo_drop_hi"] = map(float, drop_interval(gold_curve, ppo.draws[:, j, PPO_GOLD], s.level))
    row["ppo_kl_spearman"] = spearman(kl_curve)
    if s.baseline in models and rm != s.baseline:
        b = models.index(s.baseline)
        put(row, "ppo_delta_final", ppo.estimate(lambda m: m[..., j, PPO_GOLD, -1] - m[..., b, PPO_GOLD, -1], s.level))
        target = matched_kl(ppo.point[:, KL], j, b)
        row["ppo_matched_kl"] = target

        def at_matched_kl(m: np.ndarray) -> np.ndarray:
            return (interpolate_at(m[..., j, KL, :], m[..., j, PPO_GOLD, :], target)
                    - interpolate_at(m[..., b, KL, :], m[..., b, PPO_GOLD, :], target))

        put(row, "ppo_delta_matched", ppo.estimate(at_matched_kl, s.level))
    fit = fit_rl(kl_curve, gold_curve)
    alpha, beta = fit_rl_rows(ppo.draws[:, j, KL], ppo.draws[:, j, PPO_GOLD])
    put(row, "rl_alpha", (nan(fit["alpha"]), *map(float, interval(alpha, s.level))))
    put(row, "rl_beta", (nan(fit["beta"]), *map(float, interval(beta, s.level))))
    row["rl_r2"] = nan(fit["r2"])
    return row


def ppo_curve_rows(label: str, rm: str, models: list[str], ppo: Family, steps: np.ndarray,
                   s: Settings) -> list[dict[str, Any]]:
    """One curve row per checkpoint of an RM's PPO run (Δgold: against the baseline's run at the same update)."""
    j = models.index(rm)
    b = models.index(s.baseline) if s.baseline in models and rm != s.baseline else None
    rows = []
    for k, step in enumerate(steps):
        row = {"replicate": label, "method": "ppo", "rm": rm, "point": int(step)}
        put(row, "kl", ppo.estimate(lambda m: m[..., j, KL, k], s.level))
        put(row, "gold", ppo.estimate(lambda m: m[..., j, PPO_GOLD, k], s.level))
        put(row, "proxy", ppo.estimate(lambda m: m[..., j, PPO_PROXY, k], s.level))
        put(row, "delta_gold", ppo.estimate(lambda m: m[..., j, PPO_GOLD, k] - m[..., b, PPO_GOLD, k], s.level)
            if b is not None else (np.nan,) * 3)
        rows.append(row)
    return rows


def estimate_study(replicates: list[Replicate], settings: Settings) -> tuple[list[dict], list[dict]]:
    """Summary and curve rows of the pooled replicates, then of each replicate (when there are several)."""
    groups = [(POOLED, replicates)]
    if len(replicates) > 1:
        groups += [(str(rep.seed), [rep]) for rep in replicates]
    summary, curves = [], []
    for label, group in groups:
        rows, points = group_rows(label, group, settings)
        summary += rows
        curves += points
    return summary, curves


def with_interval(*names: str) -> list[str]:
    return [f"{name}{suffix}" for name in names for suffix in ("", "_lo", "_hi")]


SUMMARY_COLUMNS = [
    "replicate", "rm",
    *with_interval("id_accuracy"), "id_pairs", *with_interval("ood_accuracy"), "ood_pairs",
    *with_interval("bon_gold_at_N", "bon_proxy_at_N"), "bon_peak_n", *with_interval("bon_peak_gold", "bon_drop",
                                                                                    "bon_delta_at_N"),
    *with_interval("bon_alpha", "bon_beta"), "bon_r2",
    *with_interval("ppo_final_kl", "ppo_final_gold", "ppo_final_proxy"), "ppo_peak_step",
    *with_interval("ppo_peak_gold"), "ppo_peak_kl", *with_interval("ppo_drop"), "ppo_kl_spearman",
    *with_interval("ppo_delta_final"), "ppo_matched_kl", *with_interval("ppo_delta_matched"),
    *with_interval("rl_alpha", "rl_beta"), "rl_r2",
]
CURVE_COLUMNS = ["replicate", "method", "rm", "point", *with_interval("kl", "gold", "proxy", "delta_gold")]
