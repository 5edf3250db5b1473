"""Gao et al. (2022) over-optimisation fits of gold reward against d = √KL.

Best-of-n: Δgold = d(α − β·d); RL: Δgold = d(α − β·log d), with d·log d = 0 at d = 0. Δgold is the gold
reward relative to the starting policy, the first point of the curve (n = 1 for best-of-n, step 0 for RL).
Both forms are linear in (α, β) and are fitted by least squares without an intercept. Small negative KL
estimates (sampling noise) count as 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _fit(
    kl: Sequence[float], gold: Sequence[float], penalty: Callable[[np.ndarray], np.ndarray]
) -> dict[str, float | None]:
    """Least squares of Δgold = α·d − β·penalty(d) without intercept."""
    kl, gold = np.asarray(kl, dtype=float), np.asarray(gold, dtype=float)
    if kl.ndim != 1 or kl.shape != gold.shape or len(kl) == 0:
        raise ValueError(f"kl and gold must be non-empty 1-d sequences of one length, got {kl.shape} and {gold.shape}")
    if not (np.isfinite(kl).all() and np.isfinite(gold).all()):
        raise ValueError("kl and gold must be finite")
    d = np.sqrt(np.clip(kl, 0.0, None))
    delta = gold - gold[0]
    design = np.column_stack([d, -penalty(d)])
    (alpha, beta), _, rank, _ = np.linalg.lstsq(design, delta, rcond=None)
    if rank < 2:
        return {"alpha": None, "beta": None, "r2": None}
    sst = float(np.sum((delta - delta.mean()) ** 2))
    sse = float(np.sum((delta - design @ np.array([alpha, beta])) ** 2))
    r2 = None if sst == 0 or len(kl) < 3 else 1 - sse / sst
    return {"alpha": float(alpha), "beta": float(beta), "r2": r2}


def fit_bon(kl: Sequence[float], gold: Sequence[float]) -> dict[str, float | None]:
    """Fit Δgold = d(α − β·d) to a best-of-n curve; `alpha`, `beta` (None if under-determined) and `r2`."""
    return _fit(kl, gold, np.square)


def fit_rl(kl: Sequence[float], gold: Sequence[float]) -> dict[str, float | None]:
    """Fit Δgold = d(α − β·log d) to an RL curve; `alpha`, `beta` (None if under-determined) and `r2`."""
    return _fit(kl, gold, lambda d: d * np.log(d, out=np.zeros_like(d), where=d > 0))
