"""Gao et al. (2022) over-optimisation fits of gold reward against d = √KL.

Best-of-n: Δgold = d(α − β·d); RL: Δgold = d(α − β·log d), with d·log d = 0 at d = 0. Δgold is the gold
reward relative to the starting policy, the first point of the curve (n = 1 for best-of-n, step 0 for RL).
Both forms are linear in (α, β) and are fitted by least squares without an intercept, through the 2×2
normal equations, so that `fit_bon_rows` / `fit_rl_rows` fit many curves at once (every leave-one-prompt-out
curve of `rmood.eval.stats`' jackknife) with the same maths as the point fits `fit_bon` / `fit_rl`. A fit is
under-determined (α = β = NaN, or None) when its two columns d and penalty(d) are (nearly) parallel: |sin| of
their angle ≤ 1e-6, e.g. fewer than two points with d > 0. Small negative KL estimates (sampling noise) count as 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

Penalty = Callable[[np.ndarray], np.ndarray]
COLLINEAR = 1e-12  # sin² of the angle between the two columns below which a fit is under-determined


def _bon_penalty(d: np.ndarray) -> np.ndarray:
    """The best-of-n penalty d² (Δgold = α·d − β·d²)."""
    return np.square(d)


def _rl_penalty(d: np.ndarray) -> np.ndarray:
    """The RL penalty d·log d, 0 at d = 0 (Δgold = α·d − β·d·log d)."""
    return d * np.log(d, out=np.zeros_like(d), where=d > 0)


def _columns(kl: np.ndarray, gold: np.ndarray, penalty: Penalty) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The regressors d and −penalty(d) and the target Δgold, each of shape (..., K)."""
    d = np.sqrt(np.clip(kl, 0.0, None))
    return d, -penalty(d), gold - gold[..., :1]


def _least_squares(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, (α, β) minimising Σ(y − α·a − β·b)² along the last axis; NaN where a and b are nearly parallel."""
    aa, bb, ab = (a * a).sum(-1), (b * b).sum(-1), (a * b).sum(-1)
    ay, by = (a * y).sum(-1), (b * y).sum(-1)
    det = aa * bb - ab * ab
    solvable = det > COLLINEAR * aa * bb
    alpha = np.divide(bb * ay - ab * by, det, out=np.full(det.shape, np.nan), where=solvable)
    beta = np.divide(aa * by - ab * ay, det, out=np.full(det.shape, np.nan), where=solvable)
    return alpha, beta


def _fit_rows(kl: ArrayLike, gold: ArrayLike, penalty: Penalty) -> tuple[np.ndarray, np.ndarray]:
    """(α, β), each of shape (...), fitted to every row of `kl` and `gold` (broadcastable, (..., K))."""
    kl, gold = np.broadcast_arrays(np.asarray(kl, dtype=float), np.asarray(gold, dtype=float))
    if kl.ndim == 0 or kl.shape[-1] == 0:
        raise ValueError(f"kl and gold must have at least one point on their last axis, got shape {kl.shape}")
    return _least_squares(*_columns(kl, gold, penalty))


def fit_bon_rows(kl: ArrayLike, gold: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Best-of-n (α, β) of every row: `gold` (..., K) against `kl` (K,) or (..., K); NaN where under-determined."""
    return _fit_rows(kl, gold, _bon_penalty)


def fit_rl_rows(kl: ArrayLike, gold: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """RL (α, β) of every row: `gold` (..., K) against `kl` (K,) or (..., K); NaN where under-determined."""
    return _fit_rows(kl, gold, _rl_penalty)


def _fit(kl: Sequence[float], gold: Sequence[float], penalty: Penalty) -> dict[str, float | None]:
    """α, β (None if under-determined) and R² (None with fewer than 3 points or a flat curve) of one curve."""
    kl, gold = np.asarray(kl, dtype=float), np.asarray(gold, dtype=float)
    if kl.ndim != 1 or kl.shape != gold.shape or len(kl) == 0:
        raise ValueError(f"kl and gold must be non-empty 1-d sequences of one length, got {kl.shape} and {gold.shape}")
    if not (np.isfinite(kl).all() and np.isfinite(gold).all()):
        raise ValueError("kl and gold must be finite")
    a, b, delta = _columns(kl, gold, penalty)
    alpha, beta = _least_squares(a, b, delta)
    if np.isnan(alpha):
        return {"alpha": None, "beta": None, "r2": None}
    sst = float(np.sum((delta - delta.mean()) ** 2))
    sse = float(np.sum((delta - alpha * a - beta * b) ** 2))
    r2 = None if sst == 0 or len(kl) < 3 else 1 - sse / sst
    return {"alpha": float(alpha), "beta": float(beta), "r2": r2}


def fit_bon(kl: Sequence[float], gold: Sequence[float]) -> dict[str, float | None]:
    """Fit Δgold = d(α − β·d) to a best-of-n curve; `alpha`, `beta` (None if under-determined) and `r2`."""
    return _fit(kl, gold, _bon_penalty)


def fit_rl(kl: Sequence[float], gold: Sequence[float]) -> dict[str, float | None]:
    """Fit Δgold = d(α − β·log d) to an RL curve; `alpha`, `beta` (None if under-determined) and `r2`."""
    return _fit(kl, gold, _rl_penalty)
