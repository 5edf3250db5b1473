"""The maths behind the distribution figures: PCA, prompt-removal modes, projections on the reward
direction w and a Gaussianity test of chosen − rejected differences (numpy, scipy, scikit-learn only).

Notation: C, R, P are [N, d] representations of the chosen response, the rejected response and the
prompt alone of N training pairs (rows aligned); X is any [n, d] block of representations.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.decomposition import PCA

GAUSSIAN_ALPHA = 0.01
GAUSSIAN_MAX_COMPONENTS = 10
GAUSSIAN_MIN_ROWS = 20  # scipy's normaltest is unreliable below this


def pca(X: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(projected [N, k], components [k, d], explained_variance_ratio [k]) of a full-SVD PCA of X."""
    model = PCA(n_components=k, svd_solver="full", random_state=seed).fit(np.asarray(X, dtype=np.float64))
    return model.transform(X), model.components_, model.explained_variance_ratio_


def orient(projected: np.ndarray, components: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip each principal axis whose projection of w is negative (PCA signs are arbitrary)."""
    signs = np.where(components @ w < 0, -1.0, 1.0)
    return projected * signs, components * signs[:, None]


def w_arrow(components: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The unit reward direction w/‖w‖ in the coordinates of the principal axes (cosines with them)."""
    return components @ (w / np.linalg.norm(w))


def pair_centred(C: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Subtract each pair's mean (c + r)/2 from both rows: (c − r)/2 and (r − c)/2."""
    centre = (C + R) / 2
    return C - centre, R - centre


def prompt_subtracted(X: np.ndarray, P: np.ndarray) -> np.ndarray:
    """f(x, y) − f(x): the response representation minus its prompt's."""
    return X - P


def residualized(X: np.ndarray, P: np.ndarray, k: int) -> np.ndarray:
    """X with its projection on the top-k right-singular subspace of the centred prompts P removed."""
    _, _, vt = np.linalg.svd(P - P.mean(axis=0), full_matrices=False)
    basis = vt[:k]
    return X - (X @ basis.T) @ basis


def regressed(X: np.ndarray, P: np.ndarray) -> np.ndarray:
    """The residual of the least-squares regression of X on [P, 1] (every column of X separately)."""
    A = np.hstack([P, np.ones((P.shape[0], 1))])
    coef, *_ = np.linalg.lstsq(A, X, rcond=None)
    return X - A @ coef


def prompt_r2(P: np.ndarray, *blocks: np.ndarray) -> float:
    """Share of the variance of the blocks (e.g. chosen and rejected, [N] or [N, d], rows aligned with P)
    explained by least-squares regressions of each block on [P, 1] (R², pooled over blocks and columns).

    Each block gets its own regression, so differences between blocks are not counted. Even
    unrelated data reach about `chance_r2(N, p)` in-sample.
    """
    residual = total = 0.0
    for X in blocks:
        X = X.reshape(X.shape[0], -1)
        residual += float(np.sum(regressed(X, P) ** 2))
        total += float(np.sum((X - X.mean(axis=0)) ** 2))
    return 1.0 - residual / total if total > 0 else 0.0


def chance_r2(n: int, p: int) -> float:
    """Expected in-sample R² of n rows of noise regressed on p random regressors and an intercept (1 once
    p + 1 ≥ n: the fit is then exact whatever the data)."""
    return min(1.0, p / (n - 1))


def w_projection(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """X·w/‖w‖: each row's coordinate along the unit reward direction."""
    return X @ w / np.linalg.norm(w)


def pooled_std(a: np.ndarray, b: np.ndarray) -> float:
    """Pooled standard deviation of two 1-d samples (each with ddof = 1)."""
    ss = (len(a) - 1) * np.var(a, ddof=1) + (len(b) - 1) * np.var(b, ddof=1)
    return float(np.sqrt(ss / (len(a) + len(b) - 2)))


def d_prime(a: np.ndarray, b: np.ndarray) -> float:
    """Separation d′ = (mean_a − mean_b) / pooled standard deviation of two 1-d samples."""
    return float((np.mean(a) - np.mean(b)) / pooled_std(a, b))


def center_inner_products(C: np.ndarray, R: np.ndarray, w: np.ndarray) -> np.ndarray:
    """⟨(c + r)/2, w⟩ per pair: where each pair sits along the (unnormalised) reward direction."""
    return (C + R) / 2 @ w


def mardia(Y: np.ndarray) -> dict[str, float]:
    """Mardia's multivariate skewness and kurtosis tests of the rows of Y [n, k] (n > k).

    b₁ = Σᵢⱼ (zᵢ·zⱼ)³ / n², computed as ‖Σᵢ zᵢ⊗zᵢ⊗zᵢ‖²_F / n² in O(n k³), and b₂ = Σᵢ ‖zᵢ‖⁴ / n, with
    zᵢ the rows whitened by the maximum-likelihood covariance; n·b₁/6 ~ χ²(k(k+1)(k+2)/6) and
    (b₂ − k(k+2)) / √(8k(k+2)/n) ~ N(0, 1) under normality.
    """
    n, k = Y.shape
    centred = Y - Y.mean(axis=0)
    chol = np.linalg.cholesky(centred.T @ centred / n)
    Z = np.linalg.solve(chol, centred.T).T
    third = np.einsum("ia,ib,ic->abc", Z, Z, Z)
    b1 = float(np.sum(third**2)) / n**2
    b2 = float(np.mean(np.sum(Z**2, axis=1) ** 2))
    skew_stat, df = n * b1 / 6, k * (k + 1) * (k + 2) / 6
    kurt_stat = (b2 - k * (k + 2)) / np.sqrt(8 * k * (k + 2) / n)
    return {
        "skewness": b1,
        "skewness_statistic": float(skew_stat),
        "skewness_df": float(df),
        "skewness_p": float(stats.chi2.sf(skew_stat, df)),
        "kurtosis": b2,
        "kurtosis_statistic": float(kurt_stat),
        "kurtosis_p": float(2 * stats.norm.sf(abs(kurt_stat))),
    }


def difference_gaussian_test(D: np.ndarray) -> dict[str, object]:
    """Is D (chosen − rejected, [n, d]) Gaussian? Mardia's tests on its top-k PCA scores (k ≤ 10).

    Also gives D'Agostino–Pearson `scipy.stats.normaltest` p-values per component, which catch what
    Mardia's omnibus statistics dilute (one bimodal direction among many). `gaussian` is True when none
    of the k + 2 tests rejects at α = 0.01 with a Bonferroni correction (every p ≥ α / (k + 2)).
    """
    n, d = D.shape
    if n < GAUSSIAN_MIN_ROWS:
        raise ValueError(f"a Gaussianity test needs at least {GAUSSIAN_MIN_ROWS} differences, got {n}")
    k = min(GAUSSIAN_MAX_COMPONENTS, d, n // 2)
    scores, _, ratio = pca(D, k, 0)  # full SVD: no randomness
    result = mardia(scores)
    normal = stats.normaltest(scores, axis=0)
    return {
        "test": f"Mardia skewness (chi2) and kurtosis (normal) and per-component D'Agostino-Pearson on the top {k} "
        f"PCA components, Bonferroni over the {k + 2} tests",
        "n": n,
        "k": k,
        "alpha": GAUSSIAN_ALPHA,
        "explained_variance_ratio": ratio.tolist(),
        **result,
        "component_normaltest_statistic": normal.statistic.tolist(),
        "component_normaltest_p": normal.pvalue.tolist(),
        "gaussian": bool(min(result["skewness_p"], result["kurtosis_p"], *normal.pvalue) >= GAUSSIAN_ALPHA / (k + 2)),
    }
