"""Intervals for the study's numbers: a hierarchical bootstrap over replicate seeds and prompts, percentile and
Wilson intervals, the drop of gold from its peak, matched-KL interpolation and the verdict sentences.

Every estimate is a mean over replicates of a mean over prompts. `bootstrap_means` resamples the replicates,
then the prompts inside each drawn replicate; all columns of a replicate share its prompt draw, so a
difference of two columns (RM A − RM B at the same n, on the same prompts and samples) is paired. Statistics
of the draws (differences, fits, peaks) are computed row by row, so a peak is re-selected in every resample.

Measured on simulated data (tests/test_stats.py; 200 data sets each, B = 1000, 95% intervals):

- one replicate, 256 skewed per-prompt values: the percentile interval covers the true mean in 94.0% and
  95.5% of data sets (two correlated columns), their paired difference in 94.0%.
- R = 3 replicates × 256 prompts. Between-replicate variance negligible: 99.0% (conservative, as the
  two-stage bootstrap counts the prompt noise twice: in the spread of the replicate means and again when
  it resamples prompts). Between-replicate variance dominant: 75.5% (optimistic: a bootstrap over three
  replicates has (R − 1)/R of the variance and only ten distinct replicate draws, where a t interval would
  need ±4.30 instead of ±1.96 standard errors). With few replicates, read the interval as a lower bound
  on the uncertainty across seeds.
- the drop of gold from its peak on flat curves (no true drop), K = 5 and 7 correlated points: `drop_interval`
  excludes 0 in 4.0% and 2.5% of data sets; the plain percentile interval of `peak_drop(draws)` in 18.5%
  and 20%, because the maximum of noisy points is biased upwards. A planted drop of 0.02 (about four
  standard errors of peak − last) is found in 96% of data sets, and `drop_interval` covers it in 98.5%.
- Gao et al. best-of-n fits of every draw (`rmood.eval.fit.fit_bon_rows`): the percentile intervals of α
  and β cover the true values in 94% of 100 data sets.

Draws are seeded: the same inputs and seed give the same bytes on one machine (the BLAS summation order
may differ between CPUs).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtri


def _check_replicates(per_replicate: Sequence[ArrayLike]) -> list[np.ndarray]:
    """The replicates as float arrays of shape (P_r, *features); ValueError naming the first bad one and why."""
    if len(per_replicate) == 0:
        raise ValueError("no replicates")
    arrays = [np.asarray(values, dtype=float) for values in per_replicate]
    for r, values in enumerate(arrays):
        if values.ndim == 0 or len(values) == 0:
            raise ValueError(f"replicate {r} has no prompts (shape {values.shape})")
        if values.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(
                f"replicate {r} has features of shape {values.shape[1:]}, replicate 0 of shape {arrays[0].shape[1:]}"
            )
        if not np.isfinite(values).all():
            raise ValueError(f"replicate {r} has non-finite values")
    return arrays


def _check_level(level: float) -> None:
    """Refuse a confidence level outside (0, 1)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")


def _draw_replicates(rng: np.random.Generator, replicates: int, resamples: int) -> np.ndarray:
    """(B, R) indices of the replicates drawn with replacement into each resample's R slots."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    return rng.integers(0, replicates, size=(resamples, replicates))


def point_means(per_replicate: Sequence[ArrayLike]) -> np.ndarray:
    """The mean over replicates of each replicate's mean over prompts, shape `features`."""
    return np.mean([values.mean(axis=0) for values in _check_replicates(per_replicate)], axis=0)


def bootstrap_means(per_replicate: Sequence[ArrayLike], resamples: int, seed: int) -> np.ndarray:
    """Hierarchical bootstrap draws of `point_means`, shape (B, *features).

    Each resample draws R replicates with replacement and, for every drawn slot independently, P_r prompts
    of that replicate with replacement (multinomial counts, so a slot's prompt mean is a matrix product);
    its value is the mean over slots of the slot's prompt mean. With one replicate this is the ordinary
    bootstrap over prompts.

    Parameters
    ----------
    per_replicate : one array per replicate seed, shape (P_r, *features): per-prompt values (P_r may differ).
    resamples : B.
    seed : seed of the random generator; the same inputs and seed give the same draws.
    """
    arrays = _check_replicates(per_replicate)
    features = arrays[0].shape[1:]
    rng = np.random.default_rng(seed)
    slots = _draw_replicates(rng, len(arrays), resamples)
    slot_means = np.empty(slots.shape + (int(np.prod(features)),))
    for r, values in enumerate(arrays):
        drawn = slots == r
        prompts = len(values)
        picks = rng.integers(0, prompts, size=(int(drawn.sum()), prompts))
        rows = np.arange(len(picks))[:, None] * prompts  # counts[i, p]: how often slot i drew prompt p
        counts = np.bincount((picks + rows).ravel(), minlength=picks.size).reshape(picks.shape)
        slot_means[drawn] = counts @ values.reshape(prompts, -1) / prompts
    return slot_means.mean(axis=1).reshape((resamples, *features))


def interval(draws: ArrayLike, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval (lo, hi) of bootstrap `draws` along axis 0, each of shape draws.shape[1:].

    NaN draws (a statistic undefined in that resample, e.g. an under-determined fit) are left out, so the
    interval is conditional on the statistic being defined; a column without any defined draw gives NaN.
    """
    _check_level(level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        lo, hi = np.nanquantile(np.asarray(draws, dtype=float), [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


# --- proportions (RM accuracy) ----------------------------------------------------------------


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion with `k` successes in `n` trials; (NaN, NaN) when n = 0."""
    _check_level(level)
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return np.nan, np.nan
    z = ndtri((1 + level) / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(centre - half), float(centre + half)


def bootstrap_proportion(counts: Sequence[tuple[int, int]], resamples: int, seed: int) -> np.ndarray:
    """Hierarchical bootstrap draws, shape (B,), of the mean over replicates of k_r / n_r.

    `counts` holds one (k, n) per replicate: k of n held-out pairs ranked as gold ranks them. Each resample
    draws R replicates with replacement and, per drawn slot, resamples its n outcomes, i.e. draws
    Binomial(n, k/n) successes. The matching point estimate is the mean of k_r / n_r.
    """
    if len(counts) == 0:
        raise ValueError("no replicates")
    for r, (k, n) in enumerate(counts):
        if not 0 <= k <= n or n == 0:
            raise ValueError(f"replicate {r}: need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    k, n = np.array(counts, dtype=np.int64).T
    rng = np.random.default_rng(seed)
    slots = _draw_replicates(rng, len(counts), resamples)
    return (rng.binomial(n[slots], k[slots] / n[slots]) / n[slots]).mean(axis=1)


# --- over-optimisation --------------------------------------------------------------------------


def peak_drop(curves: ArrayLike) -> np.ndarray:
    """Max over the K points of each curve (..., K) minus its last point, shape (...); ≥ 0."""
    curves = np.asarray(curves, dtype=float)
    return curves.max(axis=-1) - curves[..., -1]


def peak_index(curves: ArrayLike) -> np.ndarray:
    """Index of the highest of the K points of each curve (..., K) (the first on ties), shape (...)."""
    return np.argmax(curves, axis=-1)


def drop_interval(curve: ArrayLike, draws: ArrayLike, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """An interval (lo, hi) for the drop from the peak, max_k μ_k − μ_K, of curves (..., K) with draws (B, ..., K).

    The drop is the maximum of the K differences δ_k = μ_k − μ_K, so it lies in the image under `max` of a
    simultaneous band for all δ_k: lo = max_k d_k − c₋ and hi = max_k d_k + c₊, where d_k are the observed
    differences and c₋, c₊ the (1 + level)/2 quantiles over the draws of max_k(d*_k − d_k) and
    max_k(d_k − d*_k): the peak is re-selected inside every resample. lo is clipped at 0, the smallest
    possible drop. Unlike the percentile interval of `peak_drop(draws)`, which inherits the upward bias of
    a maximum of noisy points and excludes 0 for many flat curves, this interval keeps its level when
    there is no drop, at some cost in power against small drops.
    """
    _check_level(level)
    curve, draws = np.asarray(curve, dtype=float), np.asarray(draws, dtype=float)
    if curve.ndim == 0:
        raise ValueError("curve must have its K points along the last axis, got a scalar")
    if draws.shape[1:] != curve.shape:
        raise ValueError(f"draws must have the curve's shape {curve.shape} after the resample axis, got {draws.shape}")
    observed = curve - curve[..., -1:]
    deviations = (draws - draws[..., -1:]) - observed
    q = (1 + level) / 2
    estimate = observed.max(axis=-1)
    lo = estimate - np.quantile(deviations.max(axis=-1), q, axis=0)
    hi = estimate + np.quantile((-deviations).max(axis=-1), q, axis=0)
    return np.maximum(lo, 0.0), hi


# --- matched KL ---------------------------------------------------------------------------------


def interpolate_at(kl: ArrayLike, values: ArrayLike, target: float) -> np.ndarray:
    """The value at KL = `target` of each row of `values` (..., K) against `kl` (..., K), shape (...).

    Linear interpolation on √KL (negative KL estimates count as 0) between the points sorted by KL in each
    row; outside a row's KL range the value is clamped to that of the nearest end point.
    """
    kl, values = np.broadcast_arrays(np.asarray(kl, dtype=float), np.asarray(values, dtype=float))
    if kl.ndim == 0 or kl.shape[-1] == 0:
        raise ValueError(f"kl and values must have at least one point on their last axis, got shape {kl.shape}")
    order = np.argsort(kl, axis=-1, kind="stable")
    d = np.sqrt(np.clip(np.take_along_axis(kl, order, axis=-1), 0.0, None)).reshape(-1, kl.shape[-1])
    v = np.take_along_axis(values, order, axis=-1).reshape(d.shape)
    x = np.sqrt(max(target, 0.0))
    return np.array([np.interp(x, d_row, v_row) for d_row, v_row in zip(d, v)]).reshape(kl.shape[:-1])


# --- verdicts -----------------------------------------------------------------------------------


def _with_interval(estimate: float, lo: float, hi: float, level: float, sign: str = "") -> str:
    """`0.031 (95% CI [0.012, 0.050])`; `sign="+"` writes a sign on every number."""
    return f"{estimate:{sign}.3f} ({level:.0%} CI [{lo:{sign}.3f}, {hi:{sign}.3f}])"


def drop_verdict(estimate: float, lo: float, hi: float, level: float = 0.95) -> str:
    """The report's sentence on a drop from the peak, (lo, hi) from `drop_interval`: over-optimised only if lo > 0."""
    numbers = _with_interval(estimate, lo, hi, level)
    return f"over-optimised: drop {numbers}" if lo > 0 else f"no significant drop: {numbers}"


def difference_verdict(estimate: float, lo: float, hi: float, baseline: str, level: float = 0.95) -> str:
    """The report's sentence on a paired difference A − `baseline`: a difference only when (lo, hi) excludes 0.

    An interval with a NaN end states no difference.
    """
    numbers = _with_interval(estimate, lo, hi, level, sign="+")
    if lo > 0:
        return f"better than `{baseline}`: {numbers}"
    if hi < 0:
        return f"worse than `{baseline}`: {numbers}"
    return f"no significant difference from `{baseline}`: {numbers}"
