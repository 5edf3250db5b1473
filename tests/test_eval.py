"""Best-of-n estimator, over-optimisation fits, PPO curves and the `mrm_eval` report."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rmood.eval.bon import bon_curves, bon_expectation, bon_report, kl_bon, n_values
from rmood.eval.fit import fit_bon, fit_rl
from rmood.eval.ppo import ppo_curve
from rmood.eval.report import SUMMARY_COLUMNS, make_report
from rmood.io import DataError, read_json, write_json, write_jsonl

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
    """Two prompts x 4 samples; `good` ranks by gold, `bad` ranks against it."""
    gold = {"a": [0.1, 0.4, 0.2, 0.9], "b": [0.5, 0.0, 1.0, 0.3]}
    gold_path = folder / "gold.jsonl"
    write_jsonl(
        gold_path, [{"prompt_id": p, "sample": i, "gold": g} for p, gs in gold.items() for i, g in enumerate(gs)]
    )
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
    curves = bon_curves(scores, gold, 4)
    assert curves["n"] == [1, 2, 4] and curves["prompts"] == 2
    assert curves["kl"] == [kl_bon(n) for n in (1, 2, 4)]
    good, bad = curves["rms"]["good"], curves["rms"]["bad"]
    assert good["gold"][0] == bad["gold"][0] == pytest.approx((1.6 + 1.8) / 8)  # n = 1: the mean
    assert good["gold"][-1] == pytest.approx((0.9 + 1.0) / 2)  # n = N: the proxy's argmax
    assert bad["gold"][-1] == pytest.approx((0.1 + 0.0) / 2)
    assert good["proxy"] == pytest.approx([10 * g for g in good["gold"]])
    assert np.all(np.diff(good["gold"]) > 0) and np.all(np.diff(bad["gold"]) < 0)

    out = tmp_path / "bon" / "report.json"
    bon_report([str(scores["good"]), str(scores["bad"])], str(gold), str(out), 4)
    assert read_json(out) == curves  # floats round-trip exactly through JSON


def test_bon_curves_refuses_mismatched_files(tmp_path: Path) -> None:
    gold, scores = write_bon_files(tmp_path)
    write_jsonl(tmp_path / "short.jsonl", [{"prompt_id": "a", "sample": i, "reward": 0.0} for i in range(4)])
    with pytest.raises(DataError, match="different prompts"):
        bon_curves({"short": tmp_path / "short.jsonl"}, gold, 2)
    records = [{"prompt_id": p, "sample": i, "reward": 0.0} for p in "ab" for i in range(1, 5)]
    write_jsonl(tmp_path / "shifted.jsonl", records)
    with pytest.raises(DataError, match="different samples of prompt a"):
        bon_curves({"shifted": tmp_path / "shifted.jsonl"}, gold, 2)
    with pytest.raises(DataError, match="best-of-5 needs 5 samples"):
        bon_curves(scores, gold, 5)


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
    """Files of a PPO run with checkpoints at steps 0, 10, 20, …: two samples per step around the means."""
    files: dict[str, list[str]] = {"kl_files": [], "gold_files": [], "proxy_files": []}
    for i, (g, p, k) in enumerate(zip(gold, proxy, kl)):
        step = folder / f"step_{10 * i}"
        write_jsonl(
            step / "gold.jsonl", [{"prompt_id": "a", "sample": s, "gold": g + d} for s, d in ((0, -0.1), (1, 0.1))]
        )
        write_jsonl(
            step / "scores.jsonl", [{"prompt_id": "a", "sample": s, "reward": p + d} for s, d in ((0, -1), (1, 1))]
        )
        if i > 0 or kl_at_0:
            write_jsonl(step / "kl.jsonl", [{"prompt_id": "a", "sample": s, "kl": k + d, "tokens": 5}
                                            for s, d in ((0, -0.25), (1, 0.25))])
            files["kl_files"].append(str(step / "kl.jsonl"))
        files["gold_files"].append(str(step / "gold.jsonl"))
        files["proxy_files"].append(str(step / "scores.jsonl"))
    return files


def test_ppo_curve(tmp_path: Path) -> None:
    files = write_ppo_run(tmp_path / "run", [0.3, 0.5, 0.4], [0.0, 2.0, 5.0], [0.0, 1.0, 4.0])
    files = {k: v[::-1] for k, v in files.items()}  # matched by step folder, not by position
    out = tmp_path / "curve.json"
    ppo_curve("rm", **files, out=str(out))
    curve = read_json(out)
    assert curve["rm"] == "rm" and curve["steps"] == [0, 10, 20]
    assert curve["kl"] == [0.0, 1.0, 4.0]
    assert curve["gold"] == pytest.approx([0.3, 0.5, 0.4]) and curve["proxy"] == pytest.approx([0.0, 2.0, 5.0])

    files = write_ppo_run(tmp_path / "with0", [0.3, 0.5], [0.0, 1.0], [0.002, 1.0], kl_at_0=True)
    ppo_curve("rm", **files, out=str(out))
    assert read_json(out)["kl"] == pytest.approx([0.002, 1.0])  # a measured step-0 KL is kept


def test_ppo_curve_refuses_inconsistent_files(tmp_path: Path) -> None:
    files = write_ppo_run(tmp_path / "run", [0.3, 0.5, 0.4], [0.0, 2.0, 5.0], [0.0, 1.0, 4.0])
    out = str(tmp_path / "curve.json")
    with pytest.raises(DataError, match=r"KL files missing for steps \[20\]"):
        ppo_curve("rm", files["kl_files"][:1], files["gold_files"], files["proxy_files"], out)
    with pytest.raises(DataError, match="proxy files"):
        ppo_curve("rm", files["kl_files"], files["gold_files"], files["proxy_files"][:2], out)
    with pytest.raises(DataError, match="no gold file for step 0"):
        ppo_curve("rm", files["kl_files"], files["gold_files"][1:], files["proxy_files"][1:], out)
    with pytest.raises(DataError, match="step_<k> folder"):
        ppo_curve("rm", [], [str(tmp_path / "gold.jsonl")], [], out)
    write_jsonl(files["kl_files"][0], [{"kl_sequence": 1.0, "kl_token": 0.1, "n": 2}])  # the old per-file summary
    with pytest.raises(DataError, match=r"step_10/kl\.jsonl:1: missing field\(s\) prompt_id, sample, kl"):
        ppo_curve("rm", **files, out=out)
    assert not Path(out).exists()


# --- the report -------------------------------------------------------------------------------

RMS = ["rm", "mrm", "ens_mean"]


def write_report_inputs(folder: Path) -> dict:
    """Accuracy table, a BoN report (rm over-optimised, mrm not) and PPO curves for rm and mrm only."""
    pd.DataFrame(
        {
            "rm": RMS,
            "train_accuracy": [0.6, 0.62, 0.61],
            "test_accuracy": [0.60, 0.61, 0.62],
            "ood_accuracy": [0.32, 0.55, 0.47],
            "test_margin_mean": [0.1, 0.2, 0.1],
            "ood_margin_mean": [-0.1, 0.0, 0.0],
            "train_pairs": [100, 100, 100],
        }
    ).to_csv(folder / "rm_accuracy.csv", index=False)
    ns = n_values(16)
    kl = [kl_bon(n) for n in ns]
    d = np.sqrt(kl)
    bon = {
        "n": ns,
        "kl": kl,
        "prompts": 8,
        "rms": {
            "rm": {"gold": list(0.3 + d * (0.2 - 0.15 * d)), "proxy": list(2 * d)},
            "mrm": {"gold": list(0.3 + 0.05 * d), "proxy": list(d)},
            "ens_mean": {"gold": list(0.3 + d * (0.1 - 0.02 * d)), "proxy": list(1.5 * d)},
        },
    }
    write_json(folder / "bon" / "report.json", bon)
    ppo = []
    for rm, beta in (("rm", 0.2), ("mrm", 0.0)):
        steps = [0, 10, 20, 30]
        kl_ppo = [0.0, 1.0, 4.0, 9.0]
        d = np.sqrt(kl_ppo)
        curve = {
            "rm": rm,
            "steps": steps,
            "kl": kl_ppo,
            "gold": list(0.3 + 0.1 * d - beta * d_log_d(d)),
            "proxy": list(0.3 + d),
        }
        write_json(folder / "ppo" / rm / "curve.json", curve)
        ppo.append(str(folder / "ppo" / rm / "curve.json"))
    figures = [str(folder / "distribution" / "visual" / "center.png")]
    return {"rm_table": str(folder / "rm_accuracy.csv"), "bon": str(folder / "bon" / "report.json"), "ppo": ppo,
            "figures": figures}


def report_outputs(folder: Path) -> dict:
    plots = [
        str(folder / "reports" / "plots" / f"{stem}.png")
        for stem in ("rm_accuracy", "bon_gold", "bon_proxy", "ppo_gold", "ppo_proxy")
    ]
    return {
        "summary": str(folder / "reports" / "summary.csv"),
        "markdown": str(folder / "reports" / "mrm_eval.md"),
        "plots": plots,
    }


def test_make_report(tmp_path: Path) -> None:
    inputs = write_report_inputs(tmp_path)
    first, second = report_outputs(tmp_path / "one"), report_outputs(tmp_path / "two")
    make_report(**inputs, **first, reward_models=RMS)
    make_report(**inputs, **second, reward_models=RMS)

    table = pd.read_csv(first["summary"])
    assert list(table.columns) == list(SUMMARY_COLUMNS) and table["rm"].tolist() == RMS
    row = table.set_index("rm")
    assert row.loc["rm", "id_accuracy"] == 0.60 and row.loc["mrm", "ood_accuracy"] == 0.55
    assert ((0 <= table["id_accuracy"]) & (table["id_accuracy"] <= 1)).all()
    assert (table["bon_peak_gold"] >= table["bon_gold_at_N"]).all()
    assert row.loc["rm", "bon_peak_gold"] > row.loc["rm", "bon_gold_at_N"]  # over-optimised
    fits = row.loc["rm", ["bon_alpha", "bon_beta", "rl_alpha", "rl_beta"]].tolist()
    assert fits == pytest.approx([0.2, 0.15, 0.1, 0.2], abs=1e-4)
    assert row.loc["rm", "ppo_peak_kl"] == 1.0 and row.loc["mrm", "ppo_peak_kl"] == 9.0
    assert row.loc["mrm", "ppo_final_proxy_minus_gold"] == pytest.approx(3.3 - (0.3 + 0.3), abs=1e-4)
    ppo_columns = [c for c in SUMMARY_COLUMNS if c.startswith(("ppo_", "rl_"))]
    assert row.loc["ens_mean", ppo_columns].isna().all()  # no PPO curve
    assert row.loc[["rm", "mrm"], ppo_columns].notna().all().all()

    text = Path(first["markdown"]).read_text(encoding="utf-8")
    assert all(f"`{rm}`" in text for rm in RMS)
    assert "## Representations" in text and "](../../distribution/visual/center.png)" in text
    sentences = {rm: next(line for line in text.splitlines() if line.startswith(f"- `{rm}`: best-of-n")) for rm in RMS}
    assert "best-of-n gold peaked at 0.364 at n = 4" in sentences["rm"] and "over-optimised" in sentences["rm"]
    assert "PPO gold peaked at 0.400 at step 10 (KL 1.00)" in sentences["rm"]
    assert "best-of-n gold is highest at the end" in sentences["mrm"]
    assert "PPO gold is highest at the end" in sentences["mrm"]
    assert "no PPO curve" in sentences["ens_mean"]
    assert "0.3000" in text  # the SFT baseline gold
    assert all(
        f"](plots/{stem}.png)" in text for stem in ("bon_gold", "bon_proxy", "ppo_gold", "ppo_proxy", "rm_accuracy")
    )

    for one, two in zip(first["plots"], second["plots"]):
        data = Path(one).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) > 10_000
        assert (int.from_bytes(data[16:20]), int.from_bytes(data[20:24])) == (960, 600)  # 8 x 5 in at 120 dpi
        assert data == Path(two).read_bytes(), one
    assert Path(first["summary"]).read_bytes() == Path(second["summary"]).read_bytes()
    assert Path(first["markdown"]).read_bytes() == Path(second["markdown"]).read_bytes()
    assert sorted(p.name for p in Path(first["plots"][0]).parent.iterdir()) == sorted(
        Path(p).name for p in first["plots"]
    )


def test_make_report_without_any_ppo_curve(tmp_path: Path) -> None:
    inputs = write_report_inputs(tmp_path)
    outputs = report_outputs(tmp_path)
    make_report(**{**inputs, "ppo": []}, **outputs, reward_models=RMS)
    table = pd.read_csv(outputs["summary"])
    assert table[[c for c in SUMMARY_COLUMNS if c.startswith(("ppo_", "rl_"))]].isna().all().all()
    assert all(Path(p).read_bytes().startswith(PNG_SIGNATURE) for p in outputs["plots"])
    assert "**No PPO curve** for: `rm`, `mrm`, `ens_mean`." in Path(outputs["markdown"]).read_text(encoding="utf-8")


def test_make_report_refuses_bad_inputs(tmp_path: Path) -> None:
    inputs = write_report_inputs(tmp_path)
    outputs = report_outputs(tmp_path)
    with pytest.raises(DataError, match="unexpected or duplicate plot"):
        make_report(
            **inputs, **{**outputs, "plots": [*outputs["plots"], str(tmp_path / "extra.png")]}, reward_models=RMS
        )
    with pytest.raises(DataError, match="plots missing from the outputs: ppo_proxy"):
        make_report(**inputs, **{**outputs, "plots": outputs["plots"][:-1]}, reward_models=RMS)
    with pytest.raises(DataError, match="not in reward_models: ens_mean"):
        make_report(**inputs, **outputs, reward_models=["rm", "mrm"])
    with pytest.raises(DataError, match="no entry for RM.* golden"):
        make_report(**inputs, **outputs, reward_models=[*RMS, "golden"])
    with pytest.raises(DataError, match="second PPO curve for RM rm"):
        make_report(**{**inputs, "ppo": [inputs["ppo"][0]] * 2}, **outputs, reward_models=RMS)
    assert not (tmp_path / "reports").exists()
