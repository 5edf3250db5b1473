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
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

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


class StreamingGDA(BaseEstimator):
    """Gaussian discriminant analysis with a shared Ledoit–Wolf covariance, fitted in one pass over chunks.

    The two classes (label 1 = chosen, 0 = rejected) are Gaussians N(μ₁, Σ) and N(μ₀, Σ) with a shared
    covariance Σ: the pooled within-class covariance, shrunk as `sklearn.covariance.LedoitWolf
    (assume_centered=True)` shrinks the rows centred on their class mean. The decision function
    coefᵀx + intercept is the log-odds that x is a chosen response. Only sufficient statistics are kept
    (d² floats per class), so rows can arrive in chunks of any size and in any order.

    Parameters
    ----------
    chunk_size : int, default=8192
        Rows per class that `fit` adds at a time; bounds the float64 copy made of each chunk.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The labels, ``[0, 1]`` (rejected, chosen).
    means_ : ndarray of shape (2, n_features)
        Class means μ₀ (rejected) and μ₁ (chosen), float64.
    covariance_ : ndarray of shape (n_features, n_features)
        Shared covariance Σ after Ledoit–Wolf shrinkage.
    precision_ : ndarray of shape (n_features, n_features)
        Σ⁻¹ (symmetrised).
    shrinkage_ : float
        The Ledoit–Wolf shrinkage coefficient (0 for a single feature, as in scikit-learn).
    coef_ : ndarray of shape (1, n_features)
        Σ⁻¹(μ₁ − μ₀).
    intercept_ : ndarray of shape (1,)
        −½(μ₁ + μ₀)ᵀ coef + log(n₁ / n₀).
    class_count_ : ndarray of shape (2,)
        Rows seen per class, in `classes_` order.
    n_features_in_ : int
        Width of the rows.

    See Also
    --------
    sklearn.discriminant_analysis.LinearDiscriminantAnalysis : the same model fitted in memory
        (``solver="lsqr", shrinkage="auto"`` shrinks the covariance by Ledoit–Wolf, scaled differently).
    sklearn.covariance.LedoitWolf : the shrinkage estimator applied here to the pooled, class-centred rows.
    fit_gda : fit from the chosen and rejected ``.npy`` files and write the GDA npz.

    Notes
    -----
    Rows of a class are numbered in the order they arrive, so error messages give file rows when a file is
    streamed in order. Statistics are taken about each class's first chunk's mean, so a class mean far from
    0 loses no precision.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack((rng.normal(1, 1, (50, 2)), rng.normal(-1, 1, (50, 2))))
    >>> y = np.r_[np.ones(50, int), np.zeros(50, int)]
    >>> gda = StreamingGDA(chunk_size=16).fit(X, y)
    >>> bool(gda.decision_function([2.0, 2.0]) > 0)
    True
    """

    def __init__(self, chunk_size: int = 8192) -> None:
        self.chunk_size = chunk_size

    def fit(self, X: np.ndarray, y: np.ndarray) -> StreamingGDA:
        """Fit afresh on rows `X` with labels `y`, each class streamed `chunk_size` rows at a time.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Real numbers, all finite.
        y : array-like of shape (n_samples,)
            1 (chosen) or 0 (rejected); both classes must occur.

        Returns
        -------
        self : StreamingGDA
            The fitted estimator.
        """
        X = np.asarray(X)
        _check_array_meta(X, "X")
        y = _check_labels(y, X.shape[0])
        return self._fit_classes(X[y == 1], X[y == 0], CLASS_NAMES[::-1])

    def partial_fit(self, X: np.ndarray, y: np.ndarray | int, source: str | None = None) -> StreamingGDA:
        """Add the rows `X` to the statistics and, once both classes have rows, update the learned attributes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Real numbers, all finite; the width must match the rows seen so far.
        y : array-like of shape (n_samples,) or int
            1 (chosen) or 0 (rejected) per row, or one label for the whole chunk.
        source : str, optional
            What errors call these rows (e.g. a file name); defaults to the class name.

        Returns
        -------
        self : StreamingGDA
            The estimator, fitted on every row seen so far once both classes have rows.
        """
        X = np.asarray(X)
        if np.ndim(y) == 0:
            if y not in (0, 1):
                raise ValueError(f"label must be 1 (chosen) or 0 (rejected), got {y!r}")
            self._add(X, int(y), source)
        else:
            _check_array_meta(X, source or "X")
            y = _check_labels(y, X.shape[0])
            for label in (1, 0):
                if (y == label).any():
                    self._add(X[y == label], label, source)
        if all(m is not None for m in self._statistics()):
            self._update()
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Log-odds that each row of `X` is a chosen response: X @ coef_[0] + intercept_[0].

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_features,)

        Returns
        -------
        ndarray of shape (n_samples,) or scalar
        """
        return self._features(X) @ self.coef_[0] + self.intercept_[0]

    def mahalanobis(self, X: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row to the nearer class mean (`nearest_mahalanobis`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_features,)

        Returns
        -------
        ndarray of shape (n_samples,) or scalar
        """
        return nearest_mahalanobis(self._features(X), self.means_[1], self.means_[0], self.precision_)

    # --- internals ---------------------------------------------------------------------------------

    def _statistics(self) -> list[_Moments | None]:
        """The per-class statistics (indexed by label), created empty on first use."""
        if not hasattr(self, "_moments"):
            self._moments: list[_Moments | None] = [None, None]
            self._sources = list(CLASS_NAMES)  # what errors call each class
        return self._moments

    def _reset(self) -> None:
        """Forget the statistics and the learned attributes."""
        for name in [name for name in vars(self) if name.endswith("_") or name in ("_moments", "_sources")]:
            delattr(self, name)

    def _fit_classes(self, chosen: np.ndarray, rejected: np.ndarray, names: tuple[str, str]) -> StreamingGDA:
        """Fit afresh from the two classes' (n, d) arrays (memory-mapped is fine), `chunk_size` rows at a time;
        `names` (chosen, rejected) name them in errors."""
        chunk_size = self.chunk_size
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
                self._add(array[start : start + chunk_size], label, name)
        return self._update()

    def _add(self, chunk: np.ndarray, label: int, source: str | None) -> None:
        """Add rows of class `label` to its statistics (no attributes updated)."""
        moments = self._statistics()
        source = self._sources[label] = source or CLASS_NAMES[label]
        chunk = np.asarray(chunk)
        _check_array_meta(chunk, source)
        width = next((m.shift.shape[0] for m in moments if m is not None), chunk.shape[1])
        if chunk.shape[1] != width:
            raise DataError(f"{source}: width {chunk.shape[1]} differs from the {width} features seen so far")
        if chunk.shape[0] == 0:
            return
        bad = ~np.isfinite(chunk).all(axis=1)
        if bad.any():
            row = (moments[label].n if moments[label] else 0) + int(np.argmax(bad))
            raise DataError(f"{source}: non-finite value in row {row}")
        if moments[label] is None:
            moments[label] = _Moments(chunk.mean(axis=0, dtype=np.float64))
        moments[label].update(chunk)

    def _update(self) -> StreamingGDA:
        """Compute the learned attributes from the statistics accumulated so far."""
        neg, pos = moments = self._statistics()
        for label in (1, 0):
            if moments[label] is None:
                raise DataError(f"{self._sources[label]}: no rows (an empty class)")
        n = pos.n + neg.n
        d = pos.shift.shape[0]
        scatter = pos.scatter() + neg.scatter()
        scatter = (scatter + scatter.T) / 2
        covariance, shrinkage = ledoit_wolf_from_moments(scatter, pos.fourth_moment() + neg.fourth_moment(), n)
        what = f"the covariance of {self._sources[1]} and {self._sources[0]} (n={n}, d={d}, shrinkage={shrinkage:.3g})"
        chol = _cholesky(covariance, what)
        mu_pos, mu_neg = pos.mean(), neg.mean()
        precision = scipy.linalg.cho_solve((chol, True), np.eye(d))
        weight = scipy.linalg.cho_solve((chol, True), mu_pos - mu_neg)
        bias = float(-0.5 * (mu_pos + mu_neg) @ weight + np.log(pos.n / neg.n))
        self.classes_ = np.array([0, 1])
        self.means_ = np.stack((mu_neg, mu_pos))
        self.covariance_, self.shrinkage_ = covariance, float(shrinkage)
        self.precision_ = (precision + precision.T) / 2
        self.coef_, self.intercept_ = weight[None, :], np.array([bias])
        self.class_count_ = np.array([neg.n, pos.n])
        self.n_features_in_ = d
        return self

    def _features(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "coef_", msg="StreamingGDA is not fitted yet: call fit() or partial_fit() on both classes")
        f = np.asarray(X, dtype=np.float64)
        d = self.n_features_in_
        if f.ndim not in (1, 2) or f.shape[-1] != d:
            raise ValueError(f"features must have shape (n, {d}) or ({d},), got {f.shape}")
        return f


def nearest_mahalanobis(features: np.ndarray, mu_pos: np.ndarray, mu_neg: np.ndarray, precision: np.ndarray
                        ) -> np.ndarray:
    """min over k ∈ {+, −} of sqrt((f − μ_k)ᵀ Σ⁻¹ (f − μ_k)), [...] for features [..., d] (numpy, float64).

    The rich MRM's head computes the same in torch (`rmood.mrm.model.GDAHead.mahalanobis`, float32, on the model's
    device); tests/test_mrm.py pins the two equal.
    """
    diff = np.asarray(features, dtype=np.float64)[..., None, :] - np.stack((mu_pos, mu_neg))
    squared = ((diff @ precision) * diff).sum(-1)
    return np.sqrt(np.clip(squared, 0, None)).min(-1)


def gda_parameters(gda: StreamingGDA) -> dict[str, np.ndarray]:
    """The fitted estimator's parameters under the npz keys of the GDA contract (`GDA_KEYS`), all float64."""
    check_is_fitted(gda, "coef_")
    values = {
        "mu_pos": gda.means_[1], "mu_neg": gda.means_[0], "covariance": gda.covariance_,
        "precision": gda.precision_, "weight": gda.coef_[0], "bias": gda.intercept_[0],
        "shrinkage": gda.shrinkage_, "n_pos": gda.class_count_[1], "n_neg": gda.class_count_[0],
    }
    return {key: np.asarray(values[key], dtype=np.float64) for key in GDA_KEYS}


def _check_labels(y: np.ndarray, n: int) -> np.ndarray:
    """`y` as a 1-D array of n labels, each 0 or 1."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) (one label per row of X), got {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 1 (chosen) or 0 (rejected), got {sorted(set(y.tolist()) - {0, 1})[:3]}")
    return y


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
    gda = StreamingGDA(chunk_size=chunk_size)
    gda._fit_classes(read_npy(chosen, "r"), read_npy(rejected, "r"), (str(chosen), str(rejected)))
    write_npz(out, gda_parameters(gda))
    print(
        f"gda: n={gda.class_count_[1]}+{gda.class_count_[0]} d={gda.n_features_in_} shrinkage={gda.shrinkage_:.4g} "
        f"|weight|={np.linalg.norm(gda.coef_[0]):.4g} -> {out}"
    )


def load_gda(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a GDA npz (no pickles); every contract key must be present."""
    return read_npz(path, GDA_KEYS, "GDA")
