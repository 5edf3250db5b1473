"""Best-of-n estimator, over-optimisation fits, PPO curves and the `mrm_eval` report."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rmood.eval.bon import BON_ARRAYS, bon_curves, bon_expectation, bon_report, kl_bon, n_values
from rmood.eval.estimates import (BUDGET_COLUMNS, CURVE_COLUMNS, MOMENTS, SUMMARY_COLUMNS, VARIANCE_COLUMNS,
                                   distance_statistics)
from rmood.eval.fit import fit_bon, fit_rl
from rmood.eval.markdown import update_readme
from rmood.eval.ppo_curve import CHANNELS, PPO_ARRAYS, ppo_curve
from rmood.eval.report import PLOTS, make_report
from rmood.io import DataError, read_json, read_npz, write_json, write_jsonl, write_npz

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def d_log_d(d: np.ndarray) -> np.ndarray:
    """d·log d with 0 at d = 0."""
    return d * np.log(d, out=np.zeros_like(d), where=d > 0)


def brute_force(proxy: np.ndarray, values: np.ndarray, n: int) -> float:
    """Mean over all n-subsets of the value of the subset's proxy-best (ties: the later sample)."""
    picks = [
        values[max(subset, key=lambda i: (proxy[i], i))] for subset in itertools.combinations(range(len(proxy)), n)
    ]
    return float(np.mean(picks))


# --- best-of-n --------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_bon_expectation_matches_enumeration(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    proxy = rng.integers(0, 3, 6).astype(float) if ties else rng.normal(size=6)
    values = rng.normal(size=6)
    for n in range(1, 7):
        assert bon_expectation(proxy, values, n) == pytest.approx(brute_force(proxy, values, n), abs=1e-12)


def test_bon_expectation_extremes_and_errors() -> None:
    rng = np.random.default_rng(0)
    proxy, values = rng.normal(size=9), rng.normal(size=9)
    assert bon_expectation(proxy, values, 1) == pytest.approx(values.mean())
    assert bon_expectation(proxy, values, 9) == pytest.approx(values[np.argmax(proxy)])
    assert bon_expectation(np.zeros(4), np.arange(4.0), 4) == 3.0  # all tied: the last sample wins
    big = rng.normal(size=400)  # C(400, 200) ~ 1e119: weights in log space stay finite
    assert np.isfinite(bon_expectation(big, big, 200)) and bon_expectation(big, big, 400) == pytest.approx(big.max())
    with pytest.raises(ValueError, match="1 <= n <= N"):
        bon_expectation(proxy, values, 10)
    with pytest.raises(ValueError, match="one length"):
        bon_expectation(proxy, values[:3], 1)


def test_kl_bon_and_n_values() -> None:
    assert kl_bon(1) == 0.0
    assert kl_bon(2) == pytest.approx(math.log(2) - 0.5)
    assert kl_bon(16) == pytest.approx(2.772588722 - 0.9375)
    assert n_values(16) == [1, 2, 4, 8, 16]
    assert n_values(12) == [1, 2, 4, 8, 12]
    assert n_values(1) == [1]


def write_bon_files(folder: Path) -> tuple[Path, dict[str, Path]]:
    """Two prompts x 4 samples; `good` ranks by gold, `bad` ranks against it; a sample's distance is 10 × its gold
    (`distance.jsonl`), outliers beyond 5 (`reference.json`)."""
    gold = {"a": [0.1, 0.4, 0.2, 0.9], "b": [0.5, 0.0, 1.0, 0.3]}
    gold_path = folder / "gold.jsonl"
    write_jsonl(
        gold_path, [{"prompt_id": p, "sample": i, "gold": g} for p, gs in gold.items() for i, g in enumerate(gs)]
    )
    write_jsonl(folder / "distance.jsonl",
                [{"prompt_id": p, "sample": i, "distance": 10 * g} for p, gs in gold.items() for i, g in enumerate(gs)])
    write_json(folder / "reference.json", {"quantile": 0.95, "threshold": 5.0, "sft": {"n": 8, "mean": 4.25},
                                           "train": {"n": 2, "mean": 3.0}})
    scores = {}
    for rm, sign in (("good", 1.0), ("bad", -1.0)):
        scores[rm] = folder / f"{rm}.jsonl"
        records = [
            {"prompt_id": p, "sample": i, "reward": sign * 10 * g} for p, gs in gold.items() for i, g in enumerate(gs)
        ]
        write_jsonl(scores[rm], records[::-1])  # file order must not matter
    return gold_path, scores


def test_bon_curves_on_tiny_files(tmp_path: Path) -> None:
    gold, scores = write_bon_files(tmp_path)
    table = bon_curves(scores, gold, 4, tmp_path / "distance.jsonl", 5.0)
    assert table["rms"].tolist() == ["good", "bad"] and table["prompts"].tolist() == ["a", "b"]
    assert table["n"].tolist() == [1, 2, 4] and table["kl"].tolist() == [kl_bon(n) for n in (1, 2, 4)]
    assert table["gold"].shape == table["proxy"].shape == (2, 2, 3)  # (RMs, prompts, n)
    good, bad = table["gold"]
    assert good[:, 0] == pytest.approx([1.6 / 4, 1.8 / 4])  # n = 1: each prompt's mean
    assert good[:, -1] == pytest.approx([0.9, 1.0]) and bad[:, -1] == pytest.approx([0.1, 0.0])  # the proxy's argmax
    assert table["proxy"][0] == pytest.approx(10 * good)
    assert np.all(np.diff(good, axis=1) > 0) and np.all(np.diff(bad, axis=1) < 0)
    assert table["distance"] == pytest.approx(10 * table["gold"])  # the selected sample's distance
    assert table["outlier"][0, :, 0] == pytest.approx([0.25, 0.25]) and table["outlier"][0, :, -1].tolist() == [1, 1]
    assert table["outlier"][1, :, -1].tolist() == [0, 0]  # bad picks the lowest gold, never an outlier

    out, per_prompt = tmp_path / "bon" / "report.json", tmp_path / "bon" / "per_prompt.npz"
    bon_report([str(scores["good"]), str(scores["bad"])], str(gold), str(tmp_path / "distance.jsonl"),
               str(tmp_path / "reference.json"), str(out), str(per_prompt), 4)
    saved = read_npz(per_prompt, BON_ARRAYS)
    assert all(np.array_equal(saved[key], table[key]) for key in BON_ARRAYS)
    means = read_json(out)
    assert means["n"] == [1, 2, 4] and means["prompts"] == 2
    assert means["rms"]["good"]["gold"] == pytest.approx(good.mean(axis=0).tolist())
    assert means["rms"]["good"]["outlier"] == pytest.approx(table["outlier"][0].mean(axis=0).tolist())


def test_bon_curves_refuses_mismatched_files(tmp_path: Path) -> None:
    gold, scores = write_bon_files(tmp_path)
    distance = tmp_path / "distance.jsonl"
    write_jsonl(tmp_path / "short.jsonl", [{"prompt_id": "a", "sample": i, "reward": 0.0} for i in range(4)])
    with pytest.raises(DataError, match="different prompts"):
        bon_curves({"short": tmp_path / "short.jsonl"}, gold, 2, distance, 5.0)
    records = [{"prompt_id": p, "sample": i, "reward": 0.0} for p in "ab" for i in range(1, 5)]
    write_jsonl(tmp_path / "shifted.jsonl", records)
    with pytest.raises(DataError, match="different samples of prompt a"):
        bon_curves({"shifted": tmp_path / "shifted.jsonl"}, gold, 2, distance, 5.0)
    with pytest.raises(DataError, match="best-of-5 needs 5 samples"):
        bon_curves(scores, gold, 5, distance, 5.0)
    write_jsonl(tmp_path / "other.jsonl", [{**r, "distance": 1.0} for r in records])  # distances of other samples
    with pytest.raises(DataError, match="other.jsonl and .*gold.jsonl hold different samples of prompt a"):
        bon_curves(scores, gold, 2, tmp_path / "other.jsonl", 5.0)
    write_json(tmp_path / "reference.json", {"quantile": 0.95})
    with pytest.raises(DataError, match="reference.json: no finite outlier threshold"):
        bon_report([str(scores["good"])], str(gold), str(distance), str(tmp_path / "reference.json"),
                   str(tmp_path / "out.json"), str(tmp_path / "per_prompt.npz"), 2)


# --- fits -------------------------------------------------------------------------------------


def test_fits_recover_parameters() -> None:
    kl = np.array([kl_bon(n) for n in n_values(256)])
    d = np.sqrt(kl)
    gold = 0.3 + d * (0.5 - 0.2 * d)
    fit = fit_bon(kl, gold)
    assert fit["alpha"] == pytest.approx(0.5) and fit["beta"] == pytest.approx(0.2) and fit["r2"] == pytest.approx(1.0)

    kl = np.linspace(0.0, 25.0, 11)
    d = np.sqrt(kl)
    gold = 0.3 + 0.4 * d - 0.15 * d_log_d(d)
    fit = fit_rl(kl, gold)
    assert fit["alpha"] == pytest.approx(0.4) and fit["beta"] == pytest.approx(0.15) and fit["r2"] == pytest.approx(1.0)

    rng = np.random.default_rng(0)
    kl = np.linspace(0.0, 25.0, 60)
    d = np.sqrt(kl)
    noisy = fit_rl(kl, 0.3 + 0.4 * d - 0.15 * d_log_d(d) + rng.normal(0, 0.01, 60))
    assert noisy["alpha"] == pytest.approx(0.4, abs=0.03) and noisy["beta"] == pytest.approx(0.15, abs=0.02)
    assert 0.9 < noisy["r2"] <= 1.0
    noisy = fit_bon(kl, 0.3 + d * (0.5 - 0.2 * d) + rng.normal(0, 0.01, 60))
    assert noisy["alpha"] == pytest.approx(0.5, abs=0.03) and noisy["beta"] == pytest.approx(0.2, abs=0.01)


def test_fit_degenerate_inputs() -> None:
    assert fit_bon([0.0], [0.5]) == {"alpha": None, "beta": None, "r2": None}
    two = fit_bon([0.0, 1.0, 4.0], [0.5, 0.5, 0.5])  # flat curve: alpha = beta = 0, SST = 0
    assert two["alpha"] == pytest.approx(0.0) and two["r2"] is None
    assert fit_bon([0.0, 1.0, 4.0], [0.0, 0.5, 0.6])["r2"] == pytest.approx(1.0)  # 3 points, 2 parameters: exact
    assert fit_bon([0.0, 1.0], [0.0, 0.5])["r2"] is None  # fewer than 3 points
    with pytest.raises(ValueError, match="one length"):
        fit_rl([0.0, 1.0], [0.0])


# --- PPO curves -------------------------------------------------------------------------------


def write_ppo_run(
    folder: Path, gold: list[float], proxy: list[float], kl: list[float], kl_at_0: bool = False
) -> dict[str, list[str]]:
    """Files of a PPO run with checkpoints at steps 0, 10, 20, …: prompts a (two samples) and b (one sample);
    prompt b scores `delta` above a's mean and its KL is twice a's; at step k the responses are k // 10 + 2 tokens
    long and a's second one never ended; a sample's distance is its checkpoint's index + 1 (+ 2 for b), outliers
    (`reference`) beyond 2.5."""
    files: dict[str, list[str]] = {"samples_files": [], "kl_files": [], "gold_files": [], "proxy_files": [],
                                   "distance_files": []}
    write_json(folder / "reference.json", {"quantile": 0.9, "threshold": 2.5, "sft": {"n": 3, "mean": 1.7},
                                           "train": {"n": 4, "mean": 1.0}})
    samples = (("a", 0, -0.1), ("a", 1, 0.1), ("b", 0, 0.2))
    for i, (g, p, k) in enumerate(zip(gold, proxy, kl)):
        step = folder / f"step_{10 * i}"
        write_jsonl(step / "samples.jsonl", [{"prompt_id": q, "sample": s, "response": "x", "finished": (q, s) != ("a", 1),
                                              "tokens": [5] * (i + 2)} for q, s, _ in samples])
        files["samples_files"].append(str(step / "samples.jsonl"))
        write_jsonl(step / "gold.jsonl", [{"prompt_id": q, "sample": s, "gold": g + d} for q, s, d in samples])
        write_jsonl(step / "scores.jsonl", [{"prompt_id": q, "sample": s, "reward": p + 10 * d} for q, s, d in samples])
        if i > 0 or kl_at_0:
            write_jsonl(step / "kl.jsonl", [{"prompt_id": q, "sample": s, "kl": k * (2 if q == "b" else 1), "tokens": 3}
                                            for q, s, _ in samples])
            files["kl_files"].append(str(step / "kl.jsonl"))
        files["gold_files"].append(str(step / "gold.jsonl"))
        files["proxy_files"].append(str(step / "scores.jsonl"))
        write_jsonl(step / "distance.jsonl", [{"prompt_id": q, "sample": s, "distance": i + 1 + 2 * (q == "b")}
                                              for q, s, _ in samples])
        files["distance_files"].append(str(step / "distance.jsonl"))
    return files


def test_ppo_curve(tmp_path: Path) -> None:
    files = write_ppo_run(tmp_path / "run", [0.3, 0.5, 0.4], [0.0, 2.0, 5.0], [0.0, 1.0, 4.0])
    files = {k: v[::-1] for k, v in files.items()}  # matched by step folder, not by position
    out, per_prompt = tmp_path / "curve.json", tmp_path / "per_prompt.npz"
    reference = str(tmp_path / "run" / "reference.json")
    ppo_curve("rm", **files, reference=reference, out=str(out), per_prompt=str(per_prompt))
    table = read_npz(per_prompt, PPO_ARRAYS)
    assert str(table["rm"]) == "rm" and table["steps"].tolist() == [0, 10, 20] and table["prompts"].tolist() == ["a", "b"]
    assert table["gold"] == pytest.approx(np.array([[0.3, 0.5], [0.5, 0.7], [0.4, 0.6]]))  # (steps, prompts)
    assert table["proxy"] == pytest.approx(np.array([[0.0, 2.0], [2.0, 4.0], [5.0, 7.0]]))
    assert table["kl"].tolist() == [[0.0, 0.0], [1.0, 2.0], [4.0, 8.0]]
    assert table["finished"].tolist() == [[0.5, 1.0]] * 3 and table["tokens"].tolist() == [[2, 2], [3, 3], [4, 4]]
    assert table["distance"].tolist() == [[1, 3], [2, 4], [3, 5]]  # (steps, prompts)
    assert table["outlier"].tolist() == [[0, 1], [0, 1], [1, 1]]  # beyond 2.5
    # the proxy's error z(proxy) − z(gold), standardised on step 0: there the proxy is 10 × gold + a constant (no
    # error); later its level moves by `proxy`, gold's by `gold`, the same for every sample
    sd_proxy, sd_gold = np.std([-1.0, 1.0, 2.0]), np.std([0.2, 0.4, 0.5])
    error = [0.0, 2.0 / sd_proxy - 0.2 / sd_gold, 5.0 / sd_proxy - 0.1 / sd_gold]
    assert table["error"] == pytest.approx(np.array(error)[:, None].repeat(2, axis=1), abs=1e-12)
    assert table["error_sq"] == pytest.approx(table["error"] ** 2)
    assert table["distance_error"] == pytest.approx(table["distance"] * table["error"])
    assert table["distance_sq"].tolist() == [[1, 9], [4, 16], [9, 25]]
    assert table["outlier_error"] == pytest.approx(table["outlier"] * table["error"])
    assert table["outlier_gold"] == pytest.approx(table["outlier"] * table["gold"])  # a prompt's samples: one distance
    curve = read_json(out)
    assert curve["rm"] == "rm" and curve["steps"] == [0, 10, 20] and curve["kl"] == [0.0, 1.5, 6.0]
    assert curve["gold"] == pytest.approx([0.4, 0.6, 0.5]) and curve["proxy"] == pytest.approx([1.0, 3.0, 6.0])

    files = write_ppo_run(tmp_path / "with0", [0.3, 0.5], [0.0, 1.0], [0.002, 1.0], kl_at_0=True)
    ppo_curve("rm", **files, reference=reference, out=str(out), per_prompt=str(per_prompt))
    assert read_json(out)["kl"] == pytest.approx([0.003, 1.5])  # a measured step-0 KL is kept


def test_ppo_curve_refuses_inconsistent_files(tmp_path: Path) -> None:
    files = write_ppo_run(tmp_path / "run", [0.3, 0.5, 0.4], [0.0, 2.0, 5.0], [0.0, 1.0, 4.0])
    out, per_prompt = str(tmp_path / "curve.json"), str(tmp_path / "per_prompt.npz")

    def curve(**changed: list[str]) -> None:
        ppo_curve("rm", **{**files, **changed}, reference=str(tmp_path / "run" / "reference.json"), out=out,
                  per_prompt=per_prompt)

    with pytest.raises(DataError, match=r"KL files missing for steps \[20\]"):
        curve(kl_files=files["kl_files"][:1])
    with pytest.raises(DataError, match="proxy files"):
        curve(proxy_files=files["proxy_files"][:2])
    with pytest.raises(DataError, match="distance files"):
        curve(distance_files=files["distance_files"][1:])
    with pytest.raises(DataError, match="samples files"):
        curve(samples_files=files["samples_files"][1:])
    with pytest.raises(DataError, match="no gold file for step 0"):
        curve(**{name: paths[1:] for name, paths in files.items() if name != "kl_files"})
    with pytest.raises(DataError, match="step_<k> folder"):
        curve(gold_files=[str(tmp_path / "gold.jsonl")])
    write_jsonl(files["kl_files"][0], [{"kl_sequence": 1.0, "kl_token": 0.1, "n": 2}])  # the old per-file summary
    with pytest.raises(DataError, match=r"step_10/kl\.jsonl:1: missing field\(s\) prompt_id, sample, kl"):
        curve()
    write_jsonl(files["kl_files"][0], [{"prompt_id": "a", "sample": 0, "kl": 1.0, "tokens": 3}])
    with pytest.raises(DataError, match="hold different samples"):
        curve()
    step = Path(files["gold_files"][2])
    write_jsonl(step, [{"prompt_id": "c", "sample": 0, "gold": 0.1}])
    write_jsonl(step.parent / "scores.jsonl", [{"prompt_id": "c", "sample": 0, "reward": 0.1}])
    write_jsonl(step.parent / "kl.jsonl", [{"prompt_id": "c", "sample": 0, "kl": 0.1}])
    write_jsonl(step.parent / "distance.jsonl", [{"prompt_id": "c", "sample": 0, "distance": 1.0}])
    write_jsonl(step.parent / "samples.jsonl", [{"prompt_id": "c", "sample": 0, "finished": True, "tokens": [1]}])
    with pytest.raises(DataError, match="other prompts than step 0"):
        curve(**{**{name: paths[::2] for name, paths in files.items()}, "kl_files": files["kl_files"][1:]})
    assert not Path(out).exists() and not Path(per_prompt).exists()


def test_distance_statistics_are_those_of_the_pooled_responses() -> None:
    """The statistics of a run's moments (`MOMENTS`, two checkpoints of ten responses each) are those of its
    responses pooled: the correlation of distance and error, and each mean on the outliers minus on the others; the
    gold gap's change is the later checkpoint's gap minus update 0's."""
    rng = np.random.default_rng(0)
    d, e, g = rng.normal(8, 1, (2, 10)), rng.normal(0, 1, (2, 10)), rng.uniform(0, 1, (2, 10))
    out = np.zeros((2, 10))
    out[0, :1], out[1, :4] = 1, 1  # update 0: one outlier, the later checkpoint four
    per_response = {"distance": d, "error": e, "error_sq": e * e, "distance_sq": d * d, "distance_error": d * e,
                    "outlier": out, "outlier_error": out * e, "gold": g, "outlier_gold": out * g}
    means = np.concatenate([per_response[CHANNELS[c]].mean(axis=1) for c in MOMENTS])
    corr, overrating, gold_gap, shift = distance_statistics(means)
    inside = out == 0

    def gap(x: np.ndarray, k: slice = slice(None)) -> float:
        return float(x[k][~inside[k]].mean() - x[k][inside[k]].mean())

    assert corr == pytest.approx(np.corrcoef(d.ravel(), e.ravel())[0, 1])
    assert (overrating, gold_gap) == pytest.approx((gap(e), gap(g)))
    assert shift == pytest.approx(gap(g, slice(1, 2)) - gap(g, slice(0, 1)))
    assert np.isnan(distance_statistics(means.reshape(len(MOMENTS), 2)[:, :1].ravel())[3])  # no later checkpoint


# --- the report -------------------------------------------------------------------------------

RMS = ["rm", "mrm", "ens_mean", "golden"]
PROMPTS = 150
STEPS = np.array([0, 10, 20, 30, 40])
PPO_KL = np.array([0.0, 1.0, 2.0, 4.0, 6.0])
PENALISED = "rm_kl0.05"
HACKED = 0.1  # the gold the KL-penalised run's outliers lose
ACCURACY = {"rm": 0.6, "mrm": 0.75, "ens_mean": 0.6, "golden": 0.7}  # chance that an RM ranks a clear pair as gold


def bon_means() -> dict[str, np.ndarray]:
    """Expected best-of-n gold per RM: rm rises then falls, ens_mean follows rm, mrm rises, golden is flat."""
    d = np.sqrt([kl_bon(n) for n in n_values(16)])
    rm = 0.3 + d * (0.2 - 0.15 * d)
    return {"rm": rm, "mrm": 0.3 + 0.05 * d, "ens_mean": rm, "golden": np.full_like(d, 0.3)}


def write_pairs(rng: np.random.Generator, root: Path, name: str, prompts: list[str]) -> np.ndarray:
    """pairs/<name>.explicit.jsonl: 1-3 pairs per prompt, a fifth of them near-ties; returns each pair's gold gap."""
    records = []
    for prompt in prompts:
        for _ in range(rng.integers(1, 4)):
            gap = 0.05 if rng.random() < 0.2 else 0.5
            records.append({"id": prompt, "prompt": [{"role": "user", "content": prompt}], "chosen": "a",
                            "rejected": "b", "chosen_gold": 0.5 + gap, "rejected_gold": 0.5, "labels": "gold"})
    write_jsonl(root / "pairs" / f"{name}.explicit.jsonl", records)
    return np.array([r["chosen_gold"] - r["rejected_gold"] for r in records])


def write_report_inputs(folder: Path, replicates: tuple[int, ...] = (0, 1, 2)) -> dict:
    """Per replicate: held-out pairs and every RM's rewards of them (near-ties a coin flip), a best-of-n table and
    PPO tables for rm, mrm, golden and rm with a KL penalty (half rm's KL). Prompt difficulty is shared by every replicate and RM (the eval prompts are
    the same), replicates differ a little (PPO: rm over-optimised, mrm rising, golden flat; rm's run of the last
    replicate degenerates from update 30: its answers stop ending). The responses' distance from the training
    distribution grows with √KL for rm, ens_mean and the KL-penalised rm, and stays flat for mrm and golden (noise
    from a generator of its own, so the other numbers are as without it); the KL-penalised rm's outliers lose
    `HACKED` gold."""
    rng = np.random.default_rng(0)
    ns = n_values(16)
    prompts = np.array([f"eval-{i}" for i in range(PROMPTS)])
    difficulty = rng.normal(0.0, 0.1, size=(PROMPTS, 1))
    inputs: dict = {"rewards": [], "pairs": [], "bon": [], "ppo": [], "references": [],
                    "figures": [str(folder / "rep0/distribution/visual/center.png")]}
    drifting = {"rm", "ens_mean", PENALISED}
    for rep in replicates:
        root = folder / f"rep{rep}"
        gaps = {split: write_pairs(rng, root, split, [f"{split}-{i}" for i in range(count)])
                for split, count in (("test", 100), ("ood", 40))}
        inputs["pairs"] += [str(root / "pairs" / f"{split}.explicit.jsonl") for split in gaps]
        for rm in RMS:
            arrays = {"train_chosen": np.ones(3), "train_rejected": np.zeros(3), "train_pairs": np.array(3)}
            for split, gap in gaps.items():
                right = rng.random(len(gap)) < np.where(gap < 0.1, 0.5, ACCURACY[rm])
                arrays |= {f"{split}_chosen": np.where(right, 1.0, -1.0), f"{split}_rejected": np.zeros(len(gap)),
                           f"{split}_pairs": np.array(len(gap))}
            write_npz(root / "rm" / rm / "check_rewards.npz", arrays)
            inputs["rewards"].append(str(root / "rm" / rm / "check_rewards.npz"))
        noise = np.random.default_rng([2, rep])
        write_json(root / "mrm" / "distance_reference.json", {"quantile": 0.95, "threshold": 9.5,
                                                             "sft": {"n": 300, "mean": 8.0},
                                                             "train": {"n": 500, "mean": 7.0 + 0.1 * rep}})
        inputs["references"].append(str(root / "mrm" / "distance_reference.json"))

        def distances(rm: str, kl: np.ndarray) -> dict[str, np.ndarray]:
            """One response per prompt: its distance, whether it is an outlier (beyond 9.5), and the proxy's error
            on it (overrating the far responses of the drifting runs)."""
            distance = 8.0 + (1.5 * np.sqrt(kl) if rm in drifting else 0) + noise.normal(0, 0.3, kl.shape)
            outlier = (distance > 9.5).astype(float)
            error = (0.5 * (distance - 8.0) if rm in drifting else 0) + noise.normal(0, 0.5, kl.shape)
            return {"distance": distance, "outlier": outlier, "error": error, "error_sq": error**2,
                    "distance_sq": distance**2, "distance_error": distance * error, "outlier_error": outlier * error,
                    "latent_outlier": np.full(kl.shape, np.nan) if rm == "golden" else outlier}  # golden: no InfoRM

        shift = rng.normal(0.0, 0.005)  # the replicate's own level
        gold = np.stack([m + shift + difficulty + rng.normal(0, 0.05, (PROMPTS, len(ns))) for m in bon_means().values()])
        proxy = np.stack([np.sqrt(np.arange(len(ns))) + rng.normal(0, 0.1, (PROMPTS, len(ns))) for _ in RMS])
        bon_kl = np.broadcast_to(np.array([kl_bon(n) for n in ns]), (PROMPTS, len(ns)))
        drift = [distances(rm, bon_kl) for rm in RMS]  # (the error moments are the PPO table's only)
        write_npz(root / "bon" / "per_prompt.npz", {"rms": np.array(RMS[::-1]), "prompts": prompts, "n": np.array(ns),
                                                   "kl": np.array([kl_bon(n) for n in ns]), "gold": gold[::-1],
                                                   "proxy": proxy[::-1],  # RM order must not matter
                                                   **{name: np.stack([d[name] for d in drift])[::-1]
                                                      for name in ("distance", "outlier")}})
        inputs["bon"].append(str(root / "bon" / "per_prompt.npz"))
        for rm, beta in (("rm", 0.25), ("mrm", 0.0), ("golden", None), (PENALISED, 0.1)):
            draw = np.random.default_rng([1, rep]) if rm == PENALISED else rng  # the other runs: as without it
            kl = PPO_KL[:, None] * np.exp(draw.normal(0, 0.2, (1, PROMPTS))) / (2 if rm == PENALISED else 1)
            d = np.sqrt(kl)
            mean = 0.3 + 0 * d if beta is None else 0.3 + 0.1 * d - beta * d_log_d(d)
            collapsed = rm == "rm" and rep == replicates[-1] and len(replicates) > 1
            finished = np.where((STEPS[:, None] >= 30) & collapsed, 0.0, 0.9 + 0 * kl)
            far = distances(rm, kl)
            gold = mean + shift + difficulty.T + draw.normal(0, 0.05, kl.shape)
            gold -= HACKED * far["outlier"] if rm == PENALISED else 0  # its far responses lose gold
            write_npz(root / "ppo" / rm / "per_prompt.npz", {
                "rm": np.array(rm), "steps": STEPS, "prompts": prompts, "kl": kl, "gold": gold, "proxy": 0.3 + d,
                "finished": finished, "tokens": np.where(finished > 0, 8.0, 32.0), **far,
                "outlier_gold": far["outlier"] * gold})
            inputs["ppo"].append(str(root / "ppo" / rm / "per_prompt.npz"))
    return inputs


def report_outputs(folder: Path) -> dict:
    return {
        "summary": str(folder / "reports" / "summary.csv"),
        "curves": str(folder / "reports" / "curves.csv"),
        "budgets": str(folder / "reports" / "budgets.csv"),
        "variance": str(folder / "reports" / "variance.csv"),
        "markdown": str(folder / "reports" / "mrm_eval.md"),
        "plots": [str(folder / "reports" / "plots" / f"{stem}.png") for stem in PLOTS[::-1]],
    }


SETTINGS = {"reward_models": RMS, "replicate_scope": "full",
            "rl": {"reward_models": ["rm", "mrm", "golden", "warm"], "kl_coef": 0.0, "learning_rate": 1e-4,
                   "kl_penalised": {"reward_model": "rm", "kl_coefs": [0.05]}},
            "report": {"level": 0.95, "baseline": "rm", "gold_gap": 0.1, "kl_budgets": [1, 2, 4, 8],
                       "degenerate": {"finish_rate": 0.5, "kl_per_token": 1.0}}}


def test_make_report(tmp_path: Path) -> None:
    inputs = write_report_inputs(tmp_path)
    first, second = report_outputs(tmp_path / "one"), report_outputs(tmp_path / "two")
    stop = tmp_path / "tuning" / "stop.json"
    write_json(stop, {"seed": 1000, "stop_share": 0.3, "mean_gold_lost": 0.01, "candidates": [], "runs": []})
    make_report(**inputs, **first, **SETTINGS, stop=str(stop))
    make_report(**{k: v[::-1] for k, v in inputs.items()}, **second, **SETTINGS, stop=str(stop))  # file order: irrelevant
    for name in ("summary", "curves", "budgets", "variance", "markdown"):
        assert Path(first[name]).read_bytes() == Path(second[name]).read_bytes(), name

    table = pd.read_csv(first["summary"], keep_default_na=False, na_values=[""])
    assert list(table.columns) == SUMMARY_COLUMNS
    assert table["replicate"].astype(str).tolist() == ["pooled"] * 5 + ["0"] * 5 + ["1"] * 5 + ["2"] * 5
    assert table["rm"].tolist() == [*RMS, PENALISED] * 4  # the KL-penalised run: a row with its PPO columns only
    row = table[table["replicate"] == "pooled"].set_index("rm")
    single = table[table["replicate"] != "pooled"]
    for rm in RMS:  # the pooled estimate is the mean of the replicates' own
        assert row.loc[rm, "id_accuracy"] == pytest.approx(single[single["rm"] == rm]["id_accuracy"].mean())
    for name in ("id_accuracy", "id_accuracy_close", "bon_gold_at_N", "bon_peak_gold", "ppo_final_gold",
                 "bon_delta_at_N", "id_delta", "ppo_final_finished"):
        values = table[[f"{name}_lo", name, f"{name}_hi"]].dropna().to_numpy()
        assert len(values) and (values[:, 0] <= values[:, 1]).all() and (values[:, 1] <= values[:, 2]).all(), name
    assert table[["id_accuracy_lo", "id_accuracy_close_lo"]].min().min() >= 0
    assert table[["id_accuracy_hi", "id_accuracy_close_hi"]].max().max() <= 1
    mrm = row.loc["mrm"]
    assert mrm["id_accuracy_clear"] > mrm["id_accuracy"] and mrm["id_accuracy_close_lo"] < 0.5 < mrm[
        "id_accuracy_close_hi"]  # near-ties are a coin flip
    assert 0.1 < mrm["id_close_share"] < 0.3 and mrm["id_delta_lo"] > 0 and mrm["id_delta_mdd"] > 0
    assert row.loc["rm", "bon_verdict"] == "over-optimised" and row.loc["rm", "bon_peak_n"] == 4
    assert row.loc["rm", "bon_rise_lo"] > 0 and row.loc["rm", "bon_fall_lo"] > 0
    assert mrm["bon_verdict"] == "rises" and mrm["bon_peak_n"] == 16 and np.isnan(mrm["bon_fall"])
    assert row.loc["golden", "bon_verdict"] == "no significant change"
    assert row.loc["golden", "bon_peak_n_lo"] == 1 and row.loc["golden", "bon_peak_n_hi"] == 16  # any n may be best
    assert mrm["bon_delta_at_N_lo"] > 0 and row.loc["rm", ["bon_delta_at_N", "bon_delta_at_N_mdd"]].isna().all()
    ens = row.loc["ens_mean"]
    assert ens["bon_delta_at_N_lo"] < 0 < ens["bon_delta_at_N_hi"]  # the same curve as rm: no difference
    assert ens["bon_delta_at_N_hi"] - ens["bon_delta_at_N_lo"] < ens["bon_gold_at_N_hi"] - ens["bon_gold_at_N_lo"]
    assert row.loc["rm", "bon_alpha"] == pytest.approx(0.2, abs=0.02) and row.loc["rm", "bon_r2"] > 0.95
    rm = row.loc["rm"]  # its last replicate degenerates from update 30: the verdict reads updates 0-20
    assert rm["ppo_degenerate_replicates"] == 1 and rm["ppo_degenerate_step"] == 30
    assert rm["ppo_verdict"] == "over-optimised" and rm["ppo_peak_step"] == 10 and rm["ppo_peak_step_hi"] <= 20
    assert rm["ppo_final_finished"] == pytest.approx(0.6) and rm["ppo_final_kl_per_token_hi"] > 0
    assert mrm["ppo_degenerate_replicates"] == 0 and np.isnan(mrm["ppo_degenerate_step"])
    assert mrm["ppo_verdict"] == "rises" and mrm["ppo_peak_step"] == 40 and mrm["ppo_kl_spearman"] == pytest.approx(1)
    assert row.loc["golden", "ppo_verdict"] == "no significant change"
    assert rm["rl_beta"] == pytest.approx(0.25, abs=0.08)  # fitted on each replicate's usable checkpoints

    budgets = pd.read_csv(first["budgets"]).set_index(["replicate", "rm", "kl"]).sort_index()
    assert list(pd.read_csv(first["budgets"]).columns) == BUDGET_COLUMNS
    reached = budgets.loc["pooled"]["reached"]
    assert reached[("mrm", 4)] == 3 and reached[("rm", 4)] == 2 and reached[("rm", 8)] == 0  # rm's last: KL 2 at 20
    assert np.isnan(budgets.loc[("pooled", "mrm", 8), "gold"])  # no replicate got there: never extrapolated
    at_one = budgets.loc[("pooled", "mrm", 1)]  # the planted curves cross at 1 nat (d log d = 0 at d = 1) …
    assert at_one["delta_gold_lo"] < 0 < at_one["delta_gold_hi"] and at_one["delta_gold_mdd"] > 0
    for kl in (2, 4):  # … and mrm beats rm beyond
        assert budgets.loc[("pooled", "mrm", kl), "delta_gold_lo"] > 0
    single = budgets.loc[("2", "rm", 4)]
    assert single["reached"] == 0 and np.isnan(single["gold"])
    ppo_columns = [c for c in SUMMARY_COLUMNS if c.startswith(("ppo_", "rl_"))]
    assert row.loc["ens_mean", ppo_columns].isna().all()  # no PPO run
    assert row.loc[PENALISED, [c for c in SUMMARY_COLUMNS if c.startswith(("id_", "ood_", "bon_"))]].isna().all()
    assert row.loc[PENALISED, "ppo_final_kl"] == pytest.approx(row.loc["rm", "ppo_final_kl"] / 2, rel=0.2)
    mrm_vs_penalised = budgets.loc[("pooled", "mrm", 1)]  # mrm against rm with a KL penalty, and rm itself
    assert mrm_vs_penalised["delta_penalised_mdd"] > 0 and np.isfinite(mrm_vs_penalised["delta_penalised"])
    assert np.isnan(budgets.loc[("pooled", PENALISED, 1), "delta_penalised"])  # not compared with itself
    assert budgets.loc[("pooled", "rm", 1), "delta_penalised"] == pytest.approx(
        -budgets.loc[("pooled", PENALISED, 1), "delta_gold"])

    for name in ("bon_distance_shift", "ppo_distance_shift"):  # the planted drift of rm's responses, none of golden's
        assert row.loc["rm", f"{name}_verdict"] == "moves away" and row.loc["rm", f"{name}_mdd"] > 0, name
        assert row.loc["golden", f"{name}_verdict"] == "no significant change", name
    assert mrm["bon_distance_shift_verdict"] == "no significant change"
    assert row.loc["ens_mean", "bon_distance_shift_verdict"] == "moves away"
    assert rm["ppo_distance_step"] == 20  # read like its verdict: before its last replicate degenerated
    assert row.loc[PENALISED, "ppo_distance_shift_verdict"] == "moves away"
    assert 0 <= rm["ppo_outlier_usable_lo"] < rm["ppo_outlier_usable"] and rm["ppo_final_outlier_hi"] <= 1
    assert row.loc["golden", "bon_outlier_at_N"] < 0.01
    assert rm["ppo_error_corr_lo"] > 0.3 and rm["ppo_outlier_overrating_lo"] > 0  # the proxy overrates far responses
    assert row.loc["golden", "ppo_error_corr_lo"] < 0 < row.loc["golden", "ppo_error_corr_hi"]
    hacked = row.loc[PENALISED]  # its outliers lose HACKED gold (less a little: they come at larger KL, where its
    assert -HACKED < hacked["ppo_outlier_gold_gap"] < hacked["ppo_outlier_gold_gap_hi"] < 0  # gold is higher)
    assert np.isnan(mrm["ppo_outlier_gold_gap"])  # no outliers: no gap
    # early stopping at 30% outliers: rm's drifting responses cross it at update 10, its peak (planted) in every
    # replicate; golden's never do, so it stops at its end, and mrm's flat distance likewise
    assert rm["ppo_latent_outlier_usable"] == pytest.approx(rm["ppo_outlier_usable"])  # planted alike
    assert np.isnan(row.loc["golden", ["ppo_latent_outlier_usable", "ppo_final_latent_outlier"]].astype(float)).all()
    assert rm["ppo_stop_steps"] == "10/10/10" and rm["ppo_stop_loss_lo"] <= 0 <= rm["ppo_stop_loss_hi"]
    assert row.loc["golden", "ppo_stop_steps"] == "40/40/40" and mrm["ppo_stop_steps"] == "40/40/40"
    assert rm["ppo_stop_gold"] == pytest.approx(rm["ppo_peak_gold"]) and rm["ppo_stop_loss"] == 0  # stopped at the peak
    assert row.loc["golden", "ppo_stop_loss"] < 0 < row.loc["golden", "ppo_stop_loss_mdd"]  # a noise peak (flat gold)
    closer = budgets.loc[("pooled", "mrm", 2)]  # at equal KL, mrm's responses stay closer than rm's
    assert closer["delta_distance_hi"] < 0 and closer["delta_distance_mdd"] > 0
    assert closer["distance"] == pytest.approx(8.0, abs=0.1)
    same = budgets.loc[("pooled", "rm", 2)]  # rm and its KL-penalised run drift alike per nat of KL (up to the
    assert abs(same["delta_distance_penalised"]) < 0.05 < same["distance"] - 8.0  # interpolation between checkpoints)
    # gold at equal distance: of the responses inside the SFT range; mrm has no outliers, so it is its gold
    assert budgets.loc[("pooled", "mrm"), "gold_inlier"].dropna().to_numpy() == pytest.approx(
        budgets.loc[("pooled", "mrm"), "gold"].dropna().to_numpy())
    hacked = budgets.loc[("pooled", PENALISED, 1)]  # half its responses are outliers there, each losing HACKED gold:
    assert hacked["gold_inlier"] - hacked["gold"] == pytest.approx(HACKED / 2, abs=0.02)  # gone at equal distance
    assert hacked["delta_gold_hi"] < 0 and hacked["delta_gold_inlier_lo"] < 0 < hacked["delta_gold_inlier_hi"]
    assert hacked["delta_gold_inlier_mdd"] > 0 and np.isnan(hacked["delta_gold_inlier_penalised"])

    variance = pd.read_csv(first["variance"])
    assert list(variance.columns) == VARIANCE_COLUMNS
    pooled = variance[variance["replicate"] == "pooled"]
    assert sorted(set(pooled["comparison"])) == ["bon_delta_at_N", "id_delta", "ood_delta", "ppo_delta_kl1",
                                                 "ppo_delta_kl1_penalised", "ppo_delta_kl2", "ppo_delta_kl2_penalised",
                                                 "ppo_delta_kl4"]
    assert pooled["crossed"].all()
    assert (pooled[["var_replicate", "var_prompt", "var_residual"]] >= 0).all().all()
    mdd = pooled.set_index(["rm", "comparison"]).loc[("mrm", "bon_delta_at_N"), "mdd"]
    assert mdd == pytest.approx(mrm["bon_delta_at_N_mdd"])

    curves = pd.read_csv(first["curves"], keep_default_na=False, na_values=[""])
    assert list(curves.columns) == CURVE_COLUMNS
    rm_curve = curves[(curves["replicate"] == "pooled") & (curves["rm"] == "rm") & (curves["method"] == "ppo")]
    assert rm_curve["degenerate"].tolist() == [0, 0, 0, 1, 1] and rm_curve["finished"].iloc[-1] == pytest.approx(0.6)
    assert len(curves) == 4 * (4 * 5 + 4 * 5)  # (pooled + 3 replicates) x (4 RMs x 5 n + 4 runs x 5 updates)
    ppo = curves[(curves["replicate"] == "pooled") & (curves["method"] == "ppo") & (curves["rm"] == "mrm")]
    assert ppo["point"].tolist() == STEPS.tolist() and (np.diff(ppo["gold"]) > 0).all()

    text = Path(first["markdown"]).read_text(encoding="utf-8")
    lines = {rm: next(line for line in text.splitlines() if line.startswith(f"- `{rm}`: best-of-n")) for rm in RMS}
    assert lines["rm"].startswith("- `rm`: best-of-n over-optimised: rises by") and "to n = 4" in lines["rm"]
    assert "then falls by" in lines["rm"] and "PPO over-optimised" in lines["rm"]
    assert "best-of-n rises" in lines["mrm"] and "over-optimised" not in lines["mrm"]
    assert "best-of-n no significant change" in lines["golden"]
    compared = {rm: next(line for line in text.splitlines() if line.startswith(f"- `{rm}`: ID accuracy"))
                for rm in RMS[1:]}
    assert "best-of-16 gold: better than `rm`" in compared["mrm"] and "PPO gold at 4 nats: better" in compared["mrm"]
    assert "read before update 30, from which 1 replicate(s) degenerated" in lines["rm"]
    assert "| `rm` | 1 | " not in text and "## PPO checkpoints" in text and "| `rm` | 40 |" in text
    assert "best-of-16 gold: no significant difference from `rm`" in compared["ens_mean"]
    assert "detectable: ±" in compared["ens_mean"]
    assert f"Δ vs `{PENALISED}` at 2 nats" in text and f"- `{PENALISED}`: PPO " in text
    assert f"- `{PENALISED}`: PPO gold at 1 nats: " in text  # compared with rm at the budgets
    assert "`replicate_scope: full`" in text and "## Every replicate" in text and "## Representations" in text
    assert "](../../rep0/distribution/visual/center.png)" in text
    assert "## Does over-optimisation leave the training distribution?" in text
    assert ("in 2 of 4 best-of-n curves (`rm`, `ens_mean`) from n = 1 to N, and in 2 of 4 PPO runs (`rm`, "
            "`rm_kl0.05`) from update 0" in text and "overrates it (a correlation above zero) in 2 of 4 runs" in text)
    assert "the SFT policy's own eval samples 8.000, the training pairs' responses 7.100" in text
    assert "| `mrm` | 8.0" in text.split("**Distance at the KL budgets**")[1]
    assert "**Early stopping on the outlier share**: stop PPO at the first checkpoint with more than 0.3 outliers" in text
    assert "| `rm` | 10/10/10 | " in text
    assert "- `mrm`: at 1 nats closer to the training distribution than `rm`: -1.4" in text
    assert f"- `{PENALISED}`: at 1 nats no significant difference in distance from `rm`: " in text
    assert "| outliers overrated by | outliers' gold gap |" in text and "| -0.071 [" in text  # rm_kl0.05's gap
    equal = text.split("**Gold at equal distance**")[1]
    assert "| `mrm` | 0.4" in equal and "inlier gold at 1 nats" in equal
    assert f"- `{PENALISED}`: at 1 nats no significant difference from `rm`: " in equal
    assert ("overrates it (a correlation above zero) in 2 of 4 runs (`rm`, `rm_kl0.05`); at equal distance (the "
            "responses inside the SFT policy's range) and KL, gold is significantly better than `rm`'s at some budget "
            "in 1 of 3 runs (`mrm`) and worse in 1 of 3 (`golden`)." in text)
    assert all(f"](plots/{stem}.png)" in text for stem in PLOTS)
    for path in first["plots"]:
        data = Path(path).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) > 10_000
        assert (int.from_bytes(data[16:20]), int.from_bytes(data[20:24])) == (960, 600)  # 8 x 5 in at 120 dpi
        assert data == Path(path.replace("/one/", "/two/")).read_bytes(), path


def test_make_report_of_one_replicate_without_ppo(tmp_path: Path) -> None:
    inputs = write_report_inputs(tmp_path, replicates=(3,))
    outputs = report_outputs(tmp_path)
    make_report(**{**inputs, "ppo": []}, **outputs, **{**SETTINGS, "replicate_scope": "after_sft"})
    table = pd.read_csv(outputs["summary"], keep_default_na=False, na_values=[""])
    assert table["replicate"].tolist() == ["pooled"] * 4
    assert (table["id_accuracy_lo"] < table["id_accuracy"]).all()  # one replicate: intervals over its prompts
    assert table[[c for c in SUMMARY_COLUMNS if c.startswith(("ppo_", "rl_"))]].isna().all().all()
    assert all(Path(p).read_bytes().startswith(PNG_SIGNATURE) for p in outputs["plots"])
    text = Path(outputs["markdown"]).read_text(encoding="utf-8")
    assert "**PPO**: none." in text and "No PPO runs." in text and "## Every replicate" not in text
    assert "`replicate_scope: after_sft`" in text and "about this SFT policy" in text
    variance = pd.read_csv(outputs["variance"])
    assert variance["var_replicate"].isna().all()  # one replicate cannot tell its variance from the prompts'


def test_make_report_refuses_bad_inputs(tmp_path: Path) -> None:
    inputs = write_report_inputs(tmp_path)
    outputs = report_outputs(tmp_path)
    cases = {
        "unexpected or duplicate plot": {"plots": [*outputs["plots"], str(tmp_path / "extra.png")]},
        "plots missing from the outputs: bon_gold": {"plots": outputs["plots"][:-1]},
        "two best-of-n tables for replicate 0": {"bon": [inputs["bon"][0]] * 2},
        "replicate 2: no check_rewards.npz of golden": {"rewards": inputs["rewards"][:-1]},
        "replicate 2: no ood pairs": {"pairs": inputs["pairs"][:-1]},
        "exactly one rep<seed> folder": {"bon": [str(tmp_path / "per_prompt.npz")]},
        r"replicate 2: PPO runs of \['golden', 'mrm', 'rm'\]": {"ppo": inputs["ppo"][:-1]},
        "no distance_reference.json of replicate\\(s\\) 2": {"references": inputs["references"][:-1]},
    }
    for message, change in cases.items():
        with pytest.raises(DataError, match=message):
            make_report(**{**inputs, **{k: v for k, v in change.items() if k in inputs}}, **{
                **outputs, **{k: v for k, v in change.items() if k in outputs}}, **SETTINGS)
    with pytest.raises(DataError, match="an unknown RM"):
        make_report(**inputs, **outputs, **{**SETTINGS, "reward_models": ["rm", "mrm"]})
    rewards = Path(inputs["rewards"][0])
    write_npz(rewards, {**read_npz(rewards, ["ood_chosen", "ood_rejected"]), "test_chosen": np.zeros(3),
                        "test_rejected": np.zeros(3)})
    with pytest.raises(DataError, match=f"{rewards}: 3 test pairs scored, the pairs file has"):
        make_report(**inputs, **outputs, **SETTINGS)
    write_jsonl(inputs["pairs"][0], [{"id": "p", "chosen_gold": 0.2, "rejected_gold": 0.3}])
    with pytest.raises(DataError, match="chosen response is not the gold-better one"):
        make_report(**inputs, **outputs, **SETTINGS)
    assert not (tmp_path / "reports").exists()


def test_results_block_in_a_readme(tmp_path: Path, monkeypatch) -> None:
    from rmood.cli import main
    from rmood.config import load_config

    inputs = write_report_inputs(tmp_path)
    experiment = tmp_path / "results" / load_config()["experiment"]
    outputs = report_outputs(experiment)
    tuning = experiment / "tuning" / "ppo.json"  # the default's learning rate is tuned
    write_json(tuning, {"seed": 1000, "reward_model": "rm", "learning_rate": 2e-4, "why": "the smallest …",
                        "candidates": [{"learning_rate": 1e-4, "usable_kl": 3.0, "degenerate_from": None},
                                       {"learning_rate": 2e-4, "usable_kl": 9.0, "degenerate_from": 80}]})
    make_report(**inputs, **outputs, **SETTINGS, tuning=str(tuning))
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\n<!-- results:begin -->\nold numbers\n<!-- results:end -->\n\nThe end.\n")
    monkeypatch.chdir(tmp_path)
    main(["results", "--readme", str(readme), "--set", "bon.n=16"])
    text = readme.read_text()
    assert text.startswith("# Title\n\n<!-- results:begin -->\n**Reward models** (agreement with gold")
    assert "old numbers" not in text and text.endswith("<!-- results:end -->\n\nThe end.\n")
    assert "| `rm` | 0.617 [" in text and "best-of-n over-optimised: rises by" in text
    assert "**PPO learning rate** 0.0002, chosen on seed 1000 (no reported replicate) against `rm`: the smallest" in text
    assert "0.0001: 3.0 nats; 0.0002: 9.0 nats, degenerate from update 80" in text
    block = text.split("<!-- results:begin -->\n")[1].split("\n<!-- results:end -->")[0]
    assert block in Path(outputs["markdown"]).read_text()  # summary.csv keeps every digit the report printed
    main(["results", "--readme", str(readme), "--set", "bon.n=16"])
    assert readme.read_text() == text  # idempotent
    readme.write_text("no markers\n")
    with pytest.raises(DataError, match="expected one <!-- results:begin -->"):
        update_readme(readme, "x")
    with pytest.raises(SystemExit, match="rmood results: .*summary.csv: no such file"):
        main(["results", "--set", "experiment=other"])


def test_power_from_a_finished_study(tmp_path: Path, monkeypatch, capsys) -> None:
    from rmood.cli import main
    from rmood.config import load_config

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="rmood power: .*variance.csv: no such file .*snakemake mrm_eval"):
        main(["power", "--difference", "0.02"])
    inputs = write_report_inputs(tmp_path)
    make_report(**inputs, **report_outputs(tmp_path / "results" / load_config()["experiment"]), **SETTINGS)
    for bad in ("0", "-0.1", "nan"):
        with pytest.raises(SystemExit, match=f"rmood power: --difference must be a positive number, got {bad}"):
            main(["power", "--difference", bad])
    main(["power", "--difference", "0.02"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| bon_delta_at_N")]
    assert len(rows) == 3 and "| `mrm` | +0.073 ± 0.004 (3 × 150) |" in rows[0]
    cells = [row.split(" | ") for row in rows]
    assert all(cell[3].endswith("%") for cell in cells)  # the power now, then the replicates needed
    assert all(cell[4].isdigit() or cell[4].startswith(">") for cell in cells)
    main(["power", "--difference", "0.5"])
    big = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| bon_delta_at_N")]
    assert all(row.split(" | ")[4] == "2" for row in big)  # a large difference: two replicates suffice


def test_calibration_writes_its_tables_into_a_readme(tmp_path: Path) -> None:
    from rmood.cli import main

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- calibration:begin -->\nold\n<!-- calibration:end -->\n")
    main(["calibration", "--datasets", "8", "--readme", str(readme)])
    text = readme.read_text()
    assert "old" not in text and "**Coverage** of nominal 95% intervals (8 data sets each" in text
    assert "**False positives**" in text and "**Predicted power**" in text and text.startswith("intro\n")
