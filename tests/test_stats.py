"""The statistics core (rmood/eval/stats.py) and the verdicts (rmood/eval/verdicts.py) against hand computations.

Coverage, false-positive rates and power predictions on simulated studies are in tests/test_simulate.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rmood.eval.stats import align, estimate, interpolate_at, predicted_power
from rmood.eval.verdicts import DECLINES, NO_CHANGE, OVER_OPTIMISED, RISES, difference_verdict, differences, trend


def ratio(means: np.ndarray) -> np.ndarray:
    return means[..., :1] / means[..., 1:]


# --- the estimate and its variance -------------------------------------------------------------


def test_a_mean_is_its_own_pseudo_values_and_the_anova_variance() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(3, 40)) + rng.normal(size=(3, 1)) + rng.normal(size=(1, 40))
    est = estimate(data, crossed=True)
    assert est.value[0] == pytest.approx(data.mean())
    np.testing.assert_allclose(np.stack(est.pseudo)[..., 0], data)  # a mean's pseudo-values are the data
    r, p = data.shape
    rows, cols = data.mean(1) - data.mean(), data.mean(0) - data.mean()
    ms_a = p * (rows**2).sum() / (r - 1)
    ms_b = r * (cols**2).sum() / (p - 1)
    ms_e = ((data - data.mean(1, keepdims=True) - data.mean(0) + data.mean()) ** 2).sum() / ((r - 1) * (p - 1))
    assert est.variance()[0] == pytest.approx((ms_a + max(ms_b - ms_e, 0)) / (r * p))
    components = est.components()
    assert components["residual"][0] == pytest.approx(ms_e)
    assert components["prompt"][0] == pytest.approx(max(ms_b - ms_e, 0) / r)


def test_a_ratio_has_the_explicit_jackknife_pseudo_values() -> None:
    rng = np.random.default_rng(1)
    pairs = rng.integers(1, 5, size=30)
    right = rng.binomial(pairs, 0.7)
    table = np.stack([right, pairs], axis=1).astype(float)
    est = estimate([table], crossed=True, statistic=ratio)
    theta = right.sum() / pairs.sum()
    left_out = np.array([(right.sum() - right[p]) / (pairs.sum() - pairs[p]) for p in range(30)])
    np.testing.assert_allclose(est.pseudo[0][:, 0], 30 * theta - 29 * left_out)
    assert est.value[0] == pytest.approx(theta)
    jackknife = 29 / 30 * ((left_out - left_out.mean()) ** 2).sum()  # the textbook jackknife variance
    assert est.variance()[0] == pytest.approx(jackknife)


def test_one_replicate_is_a_t_interval_over_prompts() -> None:
    values = np.random.default_rng(2).exponential(size=50)
    est = estimate([values], crossed=True)
    lo, hi = est.interval(0.95)
    half = stats.t.ppf(0.975, 49) * values.std(ddof=1) / np.sqrt(50)
    assert (lo[0], hi[0]) == pytest.approx((values.mean() - half, values.mean() + half), rel=2e-3)


def test_replicates_whose_spread_dominates_get_t_with_r_minus_1_degrees_of_freedom() -> None:
    rng = np.random.default_rng(3)
    data = rng.normal(size=(3, 1)) * 10 + rng.normal(size=(3, 100)) * 0.01  # nested: replicates only
    est = estimate(list(data), crossed=False)
    means = data.mean(1)
    assert est.variance()[0] == pytest.approx(means.var(ddof=1) / 3)
    assert est.critical(0.95)[0] == pytest.approx(stats.t.ppf(0.975, 2), rel=0.02)  # 4.30, not 1.96


def test_shared_prompts_add_their_variance_once() -> None:
    rng = np.random.default_rng(4)
    prompt = rng.normal(size=(1, 200))
    data = prompt + rng.normal(size=(4, 200)) * 0.1
    crossed = estimate(data, crossed=True)
    assert crossed.variance()[0] == pytest.approx(prompt.var(ddof=1) / 200, rel=0.1)  # not divided by R
    assert crossed.critical()[0] < 2.1  # prompts dominate: almost the normal quantile
    nested = estimate(list(data), crossed=False)  # the same numbers read as each replicate's own prompts
    assert nested.variance()[0] < crossed.variance()[0] / 10


def test_paired_contrasts_cancel_what_is_shared() -> None:
    rng = np.random.default_rng(5)
    shared = rng.normal(size=(3, 60, 1)) + rng.normal(size=(1, 60, 1))
    data = shared + np.array([0.0, 0.05]) + rng.normal(size=(3, 60, 2)) * 0.01
    est = estimate(list(data), crossed=True)
    diff = est.contrast(differences(2, [(1, 0)]))
    assert diff.value[0] == pytest.approx(est.value[1] - est.value[0])
    assert diff.se()[0] < est.se().min() / 10
    lo, hi = diff.interval()
    assert lo[0] > 0 and est[1].value[0] == est.value[1]


def test_a_family_needs_a_larger_critical_value() -> None:
    rng = np.random.default_rng(6)
    independent = estimate([rng.normal(size=(500, 6))], crossed=True)
    single, family = independent.critical()[0], independent.critical(family=True)[0]
    sidak = stats.norm.ppf(1 - (1 - 0.95 ** (1 / 6)) / 2)
    assert single == pytest.approx(1.96, abs=0.03) and family == pytest.approx(sidak, abs=0.05)
    column = rng.normal(size=(500, 1))
    same = estimate([np.hstack([column] * 6)], crossed=True)  # six copies of one statistic: no multiplicity
    assert same.critical(family=True)[0] == pytest.approx(same.critical()[0], abs=0.03)


def test_the_same_inputs_give_the_same_bytes() -> None:
    data = np.random.default_rng(7).normal(size=(3, 30, 4))
    one = estimate(list(data), crossed=True)
    two = estimate(list(data), crossed=True)
    assert one.interval(family=True)[0].tobytes() == two.interval(family=True)[0].tobytes()
    assert one.mdd().tobytes() == two.mdd().tobytes()


@pytest.mark.parametrize(("tables", "crossed", "message"), [
    ([], True, "no replicates"),
    ([np.zeros((1, 2))], True, "at least 2 prompts"),
    ([np.zeros((3, 2)), np.zeros((3, 1))], True, "replicate 1 has 1 features"),
    ([np.zeros((3, 2)), np.zeros((4, 2))], True, "crossed design: replicate 1 has 4 prompts"),
    ([np.zeros(3), np.array([0.0, np.nan, 1.0])], False, "replicate 1 has non-finite values"),
])
def test_estimate_refuses_bad_tables(tables: list, crossed: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        estimate(tables, crossed)


def test_align_crossed_nested_and_filled() -> None:
    a, b = np.array([[1.0], [2.0]]), np.array([[20.0], [10.0]])
    tables, crossed = align([["p", "q"], ["q", "p"]], [a, b])
    assert crossed and tables[1].tolist() == [[10.0], [20.0]]  # rows in the first replicate's order
    tables, crossed = align([["p", "q"], ["r", "s"]], [a, b])
    assert not crossed and tables[1].tolist() == b.tolist()
    with pytest.raises(ValueError, match="share some prompts but not all"):
        align([["p", "q"], ["q", "r"]], [a, b])
    tables, crossed = align([["p", "q"], ["q", "r"]], [a, b], fill=0.0)  # counts: a missing prompt adds none
    assert crossed and [t.tolist() for t in tables] == [[[1.0], [2.0], [0.0]], [[0.0], [20.0], [10.0]]]
    with pytest.raises(ValueError, match="2 rows for 2 prompt ids \\(1 distinct\\)"):
        align([["p", "p"], ["q", "r"]], [a, b])


# --- power ------------------------------------------------------------------------------------


def test_predicted_power_grows_with_the_difference_and_the_replicates() -> None:
    components = {"replicate": 0.01, "prompt": 0.5, "residual": 1.0}
    none = predicted_power(0.0, components, 3, 256, True)
    assert none <= 0.06  # the test's false-positive rate
    powers = [predicted_power(d, components, 3, 256, True) for d in (0.05, 0.1, 0.2, 0.4, 0.8)]
    assert np.all(np.diff(powers) > 0) and powers[-1] > 0.9
    assert predicted_power(0.1, components, 10, 256, True) > predicted_power(0.1, components, 3, 256, True)
    with pytest.raises(ValueError, match="at least 2 replicates"):
        predicted_power(0.1, components, 1, 256, True)


def test_the_minimum_detectable_difference_is_found_with_the_stated_power() -> None:
    rng = np.random.default_rng(8)
    data = rng.normal(size=(3, 1)) * 0.05 + rng.normal(size=(3, 200))
    est = estimate(data, crossed=True)
    mdd = est.mdd(0.95, 0.8)[0]
    components = {k: float(v[0]) for k, v in est.components().items()}
    assert predicted_power(mdd, components, 3, 200, True, measured=(3, 200)) == pytest.approx(0.8, abs=0.01)
    assert predicted_power(mdd, components, 3, 200, True) > 0.8  # knowing the components exactly: more power


# --- verdicts ---------------------------------------------------------------------------------


def curve_study(mean: list[float], replicates: int = 3, noise: float = 0.01, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    prompts = rng.normal(0, 0.2, (1, 200, 1))
    return np.array(mean) + prompts + rng.normal(0, noise, (replicates, 1, len(mean))) + rng.normal(
        0, 0.05, (replicates, 200, len(mean)))


@pytest.mark.parametrize(("mean", "verdict"), [
    ([0.0, 0.1, 0.2, 0.1, 0.0], OVER_OPTIMISED),
    ([0.0, 0.1, 0.2, 0.2, 0.2], RISES),
    ([0.0, -0.1, -0.2, -0.2, -0.3], DECLINES),
    ([0.0, 0.0, 0.0, 0.0, 0.0], NO_CHANGE),
])
def test_trend_verdicts(mean: list[float], verdict: str) -> None:
    t = trend(estimate(list(curve_study(mean)), crossed=True))
    assert t.verdict == verdict


def test_trend_of_a_hump() -> None:
    t = trend(estimate(list(curve_study([0.0, 0.1, 0.2, 0.1, 0.0])), crossed=True))
    assert t.peak == 2 and t.peak_set == (2, 2)
    assert t.rise[1] > 0 and t.fall[1] > 0 and t.rise[0] == pytest.approx(0.2, abs=0.02)
    assert t.peak_value[1] <= t.peak_value[0] <= t.peak_value[2]
    rise, fall = t.detectable(0.8)
    assert 0 < rise < t.rise[0] and 0 < fall < t.fall[0]


def test_a_peak_at_the_start_is_no_over_optimisation() -> None:
    t = trend(estimate(list(curve_study([0.2, 0.1, 0.0, 0.0, 0.0])), crossed=True))
    assert t.peak == 0 and np.isnan(t.rise[0]) and t.fall[1] > 0 and t.verdict == DECLINES


def test_a_noisy_plateau_may_peak_anywhere() -> None:
    t = trend(estimate(list(curve_study([0.0, 0.2, 0.2, 0.2, 0.2], noise=0.0)), crossed=True))
    assert t.verdict == RISES and t.peak_set[0] == 1 and t.peak_set[1] == 4


def test_difference_verdict_states_what_it_could_detect() -> None:
    assert difference_verdict(0.05, 0.01, 0.09, 0.03, "rm").startswith("better than `rm`: +0.050")
    assert difference_verdict(-0.05, -0.09, -0.01, 0.03, "rm").startswith("worse than `rm`")
    sentence = difference_verdict(0.01, -0.02, 0.04, 0.06, "rm")
    assert sentence.startswith("no significant difference from `rm`") and "detectable: ±0.060" in sentence


# --- matched KL ----------------------------------------------------------------------------------


def test_interpolate_at() -> None:
    kl = np.array([0.0, 1.0, 4.0, 9.0])
    gold = np.array([0.0, 1.0, 2.0, 3.0])  # linear in √KL
    assert interpolate_at(kl, gold, 2.25) == pytest.approx(1.5)
    assert interpolate_at(kl[::-1], gold[::-1], 4.0) == pytest.approx(2.0)  # any order
    rows = interpolate_at(np.stack([kl, 2 * kl]), np.stack([gold, gold]), 1.0)
    assert rows == pytest.approx([1.0, 1 / np.sqrt(2)])
    with pytest.raises(ValueError, match="at least one point"):
        interpolate_at(np.zeros((2, 0)), np.zeros((2, 0)), 1.0)
