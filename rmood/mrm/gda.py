"""Streaming Gaussian discriminant analysis (GDA) behind the Mahalanobis reward model.

Chosen and rejected representations are two Gaussians with a shared covariance, N(μ₊, Σ) and
N(μ₋, Σ). Σ is the pooled within-class covariance shrunk as `sklearn.covariance.LedoitWolf
(assume_centered=True)` shrinks `vstack(C − μ₊, R − μ₋)`, computed here in one pass over chunks of
memory-mapped arrays, so N×d larger than RAM is fine. The reward R(f) = weightᵀf + bias is the
log-odds that f is a chosen response.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from sklearn.exceptions import NotFittedError

from rmood.io import DataError, read_npy, read_npz, write_npz

GDA_KEYS = ("mu_pos", "mu_neg", "covariance", "precision", "weight", "bias", "shrinkage", "n_pos", "n_neg")
CLASS_NAMES = ("rejected", "chosen")  # indexed by label


@dataclass
class _Moments:
    """Sufficient statistics of one class, taken about `shift` (its first chunk's mean) in float64.

    With y = x − shift and q = ‖y‖²: n, s1 = Σy, s2 = Σyyᵀ, sq = Σq·y, q2 = Σq². They give the
    centred scatter and Σ‖x − μ‖⁴ (what Ledoit–Wolf needs) without catastrophic cancellation.
    """

    shift: np.ndarray
    n: int = 0
    s1: np.ndarray = field(init=False)
    s2: np.ndarray = field(init=False)
    sq: np.ndarray = field(init=False)
    q2: float = 0.0

    def __post_init__(self) -> None:
        d = self.shift.shape[0]
        self.s1, self.s2, self.sq = np.zeros(d), np.zeros((d, d)), np.zeros(d)

    def update(self, x: np.ndarray) -> None:
        y = np.subtract(x, self.shift, dtype=np.float64)
        q = np.einsum("ij,ij->i", y, y)
        self.n += y.shape[0]
        self.s1 += y.sum(axis=0)
        self.s2 += y.T @ y
        self.sq += q @ y
        self.q2 += float(q @ q)

    def mean(self) -> np.ndarray:
        return self.shift + self.s1 / self.n

    def scatter(self) -> np.ndarray:
        """Σ(x − μ)(x − μ)ᵀ."""
        c = self.s1 / self.n
        return self.s2 - self.n * np.outer(c, c)

    def fourth_moment(self) -> float:
        """Σ‖x − μ‖⁴, expanded in the moments about the shift (c = μ − shift, l = yᵀc)."""
        c = self.s1 / self.n
        cc = float(c @ c)
        sum_q, sum_l = float(np.trace(self.s2)), float(self.s1 @ c)
        sum_l2, sum_ql = float(c @ self.s2 @ c), float(self.sq @ c)
        return self.q2 + 4 * sum_l2 + self.n * cc**2 - 4 * sum_ql + 2 * cc * sum_q - 4 * cc * sum_l


def ledoit_wolf_from_moments(scatter: np.ndarray, fourth: float, n: int) -> tuple[np.ndarray, float]:
    """Shrunk covariance and shrinkage from Σxxᵀ and Σ‖x‖⁴ of n centred rows, as in scikit-learn.

    Same formula as `sklearn.covariance.ledoit_wolf_shrinkage(X, assume_centered=True)`, where
    `beta_` = Σᵢ‖xᵢ‖⁴ (the sum of all entries of X²ᵀX²) and `delta_` = ‖XᵀX/n‖²_F.
    """
    d = scatter.shape[0]
    emp_cov = scatter / n
    if d == 1:
        return emp_cov, 0.0
    trace = float(np.trace(emp_cov))
    mu = trace / d
    delta_ = float(np.sum(emp_cov**2))
    beta = (fourth / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * trace + d * mu**2) / d
    beta = min(beta, delta)
    shrinkage = 0.0 if beta <= 0 else beta / delta
    shrunk = (1.0 - shrinkage) * emp_cov
    shrunk.flat[:: d + 1] += shrinkage * mu
    return shrunk, shrinkage


class StreamingGDA:
    """GDA with a shared Ledoit–Wolf covariance, fitted from chunks in one pass.

    Feed rows with `partial_fit(chunk, label)` (label 1 = chosen, 0 = rejected), then call
    `finalize()`; or call `fit_arrays(chosen, rejected, chunk_size)`. Rows of a class are numbered in
    the order they arrive, so error messages give file rows when a file is streamed in order.
    """

    mu_pos_: np.ndarray
    mu_neg_: np.ndarray
    covariance_: np.ndarray
    precision_: np.ndarray
    weight_: np.ndarray
    bias_: float
    shrinkage_: float
    n_pos_: int
    n_neg_: int

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._moments: list[_Moments | None] = [None, None]  # indexed by label
        self._sources = list(CLASS_NAMES)  # what errors call each class
        self._chol: np.ndarray | None = None

    def partial_fit(self, chunk: np.ndarray, label: int, source: str | None = None) -> StreamingGDA:
        """Add rows of class `label` (1 = chosen, 0 = rejected); `source` names them in errors."""
        if label not in (0, 1):
            raise ValueError(f"label must be 1 (chosen) or 0 (rejected), got {label!r}")
        source = self._sources[label] = source or CLASS_NAMES[label]
        chunk = np.asarray(chunk)
        _check_array_meta(chunk, source)
        moments = self._moments[label]
        width = next((m.shift.shape[0] for m in self._moments if m is not None), chunk.shape[1])
        if chunk.shape[1] != width:
            raise DataError(f"{source}: width {chunk.shape[1]} differs from the {width} features seen so far")
        if chunk.shape[0] == 0:
            return self
        bad = ~np.isfinite(chunk).all(axis=1)
        if bad.any():
            row = (moments.n if moments else 0) + int(np.argmax(bad))
            raise DataError(f"{source}: non-finite value in row {row}")
        if moments is None:
            moments = self._moments[label] = _Moments(chunk.mean(axis=0, dtype=np.float64))
        moments.update(chunk)
        return self

    def fit_arrays(
        self,
        chosen: np.ndarray,
        rejected: np.ndarray,
        chunk_size: int = 8192,
        names: tuple[str, str] = ("chosen", "rejected"),
    ) -> StreamingGDA:
        """Fit afresh from two (n, d) arrays (memory-mapped is fine), `chunk_size` rows at a time."""
        if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        for array, name in zip((chosen, rejected), names):
            _check_array_meta(array, name)
            if array.shape[0] == 0:
                raise DataError(f"{name}: no rows (an empty class)")
        if chosen.shape[1] != rejected.shape[1]:
            raise DataError(
                f"{names[0]} has {chosen.shape[1]} features but {names[1]} has {rejected.shape[1]}: widths differ"
            )
        self._reset()
        for array, name, label in zip((chosen, rejected), names, (1, 0)):
            for start in range(0, array.shape[0], chunk_size):
                self.partial_fit(array[start : start + chunk_size], label, source=name)
        return self.finalize()

    def finalize(self) -> StreamingGDA:
        """Compute the learned attributes from the statistics accumulated so far."""
        neg, pos = self._moments
        for label in (1, 0):
            if self._moments[label] is None:
                raise DataError(f"{self._sources[label]}: no rows (an empty class)")
        n = pos.n + neg.n
        d = pos.shift.shape[0]
        scatter = pos.scatter() + neg.scatter()
        scatter = (scatter + scatter.T) / 2
        covariance, shrinkage = ledoit_wolf_from_moments(scatter, pos.fourth_moment() + neg.fourth_moment(), n)
        what = f"the covariance of {self._sources[1]} and {self._sources[0]} (n={n}, d={d}, shrinkage={shrinkage:.3g})"
        chol = _cholesky(covariance, what)
        self.mu_pos_, self.mu_neg_ = pos.mean(), neg.mean()
        self.covariance_, self.shrinkage_ = covariance, float(shrinkage)
        self.precision_ = scipy.linalg.cho_solve((chol, True), np.eye(d))
        self.precision_ = (self.precision_ + self.precision_.T) / 2
        self.weight_ = scipy.linalg.cho_solve((chol, True), self.mu_pos_ - self.mu_neg_)
        self.bias_ = float(-0.5 * (self.mu_pos_ + self.mu_neg_) @ self.weight_ + np.log(pos.n / neg.n))
        self.n_pos_, self.n_neg_ = pos.n, neg.n
        self._chol = chol
        return self

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        """Log-odds that each row of `features` is a chosen response: features @ weight + bias."""
        return self._features(features) @ self.weight_ + self.bias_

    def mahalanobis(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row to the nearer class: min_k sqrt((f − μ_k)ᵀ Σ⁻¹ (f − μ_k))."""
        f = self._features(features)
        distances = [
            np.linalg.norm(scipy.linalg.solve_triangular(self._chol, (f - mu).T, lower=True), axis=0)
            for mu in (self.mu_pos_, self.mu_neg_)
        ]
        return np.minimum(*distances).reshape(f.shape[:-1])

    def parameters(self) -> dict[str, np.ndarray]:
        """The learned parameters under the npz keys of the GDA contract, all float64."""
        self._check_fitted()
        return {key: np.asarray(getattr(self, f"{key}_"), dtype=np.float64) for key in GDA_KEYS}

    def _check_fitted(self) -> None:
        if self._chol is None:
            raise NotFittedError("StreamingGDA is not fitted yet: call finalize() or fit_arrays() first")

    def _features(self, features: np.ndarray) -> np.ndarray:
        self._check_fitted()
        f = np.asarray(features, dtype=np.float64)
        d = self.weight_.shape[0]
        if f.ndim not in (1, 2) or f.shape[-1] != d:
            raise ValueError(f"features must have shape (n, {d}) or ({d},), got {f.shape}")
        return f


def _check_array_meta(array: np.ndarray, name: str) -> None:
    """Refuse anything but a 2-D real numeric array with at least one column."""
    if array.ndim != 2:
        raise DataError(f"{name}: expected a 2-D array (rows × features), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{name}: expected real numbers, got dtype {array.dtype}")
    if array.shape[1] == 0:
        raise DataError(f"{name}: no features (width 0)")


def _cholesky(matrix: np.ndarray, what: str) -> np.ndarray:
    """Lower Cholesky factor; a singular (or numerically singular) matrix is a clear error."""
    reason = f"{what} is singular: features are constant or linearly dependent and shrinkage does not fix it"
    try:
        chol = scipy.linalg.cholesky(matrix, lower=True)
    except np.linalg.LinAlgError:
        raise DataError(reason) from None
    diagonal = np.diag(chol)
    if diagonal.min() ** 2 <= matrix.shape[0] * np.finfo(np.float64).eps * diagonal.max() ** 2:
        raise DataError(reason)
    return chol


def fit_gda(chosen: str | os.PathLike, rejected: str | os.PathLike, out: str | os.PathLike, chunk_size: int) -> None:
    """Fit GDA on chosen/rejected representation .npy files, streaming; write the contract npz atomically."""
    names = (str(chosen), str(rejected))
    gda = StreamingGDA().fit_arrays(read_npy(chosen, "r"), read_npy(rejected, "r"), chunk_size, names=names)
    write_npz(out, gda.parameters())
    print(
        f"gda: n={gda.n_pos_}+{gda.n_neg_} d={gda.weight_.shape[0]} shrinkage={gda.shrinkage_:.4g} "
        f"|weight|={np.linalg.norm(gda.weight_):.4g} -> {out}"
    )


def load_gda(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a GDA npz (no pickles); every contract key must be present."""
    return read_npz(path, GDA_KEYS, "GDA")
