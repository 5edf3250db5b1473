"""Bootstrap, intervals, peak drops, row-wise fits, interpolation and verdicts, on simulated data with a known truth.

The coverage and false-positive rates measured here are the ones quoted in `rmood.eval.stats`'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from rmood.eval.bon import kl_bon, n_values
from rmood.eval.fit import fit_bon, fit_bon_rows, fit_rl, fit_rl_rows
from rmood.eval.stats import (
    bootstrap_means,
    bootstrap_proportion,
    difference_verdict,
    drop_interval,
    drop_verdict,
    interpolate_at,
    interval,
    peak_drop,
    peak_index,
    point_means,
    wilson,
)

DATA_SETS = 200
RESAMPLES = 1000
PROMPTS = 256


def skewed(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Right-skewed per-prompt values with mean 0 and standard deviation 0.3 (a centred gamma, shape 2)."""
    return 0.3 * (rng.gamma(2.0, 1 / np.sqrt(2), size=shape) - np.sqrt(2))


def covers(lo: np.ndarray, hi: np.ndarray, truth: np.ndarray | float) -> np.ndarray:
    return (lo <= truth) & (truth <= hi)


def width(bounds: tuple[float, float]) -> float:
    return bounds[1] - bounds[0]


def coverage(simulate: Callable[[np.random.Generator], tuple[list[np.ndarray], np.ndarray]], seed: int) -> np.ndarray:
    """Share of `DATA_SETS` simulated data sets whose 95% interval covers the truth, per statistic.

    `simulate` returns the replicates and the true value of every feature; the statistics are the features.
    """
    rng = np.random.default_rng(seed)
    hits = []
    for i in range(DATA_SETS):
        replicates, truth = simulate(rng)
        hits.append(covers(*interval(bootstrap_means(replicates, RESAMPLES, seed=i)), truth))
    return np.mean(hits, axis=0)


# --- hierarchical bootstrap of means ------------------------------------------------------------


def correlated_pair(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """One replicate of two correlated columns a, b = a + 0.02 + small noise, and their difference a − b."""
    a = 0.5 + skewed(rng, (PROMPTS,))
    b = a + 0.02 + 0.05 * rng.standard_normal(PROMPTS)
    values = np.column_stack([a, b])
    return [np.column_stack([values, a - b])], np.array([0.5, 0.52, -0.02])


def test_one_replicate_interval_covers_the_mean() -> None:
    measured = coverage(correlated_pair, seed=1)
    print(f"coverage, one replicate: a {measured[0]:.3f}, b {measured[1]:.3f}, a − b {measured[2]:.3f}")
    assert np.all((0.90 <= measured) & (measured <= 0.99))


def test_paired_difference_is_tighter_and_equals_difference_of_draws() -> None:
    replicates, _ = correlated_pair(np.random.default_rng(0))
    draws = bootstrap_means(replicates, RESAMPLES, seed=0)
    assert np.allclose(draws[:, 0] - draws[:, 1], draws[:, 2])  # every column saw the same prompt draw
    assert draws[:, 2].std() < 0.25 * min(draws[:, 0].std(), draws[:, 1].std())


def test_one_replicate_is_the_prompt_bootstrap() -> None:
    values = 0.5 + skewed(np.random.default_rng(0), (PROMPTS,))
    draws = bootstrap_means([values], 4000, seed=0)
    assert draws.shape == (4000,) and point_means([values]) == pytest.approx(values.mean())
    assert draws.mean() == pytest.approx(values.mean(), abs=0.1 * values.std() / np.sqrt(PROMPTS))
    assert draws.std() == pytest.approx(values.std() / np.sqrt(PROMPTS), rel=0.05)  # the plug-in standard error


def test_point_means_is_the_mean_of_replicate_means() -> None:
    rng = np.random.default_rng(0)
    replicates = [rng.normal(size=(p, 2, 3)) for p in (10, 50, 200)]  # unequal prompt counts
    assert np.allclose(point_means(replicates), np.mean([r.mean(axis=0) for r in replicates], axis=0))
    assert bootstrap_means(replicates, 7, seed=0).shape == (7, 2, 3)


def test_interval_widens_with_between_replicate_spread() -> None:
    rng = np.random.default_rng(0)
    within = [skewed(rng, (PROMPTS,)) for _ in range(4)]
    offsets = np.array([-1.0, 0.0, 0.5, 1.5])
    widths = []
    for spread in (0.0, 0.01, 0.05, 0.2):
        lo, hi = interval(bootstrap_means([w + spread * o for w, o in zip(within, offsets)], RESAMPLES, seed=0))
        widths.append(hi - lo)
    assert np.all(np.diff(widths) > 0) and widths[-1] > 5 * widths[0]


@pytest.mark.parametrize(
    ("between", "low", "high"),
    [(0.0, 0.97, 1.0), (0.1, 0.65, 0.85)],
    ids=["between-negligible", "between-dominant"],
)
def test_coverage_with_three_replicates(between: float, low: float, high: float) -> None:
    """Known behaviour of the two-stage bootstrap, quoted in the module docstring: conservative when the
    prompt noise dominates, optimistic with three replicates when the spread between seeds dominates."""

    def three_seeds(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
        return [between * rng.standard_normal() + skewed(rng, (PROMPTS,)) for _ in range(3)], np.array(0.0)

    measured = coverage(three_seeds, seed=2)
    print(f"coverage, R = 3, between-replicate sd {between}: {measured:.3f}")
    assert low <= measured <= high


# --- percentile intervals -----------------------------------------------------------------------


def test_interval_quantiles_and_nans() -> None:
    draws = np.column_stack([np.arange(1001.0), np.r_[np.arange(501.0), np.full(500, np.nan)], np.full(1001, np.nan)])
    lo, hi = interval(draws, level=0.9)
    assert lo[0] == pytest.approx(50.0) and hi[0] == pytest.approx(950.0)
    assert lo[1] == pytest.approx(25.0) and hi[1] == pytest.approx(475.0)  # NaN draws left out
    assert np.isnan(lo[2]) and np.isnan(hi[2])
    with pytest.raises(ValueError, match="level"):
        interval(draws, level=1.0)


# --- proportions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [(81, 263, (0.2553, 0.3662)), (15, 148, (0.0624, 0.1605)), (0, 20, (0.0, 0.1611)), (20, 20, (0.8389, 1.0))],
)
def test_wilson_known_values(k: int, n: int, expected: tuple[float, float]) -> None:
    """Newcombe (1998), Statistics in Medicine 17:857, table I, method 3."""
    assert wilson(k, n) == pytest.approx(expected, abs=1e-4)


def test_wilson_edge_cases() -> None:
    assert np.isnan(wilson(0, 0)).all()
    assert width(wilson(50, 100, level=0.99)) > width(wilson(50, 100)) > width(wilson(500, 1000))
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson(5, 4)


def test_bootstrap_proportion() -> None:
    one = bootstrap_proportion([(81, 263)], 4000, seed=0)
    assert interval(one) == pytest.approx(wilson(81, 263), abs=0.01)
    counts = [(70, 100), (80, 100), (90, 100)]
    draws = bootstrap_proportion(counts, 4000, seed=0)
    assert draws.shape == (4000,) and draws.mean() == pytest.approx(0.8, abs=0.005)
    assert width(interval(draws)) > width(interval(bootstrap_proportion([(240, 300)], 4000, seed=0)))
    for bad in ([], [(3, 2)], [(0, 0)], [(1, 2), (-1, 2)]):
        with pytest.raises(ValueError, match="replicate"):
            bootstrap_proportion(bad, 10, seed=0)


# --- drop from the peak -------------------------------------------------------------------------


def test_peak_drop_and_index_per_row() -> None:
    curves = np.array([[0.1, 0.5, 0.3], [0.1, 0.2, 0.3], [0.4, 0.4, 0.1]])
    assert peak_drop(curves) == pytest.approx([0.2, 0.0, 0.3])
    assert peak_index(curves).tolist() == [1, 2, 0]  # first of tied peaks
    assert peak_drop(curves[None]).shape == (1, 3)


def noisy_curves(rng: np.random.Generator, means: np.ndarray) -> list[np.ndarray]:
    """One replicate of per-prompt curves (P, K): a skewed prompt effect, sample noise at every point and a
    random walk along the curve (neighbouring points alike)."""
    shape = (PROMPTS, len(means))
    noise = rng.normal(0, 0.05, size=shape) + np.cumsum(rng.normal(0, 0.03, size=shape), axis=1)
    return [0.5 + skewed(rng, (PROMPTS, 1)) + noise + means]


def drop_rates(means: np.ndarray, seed: int) -> tuple[float, float, float]:
    """Over simulated data sets: the share judged over-optimised by `drop_interval`, the share a plain percentile
    interval of `peak_drop(draws)` would judge so, and the coverage of the true drop by `drop_interval`."""
    rng = np.random.default_rng(seed)
    truth = peak_drop(means)
    ours, naive, hits = [], [], []
    for i in range(DATA_SETS):
        replicates = noisy_curves(rng, means)
        draws = bootstrap_means(replicates, RESAMPLES, seed=i)
        lo, hi = drop_interval(point_means(replicates), draws)
        ours.append(drop_verdict(peak_drop(point_means(replicates)), lo, hi).startswith("over-optimised"))
        naive.append(interval(peak_drop(draws))[0] > 0)
        hits.append(covers(lo, hi, truth))
    return float(np.mean(ours)), float(np.mean(naive)), float(np.mean(hits))


@pytest.mark.parametrize("points", [5, 7])
def test_flat_curves_are_rarely_called_over_optimised(points: int) -> None:
    ours, naive, _ = drop_rates(np.zeros(points), seed=points)
    print(f"flat curves, K = {points}: over-optimised {ours:.3f} (percentile interval of max − last: {naive:.3f})")
    assert ours <= 0.06 and naive > 2 * ours


def test_planted_drop_is_found_and_covered() -> None:
    means = np.array([0.0, 0.04, 0.06, 0.06, 0.05, 0.04])  # peak 0.06, last 0.04: a drop of 0.02
    found, _, covered = drop_rates(means, seed=3)
    print(f"planted drop of 0.02: over-optimised {found:.3f}, true drop covered {covered:.3f}")
    assert found >= 0.9 and covered >= 0.93


def test_drop_interval_shapes_and_errors() -> None:
    rng = np.random.default_rng(0)
    curve = np.array([[0.0, 1.0, 0.0], [0.0, 0.5, 1.0]])  # (RMs, K)
    lo, hi = drop_interval(curve, curve + rng.normal(0, 0.01, size=(500, 2, 3)))
    assert lo.shape == hi.shape == (2,)
    assert lo[0] == pytest.approx(1.0, abs=0.05) and hi[0] == pytest.approx(1.0, abs=0.05) and lo[1] == 0.0
    with pytest.raises(ValueError, match="shape"):
        drop_interval(curve, np.zeros((5, 3, 2)))
    with pytest.raises(ValueError, match="scalar"):
        drop_interval(1.0, np.zeros(5))


# --- verdicts -----------------------------------------------------------------------------------


def test_verdicts_state_a_difference_only_when_the_interval_excludes_zero() -> None:
    assert drop_verdict(0.031, 0.012, 0.050) == "over-optimised: drop 0.031 (95% CI [0.012, 0.050])"
    assert drop_verdict(0.008, 0.0, 0.021) == "no significant drop: 0.008 (95% CI [0.000, 0.021])"
    assert difference_verdict(0.02, 0.01, 0.03, "rm") == "better than `rm`: +0.020 (95% CI [+0.010, +0.030])"
    assert difference_verdict(-0.02, -0.03, -0.01, "rm") == "worse than `rm`: -0.020 (95% CI [-0.030, -0.010])"
    assert difference_verdict(0.004, -0.006, 0.014, "rm", level=0.9).startswith(
        "no significant difference from `rm`: +0.004 (90% CI"
    )
    assert difference_verdict(np.nan, np.nan, np.nan, "rm").startswith("no significant difference")


# --- Gao et al. fits on bootstrap rows ----------------------------------------------------------


def test_row_fits_equal_point_fits() -> None:
    rng = np.random.default_rng(0)
    kl = np.array([kl_bon(n) for n in n_values(64)])
    gold = 0.3 + rng.normal(0, 0.05, size=(20, len(kl)))
    alpha, beta = fit_bon_rows(kl, gold)  # fixed KL for every row
    assert alpha.shape == beta.shape == (20,)
    for row, a, b in zip(gold, alpha, beta):
        assert (a, b) == pytest.approx((fit_bon(kl, row)["alpha"], fit_bon(kl, row)["beta"]), rel=1e-9)
    kls = np.sort(rng.uniform(0, 20, size=(20, 6)), axis=1)  # PPO: KL resampled with gold
    alpha, beta = fit_rl_rows(kls, gold[:, :6])
    for k, row, a, b in zip(kls, gold[:, :6], alpha, beta):
        assert (a, b) == pytest.approx((fit_rl(k, row)["alpha"], fit_rl(k, row)["beta"]), rel=1e-9)


def test_row_fits_mark_under_determined_rows() -> None:
    alpha, beta = fit_bon_rows([[0.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 4.0]], np.ones(3))
    assert np.isnan(alpha[:2]).all() and np.isnan(beta[:2]).all() and alpha[2] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="at least one point"):
        fit_rl_rows(np.zeros((3, 0)), np.zeros((3, 0)))


def test_bootstrap_interval_of_alpha_covers_the_truth() -> None:
    """Per-prompt best-of-n gold from the model Δgold = d(α − βd) plus prompt effects and noise."""
    alpha, beta = 0.05, 0.012
    kl = np.array([kl_bon(n) for n in n_values(16)])
    d = np.sqrt(kl)
    rng = np.random.default_rng(4)
    hits = []
    for i in range(100):
        replicates = noisy_curves(rng, d * (alpha - beta * d))
        draws = fit_bon_rows(kl, bootstrap_means(replicates, RESAMPLES, seed=i))
        hits.append([covers(*interval(param), truth) for param, truth in zip(draws, (alpha, beta))])
    measured = np.mean(hits, axis=0)
    print(f"fit coverage: alpha {measured[0]:.2f}, beta {measured[1]:.2f}")
    assert np.all(measured >= 0.9)


# --- matched KL ---------------------------------------------------------------------------------


def test_interpolate_at() -> None:
    kl = np.array([[0.0, 1.0, 4.0, 9.0], [9.0, 0.0, 4.0, 1.0]])  # second row unsorted
    values = np.array([[0.0, 1.0, 2.0, 3.0], [3.0, 0.0, 2.0, 1.0]])  # value = √KL in both rows
    for target in (0.0, 1.0, 4.0, 9.0, 2.25, 6.25):
        assert interpolate_at(kl, values, target) == pytest.approx([np.sqrt(target)] * 2)  # exact, linear in √KL
    assert interpolate_at(kl, values, 100.0) == pytest.approx([3.0, 3.0])  # clamped above
    assert interpolate_at(kl + 1.0, values, 0.0) == pytest.approx([0.0, 0.0])  # clamped below
    rows = np.array([[0.0, 1.0], [0.0, 4.0]])
    assert interpolate_at(rows, [[0.0, 1.0], [0.0, 1.0]], 1.0) == pytest.approx([1.0, 0.5])  # rows independent
    assert interpolate_at(np.zeros((2, 3, 2)), np.ones((2, 3, 2)), 1.0).shape == (2, 3)
    with pytest.raises(ValueError, match="at least one point"):
        interpolate_at(np.zeros((2, 0)), np.zeros((2, 0)), 1.0)


# --- determinism and validation -----------------------------------------------------------------


def test_same_seed_same_bytes() -> None:
    rng = np.random.default_rng(0)
    replicates = [rng.normal(size=(30, 4)), rng.normal(size=(40, 4))]
    assert bootstrap_means(replicates, 50, seed=7).tobytes() == bootstrap_means(replicates, 50, seed=7).tobytes()
    assert not np.array_equal(bootstrap_means(replicates, 50, seed=7), bootstrap_means(replicates, 50, seed=8))
    counts = [(3, 10), (6, 10)]
    assert bootstrap_proportion(counts, 50, 7).tobytes() == bootstrap_proportion(counts, 50, 7).tobytes()
    assert not np.array_equal(bootstrap_proportion(counts, 50, 7), bootstrap_proportion(counts, 50, 8))


@pytest.mark.parametrize(
    ("replicates", "message"),
    [
        ([], "no replicates"),
        ([np.ones(3), np.ones(0)], "replicate 1 has no prompts"),
        ([np.ones((3, 2)), np.ones((3, 3))], r"replicate 1 has features of shape \(3,\), replicate 0 of shape \(2,\)"),
        ([np.ones(3), np.array([1.0, np.nan])], "replicate 1 has non-finite values"),
        ([np.float64(1.0)], "replicate 0 has no prompts"),
    ],
)
def test_bootstrap_means_refuses_bad_replicates(replicates: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_means(replicates, 10, seed=0)
    with pytest.raises(ValueError, match=message):
        point_means(replicates)


def test_bootstrap_means_refuses_no_resamples() -> None:
    with pytest.raises(ValueError, match="resamples must be >= 1"):
        bootstrap_means([np.ones(3)], 0, seed=0)
