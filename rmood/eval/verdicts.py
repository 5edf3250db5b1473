"""The report's verdicts, each a test with a bounded false-positive rate (`rmood.eval.simulate` measures them).

- **A curve's trend** (gold against best-of-n or PPO updates, K points): the peak k̂ is the highest point of the
  estimate; "over-optimised" needs gold to rise significantly from the start to k̂ *and* fall significantly from k̂ to
  the last point. The rises μ_k − μ_0 (k ≥ 1) form one family and the falls μ_k − μ_K (k < K) another, each with
  simultaneous intervals (`Estimate.critical(family=True)`), so choosing k̂ on the same data cannot make a rise or a
  fall: on a flat curve, or one that rises to a plateau, a false verdict needs a simultaneous interval to miss, at
  most 1 − level per family. Otherwise the curve "rises" (a significant rise to k̂), "declines from the start" (the
  last point significantly below the first) or shows "no significant change".
- **The peak**: its point estimate, the set of points that may be highest (a point is left out only when another
  is significantly higher, simultaneously over all pairs), and gold at the peak as the band [max_k lo_k, max_k hi_k]
  of simultaneous intervals of the K points, which covers max_k μ_k whenever the band covers every point.
- **A drift** (the distance from the RM's training distribution, a later point minus the first): "moves away" or
  "moves closer" when its two-sided interval excludes 0 (one pre-set test per curve), else "no significant change".
- **A difference between two RMs**: "better"/"worse" when its two-sided interval excludes 0, else "no significant
  difference", always beside the minimum detectable difference (`Estimate.mdd`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rmood.eval.stats import Estimate

OVER_OPTIMISED, RISES = "over-optimised", "rises"
DECLINES, NO_CHANGE = "declines from the start", "no significant change"
DEGENERATE = "degenerate"  # a PPO run with fewer than two checkpoints before one of its replicates degenerated
Interval = tuple[float, float, float]  # value, lo, hi


def differences(points: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """The contrast matrix (len(pairs), points) of μ_i − μ_j for each (i, j)."""
    matrix = np.zeros((len(pairs), points))
    for row, (i, j) in enumerate(pairs):
        matrix[row, i] += 1
        matrix[row, j] -= 1
    return matrix


@dataclass(frozen=True)
class Trend:
    """The verdict on one curve and the numbers it rests on (see the module docstring). Intervals are (value, lo,
    hi); `rise` is μ_peak − μ_0 (NaN at the first point), `fall` μ_peak − μ_last (NaN at the last), `change`
    μ_last − μ_0."""

    verdict: str
    peak: int  # index of the estimate's highest point
    peak_set: tuple[int, int]  # first and last index of the points that may be the highest
    peak_value: Interval
    rise: Interval
    fall: Interval
    change: Interval
    rises: Estimate  # the family μ_k − μ_0, k = 1 … K−1
    falls: Estimate  # the family μ_k − μ_last, k = 0 … K−2
    level: float

    def detectable(self, power: float = 0.8) -> tuple[float, float]:
        """The minimum detectable rise to the peak and fall from it, by the verdict's simultaneous tests."""
        def at(family: Estimate, index: int) -> float:
            if not 0 <= index < len(family.value):
                return float("nan")
            return float(family[index].mdd(self.level, power, family.critical(self.level, family=True)[0])[0])

        return at(self.rises, self.peak - 1), at(self.falls, self.peak)


def _interval(estimate: Estimate, index: int, level: float, family: bool) -> Interval:
    """(value, lo, hi) of one statistic of `estimate` (its interval simultaneous over all when `family`)."""
    if not 0 <= index < len(estimate.value):
        return (np.nan,) * 3
    lo, hi = estimate.interval(level, family)
    return float(estimate.value[index]), float(lo[index]), float(hi[index])


def trend(curve: Estimate, level: float = 0.95) -> Trend:
    """The trend of a curve: `curve` holds its K ≥ 2 points (in order) as its statistics."""
    k = len(curve.value)
    if k < 2:
        raise ValueError(f"a trend needs at least 2 points, got {k}")
    peak = int(np.argmax(curve.value))
    rises = curve.contrast(differences(k, [(i, 0) for i in range(1, k)]))
    falls = curve.contrast(differences(k, [(i, k - 1) for i in range(k - 1)]))
    rise, fall = _interval(rises, peak - 1, level, True), _interval(falls, peak, level, True)
    change = _interval(curve.contrast(differences(k, [(k - 1, 0)])), 0, level, False)
    pairs = [(i, j) for i in range(k) for j in range(k) if i < j]
    lo, hi = curve.contrast(differences(k, pairs)).interval(level, family=True)
    below = {i if upper < 0 else j for (i, j), lower, upper in zip(pairs, lo, hi) if upper < 0 or lower > 0}
    candidates = [i for i in range(k) if i not in below]  # not significantly below any other point
    band_lo, band_hi = curve.interval(level, family=True)
    if rise[1] > 0 and fall[1] > 0:
        verdict = OVER_OPTIMISED
    elif rise[1] > 0:
        verdict = RISES
    elif change[2] < 0:
        verdict = DECLINES
    else:
        verdict = NO_CHANGE
    return Trend(verdict, peak, (min(candidates), max(candidates)),
                 (float(curve.value[peak]), float(band_lo.max()), float(band_hi.max())), rise, fall, change,
                 rises, falls, level)


def difference(lo: float, hi: float) -> str:
    """The verdict on a paired difference A − B with interval (lo, hi): better, worse, or no significant difference
    (also when an end is NaN)."""
    return "better" if lo > 0 else "worse" if hi < 0 else "no significant difference"


MOVES_AWAY, MOVES_CLOSER = "moves away", "moves closer"


def drift(lo: float, hi: float) -> str:
    """The verdict on a shift in distance from the RM's training distribution (later − earlier point) with interval
    (lo, hi): it moves away, moves closer, or shows no significant change (also when an end is NaN)."""
    return MOVES_AWAY if lo > 0 else MOVES_CLOSER if hi < 0 else NO_CHANGE


def interval_words(estimate: float, lo: float, hi: float, mdd: float, level: float) -> str:
    """A paired difference as the verdict sentences write it: its value, its interval and what it could detect."""
    return f"{estimate:+.3f} ({level:.0%} CI [{lo:+.3f}, {hi:+.3f}]; detectable: ±{mdd:.3f})"


def distance_verdict(estimate: float, lo: float, hi: float, mdd: float, baseline: str, level: float = 0.95) -> str:
    """The sentence on a paired difference in distance from the training distribution, A − `baseline` at the same KL:
    closer or farther only when (lo, hi) excludes 0, always with the smallest difference the comparison could
    detect."""
    numbers = interval_words(estimate, lo, hi, mdd, level)
    if hi < 0:
        return f"closer to the training distribution than `{baseline}`: {numbers}"
    if lo > 0:
        return f"farther from the training distribution than `{baseline}`: {numbers}"
    return f"no significant difference in distance from `{baseline}`: {numbers}"


def difference_verdict(estimate: float, lo: float, hi: float, mdd: float, baseline: str, level: float = 0.95) -> str:
    """The sentence on a paired difference A − `baseline`: a difference only when (lo, hi) excludes 0, always with the
    smallest difference the comparison could detect."""
    verdict = difference(lo, hi)
    return (f"{verdict} {'from' if verdict.startswith('no') else 'than'} `{baseline}`: "
            f"{interval_words(estimate, lo, hi, mdd, level)}")
