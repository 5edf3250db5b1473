"""Every number of the `mrm_eval` report with its interval: the summary (one row per RM), the curves, the PPO runs
at pre-set KL budgets, and the variance components of every comparison with the baseline RM (for `rmood power`).

The inputs are per replicate (`Replicate`): the held-out pairs (each pair's prompt and gold gap) with whether each RM
ranks them as gold does, the per-prompt best-of-n table (`bon/per_prompt.npz`) and each PPO run's per-prompt table
(`ppo/<rm>/per_prompt.npz`). Every estimate is `rmood.eval.stats.estimate` of per-prompt tables: a mean over
replicates of each replicate's statistic, with the variance of the design — crossed where the replicates share
prompts (the eval prompts; the prompts of the held-out pairs, whose pairs differ between replicates when the
policy is re-drawn), nested where they do not (`rmood.eval.stats.align`). An accuracy is a ratio over a prompt's
pairs, so pairs are clustered by prompt. Differences between RMs are paired: the same prompts and replicates and,
for best-of-n, the same samples. Verdicts are `rmood.eval.verdicts`.

A PPO checkpoint is **degenerate** when it finishes fewer of its answers than `report.degenerate.finish_rate` times
what its run finished at update 0 (the SFT policy), or its KL per token exceeds `report.degenerate.kl_per_token`:
the policy has stopped answering (answers run to the length limit) or drifts more than a nat per token. Nothing
rests on degenerate checkpoints: a run's trend verdict reads the checkpoints before any of its replicates
degenerated; its gold at a KL budget, each replicate's curve up to its own first degenerate checkpoint,
interpolated on √KL inside that range and never beyond (a replicate that did not reach the budget is left out, and a
budget needs two replicates that reached it); Gao et al.'s fits, each replicate's own usable curve. Rows are
computed for the pooled replicates ("pooled") and for each replicate alone (its intervals then cover the prompts
only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import spearmanr

from rmood.eval.bon import VALUES
from rmood.eval.fit import fit_bon, fit_bon_rows, fit_rl, fit_rl_rows
from rmood.eval.ppo_curve import CHANNELS
from rmood.eval.stats import Estimate, align, estimate, interpolate_at, join
from rmood.eval.verdicts import DEGENERATE, Trend, differences, drift, trend
from rmood.rl.tuning import degenerate as is_degenerate
from rmood.rl.stopping import stop_index
from rmood.io import DataError

POOLED = "pooled"
SPLITS = ("id", "ood")  # held-out pairs: test pairs of the training families, and of the held-out families
BINS = ("all", "close", "clear")  # pairs by gold gap: every pair; gap < report.gold_gap; the rest
POWER = 0.8  # of every minimum detectable difference
GOLD, PROXY, DISTANCE, OUTLIER = range(4)  # channels of the best-of-n table (rmood.eval.bon.VALUES)
# channels of the PPO table (rmood.eval.ppo_curve.CHANNELS)
KL, PPO_GOLD, PPO_PROXY, FINISHED, TOKENS, PPO_DISTANCE, PPO_OUTLIER, LATENT_OUTLIER, OUTLIER_GOLD = (
    CHANNELS.index(name) for name in ("kl", "gold", "proxy", "finished", "tokens", "distance", "outlier",
                                      "latent_outlier", "outlier_gold"))
# distance_statistics' columns, in order
MOMENTS = tuple(CHANNELS.index(name) for name in ("distance", "error", "error_sq", "distance_sq", "distance_error",
                                                  "outlier", "outlier_error", "gold", "outlier_gold"))


@dataclass
class Pairs:
    """One replicate's held-out pairs of a split: each pair's prompt, its gold gap (chosen − rejected, > 0) and, per
    RM, whether the RM rewards the chosen response more."""

    prompts: np.ndarray
    gap: np.ndarray
    correct: dict[str, np.ndarray]


@dataclass
class Replicate:
    """What one replicate contributes: held-out pairs, the best-of-n table and the PPO tables."""

    seed: int
    pairs: dict[str, Pairs]  # SPLITS
    bon: dict[str, np.ndarray]  # rmood.eval.bon.BON_ARRAYS
    ppo: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # rm -> rmood.eval.ppo_curve.PPO_ARRAYS


@dataclass
class Settings:
    reward_models: list[str]
    baseline: str
    level: float
    gold_gap: float
    kl_budgets: list[float]
    finish_rate: float  # a checkpoint is degenerate below this share of its run's update-0 finish rate …
    kl_per_token: float  # … or above this KL per token
    ppo_runs: list[str] = field(default_factory=list)  # the PPO runs in order: RMs, then KL-penalised runs
    penalised: str | None = None  # the KL-penalised run of the baseline RM, the second baseline at the KL budgets
    stop_share: float | None = None  # early stopping: the outlier share chosen on the tuning seed (None: not tuned)


Interval = tuple[float, float, float]


def at(est: Estimate, index: int, level: float) -> Interval:
    """(value, lo, hi) of one statistic."""
    lo, hi = est.interval(level)
    return float(est.value[index]), float(lo[index]), float(hi[index])


def clipped(value: Interval, lowest: float = -np.inf, highest: float = np.inf) -> Interval:
    """An interval cut to the range its quantity can take (an accuracy lies in [0, 1], a KL is ≥ 0)."""
    return value[0], max(value[1], lowest), min(value[2], highest)


def put(row: dict[str, Any], name: str, value: Interval) -> None:
    """`name`, `name_lo` and `name_hi` of an estimate."""
    row[name], row[f"{name}_lo"], row[f"{name}_hi"] = value


NONE = (np.nan,) * 3


def put_detectable(row: dict[str, Any], name: str, est: Estimate, level: float) -> None:
    """A difference (one statistic) in the row: `name` with its interval, and `name_mdd`, its minimum detectable
    difference."""
    put(row, name, at(est, 0, level))
    row[f"{name}_mdd"] = float(est.mdd(level, POWER)[0])


def compare(row: dict[str, Any], name: str, est: Estimate, level: float, variance: list[dict], label: str,
            rm: str, comparison: str | None = None) -> None:
    """A paired difference from the baseline (one statistic): its interval and minimum detectable difference in the
    row (`put_detectable`), its variance components in `variance` (the rows of reports/variance.csv, as `comparison`,
    default `name`)."""
    put_detectable(row, name, est, level)
    parts = {k: float(v[0]) for k, v in est.components().items()}
    variance.append({"replicate": label, "rm": rm, "comparison": comparison or name, "estimate": row[name],
                     "se": float(est.se()[0]), "mdd": row[f"{name}_mdd"], "replicates": est.replicates,
                     "prompts": est.prompts, "crossed": est.crossed, **{f"var_{k}": v for k, v in parts.items()}})


# --- accuracy -------------------------------------------------------------------------------------


def accuracy(replicates: list[Replicate], split: str, rms: list[str], gap: float) -> tuple[Estimate, list[float]]:
    """Accuracy of every RM in every gold-gap bin (statistics bin-major: BINS × RMs) over a split's pairs clustered
    by prompt, and the mean share of pairs in each bin per replicate."""
    prompts, tables, shares = [], [], []
    for rep in replicates:
        pairs = rep.pairs[split]
        ids, index = np.unique(pairs.prompts, return_inverse=True)
        masks = {"all": np.ones(len(pairs.gap), bool), "close": pairs.gap < gap, "clear": pairs.gap >= gap}
        columns = []
        for mask in masks.values():
            columns.append(np.bincount(index[mask], minlength=len(ids)))
            columns += [np.bincount(index[mask], weights=pairs.correct[rm][mask], minlength=len(ids)) for rm in rms]
        prompts.append(list(ids))
        tables.append(np.stack(columns, axis=1))
        shares.append([mask.mean() for mask in masks.values()])
    aligned, crossed = align(prompts, tables, fill=0.0)
    width = len(rms) + 1

    def ratios(means: np.ndarray) -> np.ndarray:
        counts = means.reshape(*means.shape[:-1], len(BINS), width)
        n = counts[..., :1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(n > 0, counts[..., 1:] / n, np.nan).reshape(*means.shape[:-1], len(BINS) * len(rms))

    return estimate(aligned, crossed, ratios), list(np.mean(shares, axis=0))


def accuracy_columns(acc: Estimate, shares: list[float], pairs: float, split: str, rms: list[str], s: Settings,
                     variance: list[dict], label: str) -> dict[str, dict[str, Any]]:
    """The accuracy columns of a split, per RM: each bin and the paired difference from the baseline."""
    m, base = len(rms), rms.index(s.baseline)
    columns = {}
    for i, rm in enumerate(rms):
        row: dict[str, Any] = {f"{split}_pairs": pairs}
        for b, name in enumerate(BINS):
            put(row, f"{split}_accuracy" + (f"_{name}" if b else ""), clipped(at(acc, b * m + i, s.level), 0.0, 1.0))
        row[f"{split}_close_share"] = shares[1]
        if i == base:
            put(row, f"{split}_delta", NONE)
            row[f"{split}_delta_mdd"] = np.nan
        else:
            compare(row, f"{split}_delta", acc.contrast(differences(len(acc.value), [(i, base)])), s.level, variance,
                    label, rm)
        columns[rm] = row
    return columns


# --- curves ---------------------------------------------------------------------------------------


def bon_tables(replicates: list[Replicate], reward_models: list[str]) -> tuple[list[np.ndarray], bool, np.ndarray,
                                                                              np.ndarray]:
    """Per replicate (prompts, RMs × VALUES × n), aligned; crossed; the common n and KL_BoN."""
    first = replicates[0].bon
    tables, prompts = [], []
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
        table = np.stack([bon[name][order] for name in VALUES], axis=1)  # (RMs, values, prompts, n)
        tables.append(table.transpose(2, 0, 1, 3).reshape(table.shape[2], -1))
        prompts.append(bon["prompts"].tolist())
    aligned, crossed = align_prompts(prompts, tables, "best-of-n")
    return aligned, crossed, first["n"], first["kl"]


def align_prompts(prompts: list[list[str]], tables: list[np.ndarray], what: str) -> tuple[list[np.ndarray], bool]:
    try:
        return align(prompts, tables)
    except ValueError as error:
        raise DataError(f"{what} tables: {error}") from None


def ppo_tables(replicates: list[Replicate], reward_models: list[str]) -> tuple[list[str], list[np.ndarray], bool,
                                                                              np.ndarray, set[str]]:
    """The RMs with a PPO run (in `reward_models` order), per replicate (prompts, RMs × CHANNELS × steps), aligned;
    crossed; the steps; the runs without a share of outliers in InfoRM's latent space (no InfoRM: NaN in their
    tables, 0 here). Every replicate must have run the same RMs on the same schedule and, within a replicate, on the
    same prompts."""
    models = [rm for rm in reward_models if rm in replicates[0].ppo]
    tables, prompts, steps = [], [], None
    no_latent = {rm for rep in replicates for rm, run in rep.ppo.items() if np.isnan(run["latent_outlier"]).any()}
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
            table = np.nan_to_num(np.stack([np.stack([run[c] for c in CHANNELS]) for run in runs]),
                                  nan=0.0)  # (RMs, channels, K, P): latent_outlier NaN without an InfoRM
            tables.append(table.transpose(3, 0, 1, 2).reshape(table.shape[3], -1))
            prompts.append(runs[0]["prompts"].tolist())
    if not models:
        return [], [], True, np.array([], dtype=int), set()
    aligned, crossed = align_prompts(prompts, tables, "PPO")
    return models, aligned, crossed, steps, no_latent


@dataclass
class Curves:
    """One family's estimate (best-of-n or PPO: RMs × channels × points) and where each number lies in it."""

    est: Estimate
    tables: list[np.ndarray]
    crossed: bool
    channels: int
    points: int

    def index(self, m: int, channel: int, k: int | None = None) -> int | list[int]:
        first = (m * self.channels + channel) * self.points
        return list(range(first, first + self.points)) if k is None else first + k

    def curve(self, m: int, channel: int) -> Estimate:
        return self.est[self.index(m, channel)]

    def of(self, columns: list[int], statistic: Callable[[np.ndarray], np.ndarray]) -> Estimate:
        """A statistic of some columns of each replicate's table."""
        return estimate([t[:, columns] for t in self.tables], self.crossed, statistic)

    def each(self, replicates: list[int], columns: Callable[[int], list[int]],
             statistic: Callable[[int], Callable[[np.ndarray], np.ndarray]]) -> Estimate:
        """A statistic of each of some replicates' own columns (e.g. its own usable checkpoints), joined."""
        return join([estimate([self.tables[r][:, columns(r)]], self.crossed, statistic(r)) for r in replicates])

    def difference(self, m: int, base: int, channel: int, k: int) -> Estimate:
        return self.est.contrast(differences(len(self.est.value), [(self.index(m, channel, k), self.index(base,
                                                                                                         channel, k))]))

    def shift(self, m: int, channel: int, k: int) -> Estimate:
        """Point k of a curve minus its first point."""
        return self.est.contrast(differences(len(self.est.value), [(self.index(m, channel, k),
                                                                     self.index(m, channel, 0))]))


def drift_columns(row: dict[str, Any], name: str, shift: Estimate, level: float) -> None:
    """How far a curve's distance from the RM's training distribution moved (one statistic, a later point minus the
    first): its interval, minimum detectable shift and verdict (`rmood.eval.verdicts.drift`)."""
    put_detectable(row, name, shift, level)
    row[f"{name}_verdict"] = drift(row[f"{name}_lo"], row[f"{name}_hi"])


def trend_columns(row: dict[str, Any], prefix: str, curve: Estimate, points: np.ndarray, level: float) -> Trend:
    """The trend of a gold curve: its peak (point, the points that may be highest, gold there), rise, fall, verdict."""
    t = trend(curve, level)
    point = "n" if prefix == "bon" else "step"
    row[f"{prefix}_peak_{point}"] = int(points[t.peak])
    row[f"{prefix}_peak_{point}_lo"], row[f"{prefix}_peak_{point}_hi"] = (int(points[k]) for k in t.peak_set)
    put(row, f"{prefix}_peak_gold", t.peak_value)
    put(row, f"{prefix}_rise", t.rise)
    put(row, f"{prefix}_fall", t.fall)
    row[f"{prefix}_rise_mdd"], row[f"{prefix}_fall_mdd"] = t.detectable(POWER)
    row[f"{prefix}_verdict"] = t.verdict
    return t


def fit_columns(row: dict[str, Any], prefix: str, est: Estimate, r2: list[float | None], level: float) -> None:
    """α and β of Gao et al.'s fit (mean over replicates of each replicate's fit) and the replicates' mean R²."""
    put(row, f"{prefix}_alpha", at(est, 0, level))
    put(row, f"{prefix}_beta", at(est, 1, level))
    row[f"{prefix}_r2"] = float(np.mean([np.nan if v is None else v for v in r2]))


def bon_rows(label: str, replicates: list[Replicate], s: Settings, variance: list[dict]
             ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Per RM its best-of-n summary columns, and the best-of-n curve rows."""
    rms, base = s.reward_models, s.reward_models.index(s.baseline)
    tables, crossed, ns, kl = bon_tables(replicates, rms)
    bon = Curves(estimate(tables, crossed), tables, crossed, len(VALUES), len(ns))
    columns, curves = {}, []
    last = len(ns) - 1
    for m, rm in enumerate(rms):
        row: dict[str, Any] = {}
        put(row, "bon_gold_at_N", at(bon.est, bon.index(m, GOLD, last), s.level))
        put(row, "bon_proxy_at_N", at(bon.est, bon.index(m, PROXY, last), s.level))
        put(row, "bon_outlier_at_N", clipped(at(bon.est, bon.index(m, OUTLIER, last), s.level), 0.0, 1.0))
        drift_columns(row, "bon_distance_shift", bon.shift(m, DISTANCE, last), s.level)
        trend_columns(row, "bon", bon.curve(m, GOLD), ns, s.level)
        if m == base:
            put(row, "bon_delta_at_N", NONE)
            row["bon_delta_at_N_mdd"] = np.nan
        else:
            compare(row, "bon_delta_at_N", bon.difference(m, base, GOLD, last), s.level, variance, label, rm)
        gold = bon.index(m, GOLD)
        fits = bon.of(gold, lambda means: np.stack(fit_bon_rows(kl, means), axis=-1))
        fit_columns(row, "bon", fits, [fit_bon(kl, theta)["r2"] for theta in bon.est.theta[:, gold]], s.level)
        columns[rm] = row
        for k, n in enumerate(ns):
            point = {"replicate": label, "method": "bon", "rm": rm, "point": int(n), "kl": float(kl[k]),
                     "kl_lo": float(kl[k]), "kl_hi": float(kl[k])}
            put(point, "gold", at(bon.est, bon.index(m, GOLD, k), s.level))
            put(point, "proxy", at(bon.est, bon.index(m, PROXY, k), s.level))
            put(point, "distance", clipped(at(bon.est, bon.index(m, DISTANCE, k), s.level), 0.0))
            put(point, "outlier", clipped(at(bon.est, bon.index(m, OUTLIER, k), s.level), 0.0, 1.0))
            put(point, "delta_gold", at(bon.difference(m, base, GOLD, k), 0, s.level) if m != base else NONE)
            curves.append(point)
    return columns, curves


def spearman(values: np.ndarray) -> float:
    """Spearman's rank correlation of the checkpoint order with `values` (NaN when constant)."""
    if len(values) < 2 or np.ptp(values) == 0:
        return float("nan")
    return float(spearmanr(np.arange(len(values)), values).statistic)


def per_token(means: np.ndarray) -> np.ndarray:
    """KL per token: the statistic of (…, KL columns | token columns) means, one per column pair."""
    kl, tokens = np.split(means, 2, axis=-1)
    return kl / tokens


def inlier_mean(share: np.ndarray, on_outliers: np.ndarray, value: np.ndarray) -> np.ndarray:
    """E[x | not an outlier] from the means of the outlier indicator, x·1[outlier] and x (NaN where every response is
    an outlier); of gold, the gold of the responses inside the SFT policy's distance range."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(share < 1, (value - on_outliers) / (1 - share), np.nan)


def outlier_gap(share: np.ndarray, on_outliers: np.ndarray, value: np.ndarray) -> np.ndarray:
    """E[x | outlier] − E[x | not], from the same means as `inlier_mean` (NaN without outliers or without others)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(share > 0, on_outliers / share, np.nan) - inlier_mean(share, on_outliers, value)


def at_budget(budget: float, lengths: tuple[int, ...], value: Callable[..., np.ndarray] | None = None
              ) -> Callable[[np.ndarray], np.ndarray]:
    """A value at KL = `budget` of one run, interpolated on √KL, or its difference from another run's (then `lengths`
    gives both runs' checkpoints). Each run's columns are its `lengths[i]` checkpoints of KL, then of each channel
    `value` reads (its per-checkpoint value of those channels' means; without `value`, the one channel itself)."""
    def statistic(means: np.ndarray) -> np.ndarray:
        blocks = means.shape[-1] // sum(lengths)  # KL and the channels
        parts = np.split(means, np.cumsum([n for n in lengths for _ in range(blocks)])[:-1], axis=-1)
        values = []
        for i in range(len(lengths)):
            kl, *channels = parts[blocks * i:blocks * (i + 1)]
            values.append(interpolate_at(kl, value(*channels) if value else channels[0], budget))
        return (values[0] - values[1] if len(values) == 2 else values[0])[..., None]

    return statistic


@dataclass
class Runs:
    """A group's PPO runs: the curves, KL per token, and each replicate's usable checkpoints (before its first
    degenerate one: a finish rate below `Settings.finish_rate` of its update 0's, or KL per token above
    `Settings.kl_per_token`)."""

    curves: Curves
    kl_per_token: Estimate  # (runs × checkpoints)
    usable: np.ndarray  # (replicates, runs): how many leading checkpoints are not degenerate
    degenerate: np.ndarray  # (replicates, runs, checkpoints): bool

    @classmethod
    def of(cls, tables: list[np.ndarray], crossed: bool, runs: int, points: int, s: Settings) -> Runs:
        curves = Curves(estimate(tables, crossed), tables, crossed, len(CHANNELS), points)
        pairs = [curves.index(j, KL) for j in range(runs)], [curves.index(j, TOKENS) for j in range(runs)]
        kl_per_token = curves.of(sum(pairs[0], []) + sum(pairs[1], []), per_token)
        finished = np.stack([curves.est.theta[:, curves.index(j, FINISHED)] for j in range(runs)], axis=1)
        ratio = kl_per_token.theta.reshape(len(tables), runs, points)
        degenerate = is_degenerate(finished, finished[..., :1], ratio, s.finish_rate, s.kl_per_token)
        usable = np.where(degenerate.any(axis=-1), degenerate.argmax(axis=-1), points)
        return cls(curves, kl_per_token, usable, degenerate)

    def usable_columns(self, *arms: int, channels: tuple[int, ...] = (PPO_GOLD,)) -> Callable[[int], list[int]]:
        """Replicate r -> the KL and `channels` columns of each run in `arms` up to its usable checkpoints there."""
        def columns(r: int) -> list[int]:
            return [c for i in arms for part in (KL, *channels)
                    for c in self.curves.index(i, part)[:self.usable[r, i]]]

        return columns


def distance_statistics(means: np.ndarray) -> np.ndarray:
    """How the proxy's error e and gold g go with the distance d over a run's responses (`MOMENTS` columns, each over
    the same checkpoints, update 0 first: the means of d, e, e², d², d·e, the outlier share o, e·1[outlier], g and
    g·1[outlier]): the correlation of d and e, pooled over the checkpoints; how much more the proxy overrates outliers
    than the other responses, E[e | outlier] − E[e | not]; the outliers' gold gap, E[g | outlier] − E[g | not]; and
    how that gap changed, over the checkpoints after update 0 minus at update 0 (the SFT policy's own outliers; NaN
    without a checkpoint after it)."""
    d, e, ee, dd, de, o, oe, g, og = np.split(means, len(MOMENTS), axis=-1)
    later = (outlier_gap(o[..., 1:].mean(axis=-1), og[..., 1:].mean(axis=-1), g[..., 1:].mean(axis=-1))
             if o.shape[-1] > 1 else np.full(o.shape[:-1], np.nan))
    shift = later - outlier_gap(o[..., 0], og[..., 0], g[..., 0])
    d, e, ee, dd, de, o, oe, g, og = (x.mean(axis=-1) for x in (d, e, ee, dd, de, o, oe, g, og))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (de - d * e) / np.sqrt((dd - d * d) * (ee - e * e))
    return np.stack([corr, outlier_gap(o, oe, e), outlier_gap(o, og, g), shift], axis=-1)


def stop_columns(row: dict[str, Any], runs: Runs, j: int, steps: np.ndarray, share: float, level: float) -> None:
    """The early-stopping rule scored against gold: in each replicate, the first usable checkpoint of run j whose
    outlier share exceeds `share` (else its last usable one) and its gold peak among the usable checkpoints
    (`ppo_stop_steps`, `ppo_peak_steps`: per replicate); gold at the stop and its difference from gold at the peak,
    each replicate's own two checkpoints held fixed (the peak chosen on the same data: the loss leans negative)."""
    ppo, replicates = runs.curves, range(len(runs.usable))
    stops, peaks = [], []
    for r in replicates:
        count = runs.usable[r, j]
        stops.append(stop_index(ppo.est.theta[r, ppo.index(j, PPO_OUTLIER)][:count].tolist(), share, count))
        peaks.append(int(np.argmax(ppo.est.theta[r, ppo.index(j, PPO_GOLD)][:count])))
    gold = ppo.index(j, PPO_GOLD)
    row["ppo_stop_steps"] = "/".join(str(int(steps[k])) for k in stops)
    row["ppo_peak_steps"] = "/".join(str(int(steps[k])) for k in peaks)
    put(row, "ppo_stop_gold", at(ppo.each(list(replicates), lambda r: [gold[stops[r]]], lambda r: lambda m: m), 0,
                                 level))
    loss = ppo.each(list(replicates), lambda r: [gold[stops[r]], gold[peaks[r]]],
                    lambda r: lambda m: m[..., :1] - m[..., 1:])
    put_detectable(row, "ppo_stop_loss", loss, level)


def rl_fit(means: np.ndarray) -> np.ndarray:
    """Gao et al.'s RL (α, β) of (…, KL | gold) columns."""
    return np.stack(fit_rl_rows(*np.split(means, 2, axis=-1)), axis=-1)


def checkpoint(runs: Runs, j: int, k: int, level: float, latent: bool = True) -> dict[str, Interval]:
    """KL (≥ 0), gold, proxy, finish rate (in [0, 1]), distance (≥ 0), share of outliers (in [0, 1]) and KL per token
    (≥ 0) of run j at its k-th checkpoint; its share of outliers in InfoRM's latent space when it has one
    (`latent`)."""
    ppo, points = runs.curves, runs.curves.points
    values = {name: at(ppo.est, ppo.index(j, channel, k), level)
              for name, channel in (("kl", KL), ("gold", PPO_GOLD), ("proxy", PPO_PROXY), ("finished", FINISHED),
                                    ("distance", PPO_DISTANCE), ("outlier", PPO_OUTLIER),
                                    ("latent_outlier", LATENT_OUTLIER))}
    values["kl_per_token"] = at(runs.kl_per_token, j * points + k, level)
    bounds = {"kl": (0.0, np.inf), "finished": (0.0, 1.0), "kl_per_token": (0.0, np.inf), "distance": (0.0, np.inf),
              "outlier": (0.0, 1.0), "latent_outlier": (0.0, 1.0)}
    if not latent:
        values["latent_outlier"] = NONE
    return {name: clipped(value, *bounds.get(name, (-np.inf, np.inf))) for name, value in values.items()}


class BudgetValue(NamedTuple):
    """A value read at the KL budgets: the PPO channels it is computed from per checkpoint, how (None: the one channel
    itself), and the budget columns of its differences from the baseline's run and from the baseline's KL-penalised
    run (reports/budgets.csv)."""

    channels: tuple[int, ...]
    per_checkpoint: Callable[..., np.ndarray] | None
    deltas: tuple[str, str]


BUDGET_VALUES = {"gold": BudgetValue((PPO_GOLD,), None, ("delta_gold", "delta_penalised")),
                 "distance": BudgetValue((PPO_DISTANCE,), None, ("delta_distance", "delta_distance_penalised")),
                 "gold_inlier": BudgetValue((PPO_OUTLIER, OUTLIER_GOLD, PPO_GOLD), inlier_mean,
                                            ("delta_gold_inlier", "delta_gold_inlier_penalised"))}


def budget_rows(label: str, runs: Runs, models: list[str], j: int, s: Settings, variance: list[dict]
                ) -> list[dict[str, Any]]:
    """Run j's gold, distance and gold at equal distance (`gold_inlier`: of its responses inside the SFT policy's
    distance range) at every KL budget, and their paired differences from the baseline's run and from the baseline's
    KL-penalised run there (`BUDGET_VALUES`): each replicate's own curve read inside the range of its usable
    checkpoints, never beyond; a budget needs two replicates that reached it (one when the group is one replicate).
    The gold differences' variance components go to `variance` (`rmood power`)."""
    ppo, needed = runs.curves, min(2, len(runs.usable))
    reach = [[ppo.est.theta[r, ppo.index(i, KL)][:runs.usable[r, i]].max(initial=0.0) for i in range(len(models))]
             for r in range(len(runs.usable))]
    rows = []
    for budget in s.kl_budgets:
        reached = [r for r in range(len(reach)) if reach[r][j] >= budget]
        row: dict[str, Any] = {"replicate": label, "rm": models[j], "kl": budget, "reached": len(reached)}
        for value, (channels, per_checkpoint, deltas) in BUDGET_VALUES.items():
            put(row, value, at(ppo.each(reached, runs.usable_columns(j, channels=channels),
                                        lambda r: at_budget(budget, (runs.usable[r, j],), per_checkpoint)), 0, s.level)
                if len(reached) >= needed else NONE)
            for name, other, suffix in zip(deltas, (s.baseline, s.penalised), ("", "_penalised")):
                base = models.index(other) if other in models else None
                both = [r for r in reached if base is not None and reach[r][base] >= budget]
                if base is None or j == base or len(both) < needed:
                    put(row, name, NONE)
                    row[f"{name}_mdd"] = np.nan
                    continue
                difference = ppo.each(both, runs.usable_columns(j, base, channels=channels),
                                      lambda r: at_budget(budget, (runs.usable[r, j], runs.usable[r, base]),
                                                          per_checkpoint))
                if value == "gold":
                    compare(row, name, difference, s.level, variance, label, models[j], f"ppo_delta_kl{budget:g}{suffix}")
                else:
                    put_detectable(row, name, difference, s.level)
        rows.append(row)
    return rows


def ppo_rows(label: str, replicates: list[Replicate], s: Settings, variance: list[dict]
             ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Per RM with a PPO run its PPO summary columns; the PPO curve rows; the KL-budget rows."""
    models, tables, crossed, steps, no_latent = ppo_tables(replicates, s.ppo_runs)
    if not models:
        return {}, [], []
    points = len(steps)
    runs = Runs.of(tables, crossed, len(models), points, s)
    ppo = runs.curves
    base = models.index(s.baseline) if s.baseline in models else None
    columns, curves, budgets = {}, [], []
    for j, rm in enumerate(models):
        row: dict[str, Any] = {}
        latent = rm not in no_latent
        for name, value in checkpoint(runs, j, points - 1, s.level, latent).items():
            put(row, f"ppo_final_{name}", value)
        degenerate = runs.degenerate[:, j].any(axis=0)
        row["ppo_degenerate_replicates"] = int(runs.degenerate[:, j].any(axis=1).sum())
        row["ppo_degenerate_step"] = int(steps[degenerate.argmax()]) if degenerate.any() else np.nan
        usable = int(runs.usable[:, j].min())  # the checkpoints no replicate has degenerated by: the verdict's
        if usable >= 2:
            peak = trend_columns(row, "ppo", ppo.curve(j, PPO_GOLD)[:usable], steps[:usable], s.level).peak
            row["ppo_peak_kl"] = float(ppo.est.value[ppo.index(j, KL, peak)])
            row["ppo_distance_step"] = int(steps[usable - 1])  # the last checkpoint the verdict reads
            drift_columns(row, "ppo_distance_shift", ppo.shift(j, PPO_DISTANCE, usable - 1), s.level)
            for name, channel in (("ppo_outlier_usable", PPO_OUTLIER), ("ppo_latent_outlier_usable", LATENT_OUTLIER)):
                put(row, name, clipped(at(ppo.est, ppo.index(j, channel, usable - 1), s.level), 0, 1)
                    if latent or channel != LATENT_OUTLIER else NONE)
        else:
            row["ppo_verdict"] = DEGENERATE
        moments = ppo.each(list(range(len(tables))), lambda r: [c for channel in MOMENTS for c in
                                                                ppo.index(j, channel)[:runs.usable[r, j]]],
                           lambda r: distance_statistics)  # each replicate's usable checkpoints
        put(row, "ppo_error_corr", clipped(at(moments, 0, s.level), -1.0, 1.0))
        for k, name in ((1, "ppo_outlier_overrating"), (2, "ppo_outlier_gold_gap"), (3, "ppo_outlier_gold_shift")):
            gap = at(moments, k, s.level)  # undefined where leaving a prompt out leaves no outlier (or no other answer)
            put(row, name, gap if np.isfinite(gap).all() else NONE)
        if s.stop_share is not None:
            stop_columns(row, runs, j, steps, s.stop_share, s.level)
        row["ppo_kl_spearman"] = spearman(ppo.est.value[ppo.index(j, KL)])
        own = runs.usable_columns(j)
        fits = ppo.each(list(range(len(tables))), own, lambda r: rl_fit)
        fit_columns(row, "rl", fits, [fit_rl(*np.split(ppo.est.theta[r, own(r)], 2))["r2"] for r in range(len(tables))],
                    s.level)
        columns[rm] = row
        for k, step in enumerate(steps):
            point = {"replicate": label, "method": "ppo", "rm": rm, "point": int(step),
                     "degenerate": int(runs.degenerate[:, j, k].sum())}
            for name, value in checkpoint(runs, j, k, s.level, latent).items():
                put(point, name, value)
            put(point, "delta_gold", at(ppo.difference(j, base, PPO_GOLD, k), 0, s.level)
                if base is not None and j != base else NONE)
            curves.append(point)
        budgets += budget_rows(label, runs, models, j, s, variance)
    return columns, curves, budgets


@dataclass
class Tables:
    """The rows of the report's tables (rmood.eval.report writes one CSV each)."""

    summary: list[dict[str, Any]] = field(default_factory=list)  # one per RM
    curves: list[dict[str, Any]] = field(default_factory=list)  # one per RM and point
    budgets: list[dict[str, Any]] = field(default_factory=list)  # one per PPO run and KL budget
    variance: list[dict[str, Any]] = field(default_factory=list)  # one per comparison with the baseline

    def __iadd__(self, other: Tables) -> Tables:
        for name in ("summary", "curves", "budgets", "variance"):
            getattr(self, name).extend(getattr(other, name))
        return self


def group_tables(label: str, replicates: list[Replicate], s: Settings) -> Tables:
    """The tables' rows of a group of replicates."""
    rms = s.reward_models
    tables = Tables()
    rows = {rm: {"replicate": label, "rm": rm} for rm in rms}
    for split in SPLITS:
        acc, shares = accuracy(replicates, split, rms, s.gold_gap)
        pairs = float(np.mean([len(rep.pairs[split].gap) for rep in replicates]))
        for rm, columns in accuracy_columns(acc, shares, pairs, split, rms, s, tables.variance, label).items():
            rows[rm].update(columns)
    bon, tables.curves = bon_rows(label, replicates, s, tables.variance)
    ppo, ppo_curves, tables.budgets = ppo_rows(label, replicates, s, tables.variance)
    tables.curves += ppo_curves
    for rm in rms:
        rows[rm].update(bon[rm])
    for run, columns in ppo.items():  # a KL-penalised run has a row of its own, with its PPO columns only
        rows.setdefault(run, {"replicate": label, "rm": run}).update(columns)
    tables.summary = list(rows.values())
    return tables


def estimate_study(replicates: list[Replicate], settings: Settings) -> Tables:
    """The tables of the pooled replicates, then of each replicate (when there are several)."""
    groups = [(POOLED, replicates)]
    if len(replicates) > 1:
        groups += [(str(rep.seed), [rep]) for rep in replicates]
    tables = Tables()
    for label, group in groups:
        tables += group_tables(label, group, settings)
    return tables


def with_interval(*names: str) -> list[str]:
    return [f"{name}{suffix}" for name in names for suffix in ("", "_lo", "_hi")]


def comparison(name: str) -> list[str]:
    """A paired difference's columns: value, interval and minimum detectable difference."""
    return [*with_interval(name), f"{name}_mdd"]


def accuracy_summary(split: str) -> list[str]:
    return [*with_interval(f"{split}_accuracy"), f"{split}_pairs", *with_interval(f"{split}_accuracy_close"),
            f"{split}_close_share", *with_interval(f"{split}_accuracy_clear"), *comparison(f"{split}_delta")]


def trend_summary(prefix: str, point: str) -> list[str]:
    return [f"{prefix}_peak_{point}", f"{prefix}_peak_{point}_lo", f"{prefix}_peak_{point}_hi",
            *with_interval(f"{prefix}_peak_gold"), *comparison(f"{prefix}_rise"), *comparison(f"{prefix}_fall"),
            f"{prefix}_verdict"]


def drift_summary(name: str) -> list[str]:
    return [*comparison(name), f"{name}_verdict"]


SUMMARY_COLUMNS = [
    "replicate", "rm", *accuracy_summary("id"), *accuracy_summary("ood"),
    *with_interval("bon_gold_at_N", "bon_proxy_at_N"), *trend_summary("bon", "n"), *comparison("bon_delta_at_N"),
    *with_interval("bon_alpha", "bon_beta"), "bon_r2", *drift_summary("bon_distance_shift"),
    *with_interval("bon_outlier_at_N"),
    *with_interval("ppo_final_kl", "ppo_final_gold", "ppo_final_proxy", "ppo_final_finished", "ppo_final_kl_per_token",
                   "ppo_final_distance", "ppo_final_outlier", "ppo_final_latent_outlier"),
    "ppo_degenerate_replicates", "ppo_degenerate_step", *trend_summary("ppo", "step"), "ppo_peak_kl", "ppo_kl_spearman",
    *with_interval("rl_alpha", "rl_beta"), "rl_r2", "ppo_distance_step", *drift_summary("ppo_distance_shift"),
    *with_interval("ppo_outlier_usable", "ppo_latent_outlier_usable", "ppo_error_corr", "ppo_outlier_overrating",
                   "ppo_outlier_gold_gap", "ppo_outlier_gold_shift"),
    "ppo_stop_steps",
    "ppo_peak_steps", *with_interval("ppo_stop_gold"), *comparison("ppo_stop_loss"),
]
CURVE_COLUMNS = ["replicate", "method", "rm", "point", *with_interval("kl", "gold", "proxy", "delta_gold"),
                 *with_interval("finished", "kl_per_token"), "degenerate",
                 *with_interval("distance", "outlier", "latent_outlier")]
BUDGET_COLUMNS = ["replicate", "rm", "kl", "reached", *with_interval("gold"), *comparison("delta_gold"),
                  *comparison("delta_penalised"), *with_interval("distance"), *comparison("delta_distance"),
                  *comparison("delta_distance_penalised"), *with_interval("gold_inlier"),
                  *comparison("delta_gold_inlier"), *comparison("delta_gold_inlier_penalised")]
VARIANCE_COLUMNS = ["replicate", "rm", "comparison", "estimate", "se", "mdd", "replicates", "prompts", "crossed",
                    "var_replicate", "var_prompt", "var_residual"]
