"""The Snakemake DAG end to end on the test-sized config (.test/config.yaml), in a temporary folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import EXPERIMENT, ROOT, run_snakemake, scheduled, snakemake
from rmood.io import read_jsonl, read_json
from rmood.rm.methods import methods, single_methods

pytestmark = pytest.mark.e2e
REWARD_MODELS = list(methods())  # the test config runs every method, in the registry's order
UPSTREAM = {"data", "base", "sft", "sft_sampling", "gather_samples"}
RM_TRAINING = {"train_rm", "train_rrm", "train_inform", "train_golden", "train_rm_seed", "warm_merge", "ensemble"}


@pytest.fixture(scope="module")
def study(e2e_study) -> Path:
    return e2e_study.workdir


def test_artifacts(study):
    shared = study / "results" / EXPERIMENT
    results = shared / "rep0"
    sizes = {"sft": 160, "preference": 96, "unlabeled": 16, "val": 8, "eval": 16, "ood": 32}
    for split, size in sizes.items():
        assert len(read_jsonl(shared / "data" / f"{split}.jsonl")) == size

    samples = read_jsonl(results / "sft" / "samples.jsonl")  # the policy side is replicate 0's own (scope full)
    assert len(samples) == 3 * (sizes["preference"] + sizes["ood"])
    prompt_ids = [r["id"] for split in ("preference", "ood") for r in read_jsonl(shared / "data" / f"{split}.jsonl")]
    assert [(s["prompt_id"], s["sample"]) for s in samples] == [(p, k) for p in prompt_ids for k in range(3)]
    gold = read_jsonl(results / "labels" / "gold.jsonl")
    assert len(gold) == len(samples) and all(0.0 <= g["gold"] <= 1.0 for g in gold)

    pairs = {name: read_jsonl(results / "pairs" / f"{name}.explicit.jsonl") for name in ("train", "test", "ood")}
    assert pairs["train"] and pairs["test"] and pairs["ood"]
    assert not {p["id"] for p in pairs["train"]} & {p["id"] for p in pairs["test"]}
    assert all(p["id"].startswith("ood-") for p in pairs["ood"])
    for name in ("test", "ood"):
        assert all(p["chosen_gold"] > p["rejected_gold"] for p in pairs[name])
    for name in pairs:
        implicit = read_jsonl(results / "pairs" / f"{name}.implicit.jsonl")
        assert [p["id"] for p in implicit] == [p["id"] for p in pairs[name]]

    check = read_json(results / "rm" / "rm" / "check.json")
    for name in ("train", "test", "ood"):
        assert check[name]["n"] == len(pairs[name])
        assert 0.0 <= check[name]["accuracy"] <= 1.0
    assert read_json(results / "rm" / "golden" / "check.json")["train"]["n"] == len(pairs["train"])

    table = (results / "reports" / "rm_accuracy.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in table[1:]] == REWARD_MODELS
    filtered = read_jsonl(results / "rrm" / "filtered.jsonl")
    stats = read_json(results / "rrm" / "filter_stats.json")
    assert len(filtered) == sum(s["kept"] for s in stats.values())
    for method in methods().values():
        if method.trained:
            assert (results / method.model_path / "model.safetensors").is_file()
    assert (results / "warm" / "model" / "model.safetensors").is_file()
    assert (results / "rm" / "ens_uwo" / "model" / "ensemble.json").is_file()

    config = json.loads((results / "rm" / "rm" / "model" / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForSequenceClassification"] and len(config["id2label"]) == 1
    for rule in ("data", "rep0/base", "rep0/sft", "rep0/gather_samples", "rep0/gold_labeling/0", "rep0/gather_labels",
                 "rep0/preference_pairs", "rep0/train_rm"):
        assert (study / "logs" / EXPERIMENT / f"{rule}.log").is_file()
        assert (study / "benchmarks" / EXPERIMENT / f"{rule}.tsv").is_file()
    assert not (results / "sft" / "checkpoints").exists() and not (results / "rm" / "rm" / "checkpoints").exists()
    assert not (shared / "sft").exists() and not (shared / "base").exists()


def test_rerun_is_a_no_op(study):
    assert scheduled(snakemake(study, "-n", "mrm_eval")) == {}
    # the same config merged in another order (the default named again, then the test's): its keys come in another
    # order, which changes no param (rmood.config.canonical)
    again = run_snakemake(study, "-n", "--cores", "2", "--configfile", str(ROOT / "config" / "config.yaml"),
                          str(ROOT / ".test" / "config.yaml"), "--", "mrm_eval")
    assert again.returncode == 0 and scheduled(again) == {}, again.stderr[-3000:]


def test_labeling_change_reruns_only_downstream(study):
    changed = scheduled(snakemake(study, "-n", "mrm_eval", overrides="annotator: {length_bias: 0.5}"))
    assert {"preference_pairs", "train_rm", "train_rrm", "rm_check"} <= changed.keys()
    assert "gold_labeling" not in changed and not changed.keys() & UPSTREAM
    changed = scheduled(snakemake(study, "-n", "mrm_eval", overrides="gold: {batch_size: 8}"))
    assert {"gold_labeling", "train_rm"} <= changed.keys() and not changed.keys() & UPSTREAM


# What retraining one RM reruns: its checks, BoN scores, PPO run and its evaluation (one job for every checkpoint;
# step 0's samples, the SFT policy's, are shared by every RM: only their proxy score reruns), the distances of its
# run's checkpoints (in the rm's features and InfoRM's latent space), its curve and the report.
ONE_RM_DOWNSTREAM = {
    "rm_check": 1, "rm_table": 1, "bon_score": 1, "bon_report": 1, "ppo": 1, "ppo_eval": 1, "ppo_distance": 1,
    "ppo_latent": 1, "ppo_curve": 1, "report": 1, "mrm_eval": 1,
}


def ppo_runs(study: Path) -> int:
    """How many PPO runs replicate 0 has (every RM that can serve PPO, and the KL-penalised runs)."""
    return sum(1 for run in (study / "results" / EXPERIMENT / "rep0" / "ppo").iterdir() if run.name != "sft")


def test_forcerun_rrm_filter_rebuilds_only_the_rrm(study):
    changed = scheduled(snakemake(study, "-n", "mrm_eval", "--forcerun", "rrm_filter"))
    assert changed == {"rrm_filter": 1, "train_rrm": 1, **ONE_RM_DOWNSTREAM}


def test_forcerun_ppo_curve_reruns_no_ppo_job(study):
    """A PPO curve is the report's reading of a run: gathering every curve anew (as a change to rmood/eval/ppo_curve.py
    does) reruns the early-stopping share, chosen on the tuning runs' curves, and the report; not the learning-rate
    rule, which reads the tuning runs' samples and KL, nor any PPO job."""
    changed = scheduled(snakemake(study, "-n", "mrm_eval", "--forcerun", "ppo_curve"))
    tuning_runs = 2  # .test/config.yaml: two candidate learning rates on the tuning seed
    assert changed == {"ppo_curve": ppo_runs(study) + tuning_runs, "stop_tuning": 1, "report": 1, "mrm_eval": 1}


def test_a_code_edit_reruns_what_runs_that_code(study, tmp_path):
    """The RRM's loss edited in a copy of this checkout: its training and what depends on it rerun, nothing else; a
    docstring edit reruns nothing (rmood/code.py)."""
    import shutil

    from test_code import EDITS

    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "results", "logs", "benchmarks", ".snakemake", "__pycache__", "*.egg-info"))
    source = checkout / "rmood" / "rm" / "rrm.py"
    original = source.read_text()
    for kind, expected in (("loss", {"train_rrm": 1, **ONE_RM_DOWNSTREAM}), ("docstring", {})):
        source.write_text(original.replace(*EDITS[kind]))
        result = run_snakemake(study, "-n", "--cores", "2", "--configfile", str(ROOT / ".test" / "config.yaml"),
                               "--", "mrm_eval", snakefile=checkout / "Snakefile")
        assert result.returncode == 0, result.stderr[-3000:]
        assert scheduled(result) == expected, kind


def test_every_rm_loads_as_the_docs_say(study):
    """The loading snippet of docs/methods.md, in a fresh interpreter, on every RM folder of the study (ensembles: a
    list of members, not a model)."""
    import os
    import subprocess
    import sys

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "methods.md").read_text(encoding="utf-8"), re.S)
    [snippet] = [block for block in blocks if "register_models()" in block]
    documented = re.search(r'from_pretrained\("([^"]+)"\)', snippet)[1]
    rep = study / "results" / EXPERIMENT / "rep0"
    folders = sorted(str(p.parent) for p in rep.glob("**/model/config.json") if "ppo" not in p.parts
                     and p.parts[p.parts.index("rep0") + 1] in ("rm", "warm", "mrm"))
    assert len(folders) == len(REWARD_MODELS) - 3 + 1  # the ensembles have no model; rm_seed<k>: one more
    code = "\n".join([f"snippet = {snippet!r}", "import sys",
                      "for path in sys.argv[1:]:",
                      f"    exec(snippet.replace({documented!r}, path))",
                      "    print(type(model).__name__)"])
    result = subprocess.run([sys.executable, "-c", code, *folders], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = dict(zip(folders, result.stdout.split()))
    assert loaded[str(rep / "rm" / "mrm_pen" / "model")] == "MRMForSequenceClassification"
    assert loaded[str(rep / "rm" / "inform" / "model")] == "InfoRMForSequenceClassification"
    assert loaded[str(rep / "mrm" / "model")] == "Qwen3ForSequenceClassification"


def test_mrm_artifacts(study):
    import numpy as np

    from rmood.mrm.gda import load_gda

    results = study / "results" / EXPERIMENT / "rep0"
    n = len(read_jsonl(results / "pairs" / "train.explicit.jsonl"))
    arrays = [np.load(results / "mrm" / "representations" / f"{k}.npy", allow_pickle=False)
              for k in ("chosen", "rejected", "message")]
    assert all(a.shape == arrays[0].shape and a.shape[0] == n and a.dtype == np.float32 for a in arrays)
    gda = load_gda(results / "mrm" / "gda_parameters.npz")
    assert gda["n_pos"] == gda["n_neg"] == n and gda["weight"].shape == (arrays[0].shape[1],)
    compare = read_json(results / "mrm" / "compare_weights.json")
    assert -1.0 <= compare["weights"]["cosine"] <= 1.0
    assert compare["export_check"]["max_abs_error"] < 1e-3
    ood = read_json(results / "mrm" / "ood.json")
    assert 0.0 <= ood["auroc"] <= 1.0 and ood["n_ood"] > 0


def test_report(study):
    import pandas as pd

    from rmood.eval.estimates import SUMMARY_COLUMNS

    results = study / "results" / EXPERIMENT
    table = pd.read_csv(results / "reports" / "summary.csv")
    assert list(table.columns) == SUMMARY_COLUMNS and list(table["rm"]) == [*REWARD_MODELS, "rm_kl0.05"]
    assert (table["replicate"] == "pooled").all()  # one replicate: its rows are the pooled ones
    summary = table[table["rm"].isin(REWARD_MODELS)]  # the KL-penalised run's row has PPO columns only
    for column in ("id_accuracy", "ood_accuracy", "bon_gold_at_N", "bon_peak_gold"):
        assert summary[column].between(0, 1).all()
        assert (summary[f"{column}_lo"] <= summary[column]).all() and (summary[column] <= summary[f"{column}_hi"]).all()
    verdicts = {"over-optimised", "rises", "declines from the start", "no significant change"}
    assert set(summary["bon_verdict"]) <= verdicts and (summary["bon_fall"].dropna() >= 0).all()
    others = summary[summary["rm"] != "rm"]
    assert (others["bon_delta_at_N_mdd"] > 0).all() and (others["id_delta_mdd"] > 0).all()
    ppo = table[table["rm"].isin([*single_methods(), "rm_kl0.05"])]
    assert ppo["ppo_final_gold"].between(0, 1).all() and ppo["ppo_final_kl"].notna().all()
    assert summary[summary["rm"].str.startswith("ens_")]["ppo_final_gold"].isna().all()
    curves = pd.read_csv(results / "reports" / "curves.csv")
    assert sorted(curves[curves["method"] == "bon"]["point"].unique()) == [1, 2, 4]
    assert sorted(curves[curves["method"] == "ppo"]["point"].unique()) == [0, 2, 4]
    bon = read_json(results / "rep0" / "bon" / "report.json")
    assert bon["n"] == [1, 2, 4] and bon["kl"][0] == 0.0
    curve = read_json(results / "rep0" / "ppo" / "rm" / "curve.json")
    assert curve["steps"] == [0, 2, 4] and curve["kl"][0] == 0.0 and all(k > 0 for k in curve["kl"][1:])
    for k in (2, 4):
        assert (results / "rep0" / "ppo" / "rm" / f"step_{k}" / "model" / "model.safetensors").is_file()
        assert len(read_jsonl(results / "rep0" / "ppo" / "rm" / f"step_{k}" / "kl.jsonl")) == 16
    markdown = (results / "reports" / "mrm_eval.md").read_text()
    assert all(f"`{name}`" in markdown for name in REWARD_MODELS)
    assert "## Results (pooled over the replicates)" in markdown and "95% CI" in markdown
    assert "`replicate_scope: full`" in markdown and "detectable: ±" in markdown
    variance = pd.read_csv(results / "reports" / "variance.csv")
    assert {"bon_delta_at_N", "id_delta"} <= set(variance["comparison"])
    ppo_curves = curves[curves["method"] == "ppo"]
    assert ppo_curves["finished"].between(0, 1).all() and (ppo_curves["kl_per_token"] >= 0).all()
    assert set(ppo_curves["degenerate"]) <= {0, 1}
    budgets = pd.read_csv(results / "reports" / "budgets.csv")
    assert sorted(set(budgets["kl"])) == [1, 2, 4, 8] and set(budgets["rm"]) == set(ppo["rm"])
    assert budgets["reached"].between(0, 1).all()  # one replicate
    assert budgets[budgets["rm"] == "rm_kl0.05"]["delta_penalised"].isna().all()  # never compared with itself
    tuning = read_json(results / "tuning" / "ppo.json")  # the learning rate, chosen on seed 1000 (.test/config.yaml)
    assert tuning["seed"] == 1000 and tuning["learning_rate"] in (1e-3, 3e-3) and len(tuning["candidates"]) == 2
    assert (results / "rep1000" / "ppo" / "tune_lr0.003" / "curve.json").is_file()
    assert not (results / "rep1000" / "bon").exists()  # the tuning seed runs only what tuning needs
    assert f"**PPO learning rate** {tuning['learning_rate']:g}, chosen on seed 1000" in markdown
    assert "tune_lr" not in markdown and "rep1000" not in " ".join(map(str, table["replicate"]))
    for plot in ("bon_gold", "bon_proxy", "ppo_gold", "ppo_proxy", "ppo_collapse", "rm_accuracy", "forest"):
        assert (results / "reports" / "plots" / f"{plot}.png").read_bytes().startswith(b"\x89PNG")


def test_distribution_analysis(study):
    import numpy as np

    results = study / "results" / EXPERIMENT / "rep0" / "distribution"
    shared = results  # replicate 0's policy samples the prompts (replicate_scope full)
    for prompt in ("eval-000000", "eval-000001"):
        assert len(read_jsonl(shared / "samples" / f"{prompt}.jsonl")) == 8
        assert all(0 <= g["gold"] <= 1 for g in read_jsonl(shared / "gold" / f"{prompt}.jsonl"))
        for name in ("rm", "mrm", "mrm_pen"):
            features = np.load(results / name / f"representation_{prompt}.npy", allow_pickle=False)
            assert features.shape[0] == 8 and len(read_jsonl(results / name / f"rewards_{prompt}.jsonl")) == 8
    numbers = read_json(results / "rm" / "pca.json")
    assert all(abs(p["corr_w_reward"]) > 0.99 for p in numbers["prompts"])  # the rm's reward is linear in f
    for figure in ("tsne", "pca_pair", "pca_prompt_subtract", "pca_w_projection", "pca_residualize",
                   "pca_regression", "difference", "center"):
        assert (results / "visual" / f"{figure}.png").read_bytes().startswith(b"\x89PNG")
        assert read_json(results / "visual" / f"{figure}.json")
    assert "gaussian" in read_json(results / "visual" / "difference.json")["gaussian_test"]
    assert "## Representations" in (study / "results" / EXPERIMENT / "reports" / "mrm_eval.md").read_text()


def test_forcerun_train_inform_reruns_only_inform(study):
    """InfoRM's own downstream, and, since its latent space is where every PPO run's outliers are also counted, the
    latent distances and curve of every run."""
    changed = scheduled(snakemake(study, "-n", "mrm_eval", "--forcerun", "train_inform"))
    runs = ppo_runs(study)
    assert changed == {"train_inform": 1, **ONE_RM_DOWNSTREAM, "sft_latent": 1, "ppo_latent": runs, "ppo_curve": runs}


def test_html_report(study):
    snakemake(study, "--report", str(study / "report.html"), "mrm_eval")
    html = (study / "report.html").read_text(errors="replace")
    assert "summary.csv" in html and "bon_gold.png" in html


def test_dag_renders_as_mermaid(study):
    result = snakemake(study, "-n", "--quiet", "all", "--dag", "mermaid-js", "rm")
    assert "flowchart" in result.stdout and "train_rm" in result.stdout


def test_a_second_replicate_redraws_the_policy(study):
    from conftest import digests

    target = f"results/{EXPERIMENT}/rep1/bon/report.json"  # one replicate's artifact, built on its own
    assert set(scheduled(snakemake(study, "-n", target))) == {
        *(UPSTREAM - {"data"}), "gold_labeling", "gather_labels", "bon_sampling", "bon_gold", "gather_bon",
        "gather_bon_gold", "bon_score", "bon_ensemble_score", "bon_report", *RM_TRAINING, "rrm_augment", "rrm_label",
        "rrm_filter", "representations", "gda", "convert_to_mrm", "preference_pairs",
        "rl_sampling", "sft_distance", "bon_distance"}  # the outlier threshold: a quantile of the SFT eval samples
    narrow = scheduled(snakemake(study, "-n", "mrm_eval", overrides="replicates: [0, 1]\nreplicate_scope: after_sft"))
    # the narrower design shares the policy, the tuning seed's too (its rm: the third)
    assert narrow["sft"] == narrow["base"] == 1 and narrow["train_rm"] == 3
    results = study / "results" / EXPERIMENT
    rep0 = digests(results / "rep0")
    output = snakemake(study, "mrm_eval", overrides="replicates: [0, 1]")
    ran = set(re.findall(r"^(?:local)?rule (\w+):", output.stdout + output.stderr, re.M))
    assert {"base", "sft", "sft_sampling", "gold_labeling", "train_rm", "bon_sampling", "ppo", "report"} <= ran
    assert "data" not in ran and "dist_sampling" not in ran  # the prompts are shared; the analysis is replicate 0's
    assert digests(results / "rep0") == rep0  # the first replicate is untouched
    summary = (results / "reports" / "summary.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in summary[1:]] == ["pooled"] * 11 + ["0"] * 11 + ["1"] * 11  # 10 RMs, rm_kl0.05
    assert "## Every replicate" in (results / "reports" / "mrm_eval.md").read_text()
    policies = [(results / f"rep{r}" / "sft" / "model" / "model.safetensors").read_bytes() for r in (0, 1)]
    assert policies[0] != policies[1]  # another SFT policy
    test_prompts = [{p["id"] for p in read_jsonl(results / f"rep{r}" / "pairs" / "test.explicit.jsonl")} for r in (0, 1)]
    train_prompts = {p["id"] for p in read_jsonl(results / "rep1" / "pairs" / "train.explicit.jsonl")}
    assert test_prompts[0] & test_prompts[1] and not test_prompts[0] & train_prompts  # one split of the prompts


def test_new_representations_rebuild_only_the_mrm(study):  # last: it changes the study
    import numpy as np

    # Snakemake 9 compares input checksums, so a bare `touch` rebuilds nothing; new contents do.
    path = study / "results" / EXPERIMENT / "rep0" / "mrm" / "representations" / "chosen.npy"
    np.save(path, np.load(path, allow_pickle=False) + np.float32(1e-3))
    assert scheduled(snakemake(study, "-n", f"results/{EXPERIMENT}/rep0/mrm/gda_parameters.npz")) == {"gda": 1}
    changed = scheduled(snakemake(study, "-n", "mrm_eval"))
    runs = ppo_runs(study)  # every run's distances are in the metric of the GDA fit
    mrm_only = {"gda": 1, "convert_to_mrm": 1, "compare_weights": 1, "mrm_ood": 1, "rm_check": 2, "bon_score": 2,
                "ppo": 2, "ppo_eval": 2, "ppo_latent": 2, "sft_distance": 1, "bon_distance": 1, "ppo_distance": runs,
                "ppo_curve": runs}
    assert {rule: changed[rule] for rule in mrm_only} == mrm_only
    assert set(changed) - set(mrm_only) == {
        "rm_table", "bon_report", "report", "mrm_eval",
        # the figures of the training representations, and the distribution analysis of mrm and mrm_pen
        "tsne", "pca_mode", "difference", "center", "score_weight", "dist_label", "dist_representations", "dist_pca",
    }
    assert changed["score_weight"] == 2 and changed["dist_pca"] == 2
