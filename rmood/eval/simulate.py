"""Simulated studies with a known truth: how often the intervals cover it, how often a verdict is stated where
there is nothing, and how well `predicted_power` predicts the power of a comparison (`python -m rmood calibration`
prints the tables; tests/test_simulate.py holds them to their bounds).

Every data set has the study's shape: R replicates × P = 256 prompts, Gaussian effects. The variance of the
estimate is split into a replicate part, a shared-prompt part and a residual (replicate × prompt) part, in
proportions given by the scenario; "replicate variance dominant" means the replicate part is nine times the
residual one. Kinds of estimate:
- `mean`: a mean over crossed replicates × prompts (gold at a best-of-n point or a PPO checkpoint; a paired
  difference of two RMs has the same form);
- `accuracy`: a share of pairs ranked as gold ranks them, 1 + Poisson(2.7) pairs per prompt (about 3.7, as in the
  study), each right with probability expit(η + a_r + b_p + e_rp), so pairs of a prompt are correlated;
- `nested`: a mean where each replicate has prompts of its own (the prompt share is then within replicates).
The false-positive rates come from curves of K = 6 points whose replicates differ by a replicate-level random walk
around a mean that is flat, or rises at the second point and stays there (the hardest case for "over-optimised":
the fall from a plateau point to the end is exactly 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from rmood.eval.markdown import table
from rmood.eval.stats import Estimate, estimate, predicted_power
from rmood.eval.verdicts import DECLINES, OVER_OPTIMISED, RISES, trend

PROMPTS = 256
PAIRS_PER_PROMPT = 2.7  # 1 + Poisson(2.7) pairs per prompt
KINDS = ("mean", "accuracy", "nested")
PROMPT_SHARES = (0.0, 0.5, 0.9)
REPLICATES = (3, 10)


@dataclass(frozen=True)
class Scenario:
    kind: str
    replicates: int
    prompt_share: float  # of the estimate's variance (latent, for accuracy)
    prompts: int = PROMPTS

    def components(self, variance: float = 1.0) -> tuple[float, float, float]:
        """σ²_A, σ²_B, σ²_E giving Var(θ̂) = `variance`, split as the scenario says (replicate:residual = 9:1)."""
        rest = (1 - self.prompt_share) * variance
        r, p = self.replicates, self.prompts
        return 0.9 * rest * r, self.prompt_share * variance * p, 0.1 * rest * r * p


def crossed_means(rng: np.random.Generator, r: int, p: int, a: float, b: float, e: float) -> np.ndarray:
    """(R, P) values a_r + b_p + e_rp with these variances."""
    return (rng.normal(0, np.sqrt(a), (r, 1)) + rng.normal(0, np.sqrt(b), (1, p))
            + rng.normal(0, np.sqrt(e), (r, p)))


ACCURACY_LOGIT = 1.0  # η: an RM right on about 70% of pairs
ACCURACY_VARIANCE = 0.01  # Var(θ̂) on the logit scale


def accuracy_truth(scenario: Scenario) -> float:
    """E[expit(η + X)], X ~ N(0, σ²_A + σ²_B + σ²_E): the accuracy the estimate converges to (Gauss–Hermite)."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    sd = np.sqrt(sum(scenario.components(ACCURACY_VARIANCE)))
    return float(w @ expit(ACCURACY_LOGIT + sd * x) / w.sum())


def draw(scenario: Scenario, rng: np.random.Generator) -> tuple[Estimate, float]:
    """One simulated data set's estimate and the truth it estimates."""
    r, p = scenario.replicates, scenario.prompts
    if scenario.kind == "mean":
        return estimate(crossed_means(rng, r, p, *scenario.components()), crossed=True), 0.0
    if scenario.kind == "nested":
        a, b, e = scenario.components()
        values = rng.normal(0, np.sqrt(a), (r, 1)) + rng.normal(0, np.sqrt(b + e / r), (r, p))
        return estimate(list(values), crossed=False), 0.0
    logits = ACCURACY_LOGIT + crossed_means(rng, r, p, *scenario.components(ACCURACY_VARIANCE))
    pairs = 1 + rng.poisson(PAIRS_PER_PROMPT, (r, p))
    right = rng.binomial(pairs, expit(logits))
    tables = np.stack([right, pairs], axis=-1)
    return estimate(tables, crossed=True, statistic=lambda m: m[..., :1] / m[..., 1:]), accuracy_truth(scenario)


def coverage(scenario: Scenario, datasets: int, level: float = 0.95, seed: int = 0) -> float:
    """The share of `datasets` simulated data sets whose `level` interval covers the truth."""
    rng = np.random.default_rng([seed, KINDS.index(scenario.kind), scenario.replicates,
                                 round(100 * scenario.prompt_share)])
    hits = 0
    for _ in range(datasets):
        est, truth = draw(scenario, rng)
        lo, hi = est.interval(level)
        hits += bool(lo[0] <= truth <= hi[0])
    return hits / datasets


# --- false positives of the verdicts ------------------------------------------------------------

POINTS = 6
WALK, PROMPT_SD, POINT_SD, RESIDUAL_SD = 0.02, 0.25, 0.03, 0.1  # per-step replicate walk; prompt; per point; rest
NULL_CURVES = {"flat": np.zeros(POINTS), "plateau": np.r_[0.0, np.full(POINTS - 1, 1.0)]}


def curves(rng: np.random.Generator, mean: np.ndarray, replicates: int, prompts: int = PROMPTS) -> np.ndarray:
    """(R, P, K) gold of K points: `mean`, a replicate-level random walk over the points, prompt effects shared by
    every replicate (a prompt level plus a little per point) and residual noise."""
    k = len(mean)
    walk = np.cumsum(rng.normal(0, WALK, (replicates, 1, k)), axis=-1)
    prompt = rng.normal(0, PROMPT_SD, (1, prompts, 1)) + rng.normal(0, POINT_SD, (1, prompts, k))
    return mean + walk + prompt + rng.normal(0, RESIDUAL_SD, (replicates, prompts, k))


def false_positives(null: str, replicates: int, datasets: int, level: float = 0.95,
                    seed: int = 0) -> dict[str, float]:
    """Per verdict, the share of data sets from a `null` curve (see NULL_CURVES) where it is stated wrongly:
    over-optimised (both), rises (flat), declines from the start (both), and a paired difference between two arms
    drawn from the same null (better or worse at the last point)."""
    rng = np.random.default_rng([seed, list(NULL_CURVES).index(null), replicates])
    mean = NULL_CURVES[null]
    counts = dict.fromkeys((OVER_OPTIMISED, RISES, DECLINES, "difference"), 0)
    for _ in range(datasets):
        data = curves(rng, mean, replicates)
        verdict = trend(estimate(list(data), crossed=True), level).verdict
        counts[OVER_OPTIMISED] += verdict == OVER_OPTIMISED
        counts[RISES] += verdict == RISES and null == "flat"
        counts[DECLINES] += verdict == DECLINES
        other = curves(rng, mean, replicates)
        difference = estimate(list(data[..., -1] - other[..., -1]), crossed=True)
        lo, hi = difference.interval(level)
        counts["difference"] += bool(lo[0] > 0 or hi[0] < 0)
    return {verdict: count / datasets for verdict, count in counts.items()}


# --- predicted power ----------------------------------------------------------------------------


def power_check(replicates: int, at: int, effect: float, datasets: int, level: float = 0.95,
                seed: int = 0) -> dict[str, float]:
    """For a paired difference of size `effect` (crossed, prompt share 0.5): the power of a study with `at`
    replicates predicted from the true components, the median of the predictions made from each simulated study of
    `replicates` replicates (what `rmood power` does: from its estimated components and their uncertainty), and the
    power simulated at `at` replicates."""
    a, b, e = Scenario("mean", 3, 0.5).components(0.01)  # the same components at every R: SE 0.1 at R = 3
    truth = {"replicate": a, "prompt": b, "residual": e}
    rng = np.random.default_rng([seed, replicates, at, round(1000 * effect)])
    predicted = []
    for _ in range(datasets):
        est = estimate(crossed_means(rng, replicates, PROMPTS, a, b, e), crossed=True)
        predicted.append(predicted_power(effect, {k: float(v[0]) for k, v in est.components().items()}, at, PROMPTS,
                                         True, level, measured=(replicates, PROMPTS)))
    hits = 0
    for _ in range(datasets):
        lo, hi = estimate(effect + crossed_means(rng, at, PROMPTS, a, b, e), crossed=True).interval(level)
        hits += bool(lo[0] > 0 or hi[0] < 0)
    return {"true components": predicted_power(effect, truth, at, PROMPTS, True, level),
            "from a study (median)": float(np.median(predicted)), "simulated": hits / datasets}


def calibration(datasets: int = 2000, level: float = 0.95,
                progress: Callable[[str], None] = lambda _: None) -> str:
    """The three tables, as Markdown: coverage, false-positive rates, predicted against simulated power."""
    rows = []
    for kind in KINDS:
        for r in REPLICATES:
            progress(f"coverage: {kind}, R = {r}")
            rows.append([kind, str(r), *(f"{coverage(Scenario(kind, r, share), datasets, level):.1%}"
                                         for share in PROMPT_SHARES)])
    parts = [f"**Coverage** of nominal {level:.0%} intervals ({datasets} data sets each; prompt share of the "
             "estimate's variance; the rest replicate : residual = 9 : 1):", "",
             *table(["estimate", "R", *(f"prompt share {s:.0%}" for s in PROMPT_SHARES)], rows)]
    rows = []
    for null in NULL_CURVES:
        progress(f"false positives: {null}")
        rates = false_positives(null, 3, datasets, level)
        rows.append([null, *(f"{rates[v]:.1%}" if v != RISES or null == "flat" else "–" for v in rates)])
    parts += ["", f"**False positives** with R = 3 and a replicate-level random walk ({datasets} data sets each, "
              "6 points, 256 prompts):", "",
              *table(["null curve", OVER_OPTIMISED, RISES, DECLINES, "better/worse (two arms, same null)"], rows)]
    rows = []
    for r, at, effect in ((3, 3, 0.3), (3, 6, 0.2), (3, 10, 0.15), (10, 10, 0.15)):
        progress(f"power: R = {r} -> {at}")
        check = power_check(r, at, effect, datasets // 4, level)
        rows.append([str(r), str(at), f"{effect:.2f}", *(f"{v:.0%}" for v in check.values())])
    parts += ["", f"**Predicted power** of a paired difference (prompt share 0.5, SE 0.1 at R = 3; "
              f"{datasets // 4} data sets each):", "",
              *table(["R measured", "R predicted", "difference", "predicted (true components)",
                      "predicted from each simulated study (median)", "simulated"], rows)]
    return "\n".join(parts)
