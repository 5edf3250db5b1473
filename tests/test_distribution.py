"""Distribution analysis: the maths on synthetic data with known answers, and every figure step writes a
reproducible PNG with the documented JSON beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rmood.distribution import analysis
from rmood.distribution.visualize import (
    MODES,
    center_plot,
    difference_plot,
    pca_plot,
    prompt_pca_plot,
    tsne_plot,
)
from rmood.io import DataError, read_json, write_jsonl

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N, D, RANK = 400, 24, 3  # pairs, width, rank of the injected prompt component
SHIFT, SIGMA = 2.0, 1.0  # chosen − rejected along w, and the noise


def unit(rng: np.random.Generator, d: int) -> np.ndarray:
    v = rng.normal(size=d)
    return v / np.linalg.norm(v)


def synthetic_pairs(seed: int = 0) -> dict[str, np.ndarray]:
    """f(x, y) = f(x) ± (SHIFT/2)·ŵ + N(0, SIGMA²): a strong low-rank prompt part, a known separation on w."""
    rng = np.random.default_rng(seed)
    w = unit(rng, D)
    P = 4 * rng.normal(size=(N, RANK)) @ rng.normal(size=(RANK, D)) + 0.1 * rng.normal(size=(N, D)) + 2.0
    C = P + SHIFT / 2 * w + SIGMA * rng.normal(size=(N, D))
    R = P - SHIFT / 2 * w + SIGMA * rng.normal(size=(N, D))
    return {"chosen": C, "rejected": R, "message": P, "weight": 3 * w}


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return synthetic_pairs()


@pytest.fixture(scope="module")
def files(arrays, tmp_path_factory) -> dict[str, str]:
    """The synthetic pairs and weight as float32 .npy files, plus three prompts' samples and rewards."""
    folder = tmp_path_factory.mktemp("inputs")
    paths = {}
    for name, array in arrays.items():
        paths[name] = str(folder / f"{name}.npy")
        np.save(paths[name], array.astype(np.float32))
    rng = np.random.default_rng(1)
    w = arrays["weight"].astype(np.float32).astype(np.float64)
    paths["representations"], paths["rewards"] = [], []
    for prompt in ("p-0", "p-1", "p-2"):
        features = (rng.normal(size=(32, D)) + rng.normal(size=D)).astype(np.float32)
        rep, rew = folder / f"representation_{prompt}.npy", folder / f"rewards_{prompt}.jsonl"
        np.save(rep, features)
        write_jsonl(rew, [{"prompt_id": prompt, "sample": k, "reward": float(f @ w) + 0.5}
                          for k, f in enumerate(features.astype(np.float64))])
        paths["representations"].append(str(rep))
        paths["rewards"].append(str(rew))
    return paths


# --- analysis -----------------------------------------------------------------------------------


def test_pca_shapes_are_right_and_deterministic(arrays):
    X = arrays["chosen"]
    projected, components, ratio = analysis.pca(X, 4, seed=0)
    assert projected.shape == (N, 4) and components.shape == (4, D) and ratio.shape == (4,)
    assert np.all(np.diff(ratio) <= 0) and 0 < ratio.sum() <= 1
    np.testing.assert_allclose(components @ components.T, np.eye(4), atol=1e-10)
    again = analysis.pca(X, 4, seed=0)
    for a, b in zip((projected, components, ratio), again):
        np.testing.assert_array_equal(a, b)
    flipped, oriented = analysis.orient(projected, components, arrays["weight"])
    assert np.all(oriented @ arrays["weight"] >= 0)
    np.testing.assert_allclose(np.abs(flipped), np.abs(projected))


def test_w_projection_separates_gaussians_shifted_along_w():
    rng = np.random.default_rng(2)
    w, sigma, shift = 5 * unit(rng, 6), 2.0, 3.0
    C = rng.normal(scale=sigma, size=(20_000, 6)) + shift * w / np.linalg.norm(w)
    R = rng.normal(scale=sigma, size=(20_000, 6))
    a, b = analysis.w_projection(C, w), analysis.w_projection(R, w)
    assert analysis.d_prime(a, b) == pytest.approx(shift / sigma, abs=0.05)
    assert analysis.pooled_std(a, b) == pytest.approx(sigma, rel=0.02)
    np.testing.assert_allclose(analysis.w_projection(np.eye(6), w), w / np.linalg.norm(w))


def test_prompt_modes_remove_the_injected_prompt_component(arrays):
    C, R, P = arrays["chosen"], arrays["rejected"], arrays["message"]
    before = analysis.prompt_r2(P, C, R)
    chance = analysis.chance_r2(N, D)
    assert before > 0.9
    for after in (
        analysis.prompt_r2(P, *analysis.pair_centred(C, R)),
        analysis.prompt_r2(P, analysis.prompt_subtracted(C, P), analysis.prompt_subtracted(R, P)),
        analysis.prompt_r2(P, analysis.residualized(C, P, RANK), analysis.residualized(R, P, RANK)),
        analysis.prompt_r2(P, analysis.regressed(C, P), analysis.regressed(R, P)),
    ):
        assert after < chance + 0.03


def test_prompt_transforms_are_what_they_say(arrays):
    C, R, P = arrays["chosen"], arrays["rejected"], arrays["message"]
    c, r = analysis.pair_centred(C, R)
    np.testing.assert_allclose(c, (C - R) / 2)
    np.testing.assert_allclose(r, -(C - R) / 2)
    np.testing.assert_array_equal(analysis.prompt_subtracted(C, P), C - P)
    _, _, vt = np.linalg.svd(P - P.mean(axis=0))
    np.testing.assert_allclose(analysis.residualized(C, P, 2) @ vt[:2].T, 0, atol=1e-9)
    design = np.hstack([P, np.ones((N, 1))])
    np.testing.assert_allclose(design.T @ analysis.regressed(C, P), 0, atol=1e-7)
    assert analysis.prompt_r2(P, P @ np.ones((D, 2))) == pytest.approx(1.0)


def test_chance_r2_is_the_r2_of_noise():
    rng = np.random.default_rng(3)
    r2 = [analysis.prompt_r2(rng.normal(size=(200, 10)), rng.normal(size=(200, 5))) for _ in range(50)]
    assert np.mean(r2) == pytest.approx(analysis.chance_r2(200, 10), abs=0.01)


def test_mardia_matches_its_definition():
    rng = np.random.default_rng(4)
    Y = rng.normal(size=(150, 3)) @ rng.normal(size=(3, 3)) + rng.exponential(size=(150, 1))
    centred = Y - Y.mean(axis=0)
    G = centred @ np.linalg.inv(centred.T @ centred / 150) @ centred.T
    result = analysis.mardia(Y)
    assert result["skewness"] == pytest.approx(np.sum(G**3) / 150**2, rel=1e-10)
    assert result["kurtosis"] == pytest.approx(np.mean(np.diag(G) ** 2), rel=1e-10)
    assert result["skewness_df"] == 10


def test_gaussian_test_accepts_gaussians_and_rejects_a_mixture():
    rng = np.random.default_rng(5)
    gaussian = rng.normal(size=(2000, 5)) @ rng.normal(size=(5, 5))
    result = analysis.difference_gaussian_test(gaussian)
    assert result["gaussian"] and "Mardia" in result["test"] and result["k"] == 5
    assert len(result["component_normaltest_p"]) == 5
    assert min(result["skewness_p"], result["kurtosis_p"], *result["component_normaltest_p"]) > result["alpha"] / 7
    mixture = rng.normal(size=(2000, 5)) + np.where(rng.random((2000, 1)) < 0.5, -2.0, 2.0) * np.eye(5)[0]
    result = analysis.difference_gaussian_test(mixture)
    assert not result["gaussian"] and result["kurtosis_p"] < 0.05
    assert min(result["component_normaltest_p"]) < 1e-6
    with pytest.raises(ValueError, match="at least 20"):
        analysis.difference_gaussian_test(gaussian[:10])


def test_center_inner_products():
    C, R, w = np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[3.0, 0.0], [2.0, 4.0]]), np.array([1.0, -1.0])
    np.testing.assert_allclose(analysis.center_inner_products(C, R, w), [1.0, -1.0])


# --- steps --------------------------------------------------------------------------------------


def run_steps(files: dict[str, str], folder: Path) -> dict[str, dict]:
    """Every step (pca_plot in every mode) into `folder`; returns the JSON of each by stem."""
    f = files
    outputs = {}

    def out(stem: str) -> tuple[str, str]:
        outputs[stem] = folder / f"{stem}.png", folder / f"{stem}.json"
        return str(outputs[stem][0]), str(outputs[stem][1])

    tsne_plot(f["chosen"], f["rejected"], f["weight"], *out("tsne"), seed=0, pair_centre=False, max_points=60)
    tsne_plot(f["chosen"], f["rejected"], f["weight"], *out("tsne_centred"), seed=0, pair_centre=True, max_points=60)
    for mode in MODES:
        pca_plot(f["chosen"], f["rejected"], f["message"], f["weight"], *out(f"pca_{mode}"), mode=mode, seed=0)
    difference_plot(f["chosen"], f["rejected"], f["weight"], *out("difference"), seed=0)
    center_plot(f["chosen"], f["rejected"], f["weight"], *out("center"))
    prompt_pca_plot(f["representations"], f["rewards"], f["weight"], *out("prompts"), seed=0)
    for png, _ in outputs.values():
        data = png.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) > 10_000
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for pair in outputs.values() for p in pair)
    return {stem: read_json(js) for stem, (_, js) in outputs.items()}


@pytest.fixture(scope="module")
def runs(files, tmp_path_factory) -> tuple[Path, Path, dict[str, dict]]:
    """Two runs of every step into separate folders, and the JSON of the first."""
    first, second = tmp_path_factory.mktemp("run1"), tmp_path_factory.mktemp("run2")
    summaries = run_steps(files, first)
    assert run_steps(files, second) == summaries
    return first, second, summaries


def test_steps_are_byte_reproducible(runs):
    first, second, _ = runs
    for path in sorted(first.iterdir()):
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name


def test_tsne_json(runs, files, tmp_path):
    summary = runs[2]["tsne"]
    assert set(summary) == {"n_pairs", "n_points", "pair_centre", "perplexity", "kl_divergence", "mean_pair_distance",
                            "mean_random_distance"}
    assert summary["n_pairs"] == 60 and summary["n_points"] == 120 and not summary["pair_centre"]
    assert summary["kl_divergence"] > 0 and summary["mean_pair_distance"] > 0
    assert runs[2]["tsne_centred"]["pair_centre"]
    tsne_plot(files["chosen"], files["rejected"], files["weight"], str(tmp_path / "t.png"), str(tmp_path / "t.json"),
              seed=1, pair_centre=False, max_points=60)
    assert read_json(tmp_path / "t.json") != summary  # another seed, another subsample and embedding


def test_pca_json_removes_the_prompt_and_finds_w(runs):
    common = {"mode", "n_pairs", "dim", "explained_variance_ratio", "w_arrow", "prompt_r2_before",
              "prompt_r2_after", "prompt_r2_chance"}
    extra = {"residualize": {"residual_rank"},
             "w_projection": {"d_prime", "mean_chosen", "mean_rejected", "pooled_std", "accuracy"}}
    for mode in MODES:
        summary = runs[2][f"pca_{mode}"]
        assert set(summary) == common | extra.get(mode, set()), mode
        assert summary["mode"] == mode and summary["n_pairs"] == N and summary["dim"] == D
        assert len(summary["explained_variance_ratio"]) == min(10, D) and len(summary["w_arrow"]) == 2
        assert summary["prompt_r2_before"] > 0.9
        if mode != "w_projection":
            assert summary["prompt_r2_after"] < summary["prompt_r2_chance"] + 0.03, mode
    # with the prompt gone, chosen vs rejected (along w) is the main direction left in the pair modes
    assert np.hypot(*runs[2]["pca_pair"]["w_arrow"]) > 0.9
    w_mode = runs[2]["pca_w_projection"]
    assert w_mode["d_prime"] == pytest.approx(
        (w_mode["mean_chosen"] - w_mode["mean_rejected"]) / w_mode["pooled_std"], rel=1e-9
    )
    assert 0.5 < w_mode["accuracy"] < 1


def test_pca_plot_on_gaussians_shifted_along_w_measures_d_prime(tmp_path):
    rng = np.random.default_rng(6)
    w = unit(rng, 4)
    paths = {}
    for name, array in {"chosen": rng.normal(size=(3000, 4)) + 1.5 * w, "rejected": rng.normal(size=(3000, 4)),
                        "message": rng.normal(size=(3000, 4)), "weight": w}.items():
        paths[name] = str(tmp_path / f"{name}.npy")
        np.save(paths[name], array.astype(np.float32))
    pca_plot(paths["chosen"], paths["rejected"], paths["message"], paths["weight"], str(tmp_path / "w.png"),
             str(tmp_path / "w.json"), mode="w_projection", seed=0)
    summary = read_json(tmp_path / "w.json")
    assert summary["d_prime"] == pytest.approx(1.5, abs=0.07)
    assert summary["prompt_r2_before"] < 0.01 and summary["prompt_r2_after"] < 0.01


def test_difference_json(runs, arrays):
    summary = runs[2]["difference"]
    assert set(summary) == {"n_pairs", "explained_variance_ratio", "w_arrow", "margin_mean", "margin_std",
                            "margin_quantiles", "accuracy", "gaussian_test"}
    margin = (arrays["chosen"] - arrays["rejected"]) @ arrays["weight"]
    assert summary["margin_mean"] == pytest.approx(margin.mean(), rel=1e-5)
    assert summary["accuracy"] == pytest.approx(np.mean(margin > 0), abs=1 / N)
    assert list(summary["margin_quantiles"]) == ["0.05", "0.25", "0.5", "0.75", "0.95"]
    test = summary["gaussian_test"]
    assert test["gaussian"] is True and test["k"] == 10 and "Mardia" in test["test"]  # c − r is Gaussian here
    assert {"skewness_p", "kurtosis_p", "component_normaltest_p", "alpha"} <= set(test)


def test_center_json(runs, arrays):
    summary = runs[2]["center"]
    assert set(summary) == {"n_pairs", "mean", "std", "min", "max", "quantiles"}
    values = (arrays["chosen"] + arrays["rejected"]) / 2 @ arrays["weight"]
    assert summary["n_pairs"] == N
    assert summary["mean"] == pytest.approx(values.mean(), abs=1e-4)
    assert summary["std"] == pytest.approx(values.std(ddof=1), rel=1e-4)
    assert summary["min"] <= summary["quantiles"]["0.05"] <= summary["quantiles"]["0.5"] <= summary["max"]


def test_prompt_pca_json_finds_a_linear_reward(runs):
    summary = runs[2]["prompts"]
    assert summary["n_prompts"] == 3 and [p["prompt_id"] for p in summary["prompts"]] == ["p-0", "p-1", "p-2"]
    for prompt in summary["prompts"]:
        assert set(prompt) == {"prompt_id", "n_samples", "explained_variance_ratio", "w_arrow", "corr_pc1_reward",
                               "corr_w_reward", "reward_mean", "reward_std"}
        assert prompt["n_samples"] == 32
        assert prompt["corr_w_reward"] == pytest.approx(1.0, abs=1e-6)
        assert abs(prompt["corr_pc1_reward"]) <= 1


def test_bad_inputs_are_refused(files, tmp_path):
    png, js = str(tmp_path / "x.png"), str(tmp_path / "x.json")
    with pytest.raises(ValueError, match="mode must be one of"):
        pca_plot(files["chosen"], files["rejected"], files["message"], files["weight"], png, js, mode="umap", seed=0)
    np.save(tmp_path / "short.npy", np.zeros(D - 1, dtype=np.float32))
    with pytest.raises(DataError, match=f"reward direction of {D} values"):
        center_plot(files["chosen"], files["rejected"], str(tmp_path / "short.npy"), png, js)
    np.save(tmp_path / "few.npy", np.zeros((N - 1, D), dtype=np.float32))
    with pytest.raises(DataError, match="does not match"):
        center_plot(files["chosen"], str(tmp_path / "few.npy"), files["weight"], png, js)
    with pytest.raises(DataError, match="file name does not match the prompt 'p-1'"):
        prompt_pca_plot(files["representations"][:1], files["rewards"][1:2], files["weight"], png, js, seed=0)
    write_jsonl(tmp_path / "r.jsonl", [{"prompt_id": "p-0", "sample": 0, "reward": 1.0}])
    with pytest.raises(DataError, match="1 rewards for 32 rows"):
        prompt_pca_plot(files["representations"][:1], [str(tmp_path / "r.jsonl")], files["weight"], png, js, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["few.npy", "r.jsonl", "short.npy"]


def test_a_gda_npz_gives_the_weight(files, arrays, tmp_path):
    from rmood.mrm.gda import fit_gda

    fit_gda(files["chosen"], files["rejected"], tmp_path / "gda.npz", 128)
    center_plot(files["chosen"], files["rejected"], str(tmp_path / "gda.npz"), str(tmp_path / "c.png"),
                str(tmp_path / "c.json"))
    assert read_json(tmp_path / "c.json")["n_pairs"] == N
