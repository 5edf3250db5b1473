"""GDA: streamed statistics match scikit-learn's Ledoit–Wolf and a direct numpy fit, the reward is the
two-Gaussian log-odds, and bad input is refused with the file and row."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal
from sklearn.covariance import LedoitWolf
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from rmood.io import DataError
from rmood.mrm.gda import GDA_KEYS, StreamingGDA, fit_gda, gda_parameters, load_gda

TOL = 1e-8


def rel(actual: np.ndarray | float, expected: np.ndarray | float) -> float:
    """Largest absolute difference relative to the largest expected magnitude."""
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(np.asarray(actual) - expected)) / max(np.max(np.abs(expected)), 1e-300))


def write_pair(folder: Path, chosen: np.ndarray, rejected: np.ndarray) -> tuple[Path, Path]:
    paths = folder / "chosen.npy", folder / "rejected.npy"
    np.save(paths[0], chosen)
    np.save(paths[1], rejected)
    return paths


def correlated(rng: np.random.Generator, n: int, d: int, shift: float) -> np.ndarray:
    """float32 rows with a non-trivial covariance, centred near `shift`."""
    mixing = rng.normal(size=(d, d)) / math.sqrt(d) + np.eye(d)
    return (rng.normal(size=(n, d)) @ mixing + shift + rng.normal(size=d)).astype(np.float32)


@pytest.mark.parametrize(
    "n_pos, n_neg, d, chunk_size, offset",
    [
        (300, 200, 6, 10_000, 0.0),  # a single chunk
        (1000, 733, 12, 37, 0.0),  # the chunk size divides neither class
        (500, 400, 12, 64, 1e3),  # |μ| ≫ σ: raw moments would lose ~1e-4 here, shifted ones do not
        (400, 300, 1, 50, 0.0),  # one feature: scikit-learn does not shrink
        (40, 30, 50, 16, 0.0),  # n < d: only the shrinkage makes Σ invertible
    ],
)
def test_fit_gda_matches_sklearn_and_numpy(tmp_path, n_pos, n_neg, d, chunk_size, offset):
    rng = np.random.default_rng(n_pos + d)
    chosen, rejected = correlated(rng, n_pos, d, offset), correlated(rng, n_neg, d, offset)
    out = tmp_path / "gda_parameters.npz"
    fit_gda(*write_pair(tmp_path, chosen, rejected), out, chunk_size)

    with np.load(out, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(GDA_KEYS)
        params = {key: data[key] for key in data.files}
    assert all(value.dtype == np.float64 for value in params.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chosen.npy", "gda_parameters.npz", "rejected.npy"]

    c, r = chosen.astype(np.float64), rejected.astype(np.float64)
    mu_pos, mu_neg = c.mean(axis=0), r.mean(axis=0)
    lw = LedoitWolf(assume_centered=True).fit(np.vstack([c - mu_pos, r - mu_neg]))
    weight = np.linalg.solve(lw.covariance_, mu_pos - mu_neg)
    expected = {
        "mu_pos": mu_pos,
        "mu_neg": mu_neg,
        "covariance": lw.covariance_,
        "precision": np.linalg.solve(lw.covariance_, np.eye(d)),
        "weight": weight,
        "bias": -0.5 * (mu_pos + mu_neg) @ weight + math.log(n_pos / n_neg),
        "n_pos": n_pos,
        "n_neg": n_neg,
    }
    for key, value in expected.items():
        assert params[key].shape == np.shape(value), key
        assert rel(params[key], value) <= TOL, key
    assert abs(params["shrinkage"] - lw.shrinkage_) <= TOL * max(lw.shrinkage_, 1e-3)
    assert (params["shrinkage"] > 0) == (d > 1)
    loaded = load_gda(out)
    assert loaded.keys() == set(GDA_KEYS) and all(np.array_equal(loaded[key], params[key]) for key in GDA_KEYS)


def fit(chosen: np.ndarray, rejected: np.ndarray, chunk_size: int = 8192) -> StreamingGDA:
    """`StreamingGDA.fit` on the two classes stacked (label 1 = chosen)."""
    labels = np.r_[np.ones(len(chosen), int), np.zeros(len(rejected), int)]
    return StreamingGDA(chunk_size=chunk_size).fit(np.vstack((chosen, rejected)), labels)


def test_chunks_in_any_order_give_the_same_fit():
    rng = np.random.default_rng(1)
    chosen, rejected = correlated(rng, 250, 5, 3.0), correlated(rng, 180, 5, 3.0)
    whole = gda_parameters(fit(chosen, rejected, chunk_size=1000))
    streamed = StreamingGDA()
    for start in range(0, 250, 40):  # interleave the classes, uneven chunk sizes
        streamed.partial_fit(rejected[start // 2 : start // 2 + 20], 0)
        streamed.partial_fit(chosen[start : start + 40], 1)
    streamed.partial_fit(rejected[140:], 0)
    for key, value in gda_parameters(streamed).items():
        assert rel(value, whole[key]) <= 1e-10, key
    mixed = StreamingGDA()  # labelled rows of both classes in one chunk
    rows = np.vstack((chosen, rejected))
    labels = np.r_[np.ones(250, int), np.zeros(180, int)]
    order = rng.permutation(len(rows))
    for start in range(0, len(rows), 64):
        mixed.partial_fit(rows[order[start : start + 64]], labels[order[start : start + 64]])
    for key, value in gda_parameters(mixed).items():
        assert rel(value, whole[key]) <= 1e-10, key


def test_fit_streams_each_class_in_chunks_as_fit_gda_does(tmp_path):
    """`fit(X, y)` and `fit_gda` on the same rows give the same bytes (the same chunks per class)."""
    rng = np.random.default_rng(4)
    chosen, rejected = correlated(rng, 70, 4, 1.0), correlated(rng, 50, 4, 0.0)
    fit_gda(*write_pair(tmp_path, chosen, rejected), tmp_path / "gda.npz", 16)
    expected = load_gda(tmp_path / "gda.npz")
    shuffled = rng.permutation(120)  # classes interleaved: each class keeps its own row order
    X = np.vstack((chosen, rejected))[shuffled]
    y = np.r_[np.ones(70, int), np.zeros(50, int)][shuffled]
    order = np.argsort(shuffled, kind="stable")
    X, y = X[order], y[order]
    params = gda_parameters(StreamingGDA(chunk_size=16).fit(X, y))
    assert all(np.array_equal(params[key], expected[key]) for key in GDA_KEYS)


def test_an_estimator_in_scikit_learn_style():
    gda = StreamingGDA(chunk_size=32)
    assert gda.get_params() == {"chunk_size": 32} and repr(gda) == "StreamingGDA(chunk_size=32)"
    assert clone(gda).get_params() == {"chunk_size": 32}
    rng = np.random.default_rng(5)
    chosen, rejected = correlated(rng, 60, 3, 0.0), correlated(rng, 40, 3, 1.0)
    fitted = fit(chosen, rejected, 32)
    assert fitted.classes_.tolist() == [0, 1] and fitted.class_count_.tolist() == [40, 60]
    assert fitted.means_.shape == (2, 3) and fitted.coef_.shape == (1, 3) and fitted.intercept_.shape == (1,)
    assert fitted.n_features_in_ == 3
    np.testing.assert_allclose(fitted.coef_[0], fitted.precision_ @ (fitted.means_[1] - fitted.means_[0]), rtol=1e-9)
    refitted = fit(rejected, chosen, 32).fit(np.vstack((chosen, rejected)), np.r_[np.ones(60, int), np.zeros(40, int)])
    assert all(np.array_equal(value, gda_parameters(fitted)[key]) for key, value in gda_parameters(refitted).items())


def test_log_odds_is_the_two_gaussian_posterior():
    rng = np.random.default_rng(2)
    d, n, prior = 4, 60_000, 0.3
    mu_pos, mu_neg = rng.normal(size=d), rng.normal(size=d)
    mixing = rng.normal(size=(d, d))
    sigma = mixing @ mixing.T + np.eye(d)
    is_pos = rng.random(n) < prior
    x = np.where(is_pos[:, None], mu_pos, mu_neg) + rng.normal(size=(n, d)) @ np.linalg.cholesky(sigma).T
    gda = StreamingGDA(chunk_size=4096).fit(x, is_pos.astype(int))

    probe = np.vstack([rng.multivariate_normal(mu, sigma, size=200) for mu in (mu_pos, mu_neg)])
    logits = gda.decision_function(probe)

    def log_odds(pos: np.ndarray, neg: np.ndarray, cov: np.ndarray, log_prior: float) -> np.ndarray:
        return multivariate_normal(pos, cov).logpdf(probe) - multivariate_normal(neg, cov).logpdf(probe) + log_prior

    estimated = log_odds(gda.means_[1], gda.means_[0], gda.covariance_, math.log(gda.class_count_[1] / gda.class_count_[0]))
    np.testing.assert_allclose(logits, estimated, rtol=1e-9, atol=1e-9)
    true = log_odds(mu_pos, mu_neg, sigma, math.log(prior / (1 - prior)))
    assert np.mean(np.abs(logits - true)) < 0.05
    assert np.mean((logits > 0) == (true > 0)) > 0.97
    assert gda.decision_function(probe[0]) == pytest.approx(logits[0])


def test_mahalanobis_is_the_distance_to_the_nearer_class():
    rng = np.random.default_rng(3)
    gda = fit(correlated(rng, 300, 3, 0.0), correlated(rng, 200, 3, 2.0), chunk_size=64)
    probe = rng.normal(size=(20, 3)) * 3
    expected = [
        min(math.sqrt((f - mu) @ gda.precision_ @ (f - mu)) for mu in gda.means_) for f in probe
    ]
    np.testing.assert_allclose(gda.mahalanobis(probe), expected, rtol=1e-10)
    assert gda.mahalanobis(gda.means_[0]) == pytest.approx(0.0, abs=1e-12)


def test_use_before_fit_and_bad_arguments():
    with pytest.raises(NotFittedError):
        StreamingGDA().decision_function(np.zeros((1, 3)))
    one_class = StreamingGDA().partial_fit(np.zeros((2, 3)), 1)  # not fitted until both classes have rows
    with pytest.raises(NotFittedError):
        one_class.decision_function(np.zeros((1, 3)))
    with pytest.raises(DataError, match="rejected: no rows"):
        StreamingGDA().fit(np.zeros((2, 3)), np.ones(2, int))
    with pytest.raises(ValueError, match="chunk_size"):
        StreamingGDA(chunk_size=0).fit(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="label"):
        StreamingGDA().partial_fit(np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="labels"):
        StreamingGDA().fit(np.zeros((2, 3)), np.array([0, 2]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        StreamingGDA().fit(np.zeros((2, 3)), np.array([0, 1, 1]))
    gda = fit(np.eye(3), -np.eye(3) + 0.5, chunk_size=2)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        gda.decision_function(np.zeros((2, 4)))


# --- refused input: the message names the file (and row) -------------------------------------------


def refused(tmp_path: Path, chosen: np.ndarray, rejected: np.ndarray, chunk_size: int = 8) -> str:
    out = tmp_path / "out" / "gda_parameters.npz"
    with pytest.raises(DataError) as err:
        fit_gda(*write_pair(tmp_path, chosen, rejected), out, chunk_size)
    assert not out.parent.exists() or not any(out.parent.iterdir()), "a failed fit left files behind"
    return str(err.value)


def test_empty_class_is_refused(tmp_path):
    message = refused(tmp_path, np.ones((5, 3), np.float32), np.zeros((0, 3), np.float32))
    assert "rejected.npy" in message and "empty class" in message


def test_nan_is_refused_with_file_and_row(tmp_path):
    rejected = np.ones((50, 3), np.float32)
    rejected[23, 1] = np.nan
    rejected[40, 0] = np.inf
    message = refused(tmp_path, np.ones((5, 3), np.float32), rejected, chunk_size=8)
    assert "rejected.npy" in message and "row 23" in message


def test_width_mismatch_is_refused(tmp_path):
    message = refused(tmp_path, np.ones((5, 3), np.float32), np.ones((5, 4), np.float32))
    assert "chosen.npy" in message and "rejected.npy" in message and "widths differ" in message


def test_non_2d_array_is_refused(tmp_path):
    message = refused(tmp_path, np.ones(5, np.float32), np.ones((5, 4), np.float32))
    assert "chosen.npy" in message and "2-D" in message


@pytest.mark.parametrize("d", [1, 4])
def test_singular_covariance_is_refused(tmp_path, d):
    constant = np.ones((6, d), np.float32)  # no within-class spread: Σ = 0 and shrinkage 0
    message = refused(tmp_path, constant, 2 * constant)
    assert "singular" in message and "chosen.npy" in message


@given(
    data=st.data(),
    n_rows=st.integers(1, 30),
    d=st.integers(1, 4),
    chunk_size=st.integers(1, 40),
    label=st.sampled_from([0, 1]),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
)
@settings(max_examples=60, deadline=None)
def test_first_non_finite_row_is_reported(data, n_rows, d, chunk_size, label, bad):
    rows = data.draw(st.sets(st.integers(0, n_rows - 1), min_size=1, max_size=3))
    arrays = [np.arange(n_rows * d, dtype=np.float64).reshape(n_rows, d) for _ in range(2)]
    for row in rows:
        arrays[label][row, data.draw(st.integers(0, d - 1))] = bad
    name = ("rejected", "chosen")[label]
    with pytest.raises(DataError, match=rf"^{name}: non-finite value in row {min(rows)}$"):
        fit(arrays[1], arrays[0], chunk_size)


def test_load_gda_refuses_missing_keys(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, **{key: np.zeros(1) for key in GDA_KEYS if key not in ("bias", "weight")})
    with pytest.raises(DataError, match=r"partial\.npz: missing GDA key\(s\) weight, bias"):
        load_gda(path)
    with pytest.raises(DataError, match="no such file"):
        load_gda(tmp_path / "absent.npz")


def test_fit_gda_writes_the_same_bytes_every_time(tmp_path):
    """np.savez stamps every member with the zip epoch (1980-01-01), not the clock: reruns are byte-identical."""
    import time
    import zipfile

    rng = np.random.default_rng(0)
    paths = write_pair(tmp_path, correlated(rng, 40, 5, 0.0), correlated(rng, 30, 5, 0.5))
    fit_gda(*paths, tmp_path / "first.npz", 16)
    time.sleep(2.1)  # zip times have a 2 s resolution
    fit_gda(*paths, tmp_path / "second.npz", 16)
    assert (tmp_path / "first.npz").read_bytes() == (tmp_path / "second.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "first.npz") as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_a_refused_fit_keeps_the_previous_parameters(tmp_path):
    rng = np.random.default_rng(1)
    out = tmp_path / "gda_parameters.npz"
    fit_gda(*write_pair(tmp_path, correlated(rng, 20, 3, 0.0), correlated(rng, 20, 3, 1.0)), out, 8)
    before = out.read_bytes()
    bad = correlated(rng, 20, 3, 0.0)
    bad[7, 2] = np.nan
    with pytest.raises(DataError, match=r"chosen\.npy: non-finite value in row 7"):
        fit_gda(*write_pair(tmp_path, bad, correlated(rng, 20, 3, 1.0)), out, 8)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "chosen.npy", "gda_parameters.npz", "rejected.npy"
    ]


@given(widths=st.lists(st.integers(1, 5), min_size=2, max_size=6), labels=st.data())
@settings(max_examples=40, deadline=None)
def test_any_width_change_between_chunks_is_refused(widths, labels):
    gda = StreamingGDA()
    for width in widths:
        label = labels.draw(st.sampled_from([0, 1]))
        chunk = np.arange(3 * width, dtype=np.float64).reshape(3, width)
        if width != widths[0]:
            with pytest.raises(DataError, match=rf"width {width} differs from the {widths[0]} features seen so far"):
                gda.partial_fit(chunk, label)
            return
        gda.partial_fit(chunk, label)
