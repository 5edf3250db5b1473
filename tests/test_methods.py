"""The registry of reward-model methods (rmood/rm/methods.py) is the one list: the config schema, the steps, the
rules and verl's check follow it, and a method added to it runs through the workflow."""

from __future__ import annotations

import shutil

import pytest

from conftest import EXPERIMENT, ROOT, run_snakemake, scheduled
from rmood.config import ConfigError, schema, servable_methods
from rmood.rm.methods import methods, single_methods
from rmood.steps import STEPS


def test_the_schema_lists_the_registered_methods() -> None:
    defs = schema()["$defs"]
    assert defs["reward_model"]["enum"] == list(methods()) == [
        "rm", "rrm", "inform", "golden", "warm", "ens_mean", "ens_wco", "ens_uwo", "mrm", "mrm_pen"]
    assert defs["single_reward_model"]["enum"] == single_methods() == [
        "rm", "rrm", "inform", "golden", "warm", "mrm", "mrm_pen"]
    assert defs["uploadable_model"]["enum"] == ["sft", *single_methods()]
    assert servable_methods() == ["rm", "rrm", "golden", "warm", "mrm"]  # plain *ForSequenceClassification


def test_each_trained_method_has_its_training_step() -> None:
    trained = {name: method.step for name, method in methods().items() if method.trained}
    assert trained == {"rm": "train_rm", "rrm": "train_rrm", "inform": "train_inform", "golden": "train_rm"}
    assert STEPS["train_rrm"].config == {"seed": "seed", "rm": "rm", "rrm": "rrm", "dtype": "model.dtype"}
    assert STEPS["train_rrm"].target == methods()["rrm"].trainer


def test_verl_refuses_a_method_vllm_cannot_serve(default_config) -> None:
    from rmood.config import validate_config

    config = default_config | {"rl": default_config["rl"] | {"engine": "verl", "reward_models": ["rm", "inform"]}}
    with pytest.raises(ConfigError, match=r"cannot load \['inform'\]; use \['rm', 'rrm', 'golden', 'warm', 'mrm'\]"):
        validate_config(config)


@pytest.fixture
def default_config() -> dict:
    import copy

    from rmood.config import load_config

    return copy.deepcopy(load_config())


def test_a_method_added_to_the_registry_is_trained_checked_and_optimised(tmp_path) -> None:
    """A copy of the checkout with one more trained method in the registry (Bradley–Terry's trainer under another
    name): named in reward_models and rl.reward_models, it gets its training rule, its check, its Best-of-N
    scores and a PPO run, and the other methods' jobs stay as they were."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("Snakefile", "rules", "rmood", "config", "workflow_scripts", "profiles", "report", ".test"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, checkout / name)
    registry = checkout / "rmood" / "rm" / "methods.py"
    entry = '    Method("mrm_pen",'
    assert registry.read_text().count(entry) == 1
    registry.write_text(registry.read_text().replace(
        entry, f'    Method("my_rm", "a trial", trainer="rmood.rm.train:train_reward_model"),\n{entry}'))
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "more.yaml").write_text("reward_models: [rm, my_rm]\nrl: {reward_models: [rm, my_rm]}\n"
                                       "distribution: {reward_models: [rm]}\nreport: {baseline: rm}\n")
    args = ["-n", "mrm_eval", "--configfile", str(ROOT / ".test" / "config.yaml"), str(workdir / "more.yaml")]
    result = run_snakemake(workdir, *args, snakefile=checkout / "Snakefile")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = scheduled(result)
    assert jobs["train_my_rm"] == 1 and "train_inform" not in jobs and jobs["rm_check"] == jobs["bon_score"] == 2
    outputs = {path for line in (result.stdout + result.stderr).splitlines() if line.strip().startswith("output:")
               for path in line.split(":", 1)[1].replace(",", " ").split()}
    rep = f"results/{EXPERIMENT}/rep0"
    assert {f"{rep}/rm/my_rm/model", f"{rep}/rm/my_rm/check.json", f"{rep}/bon/scores/my_rm.jsonl",
            f"{rep}/ppo/my_rm/curve.json"} <= outputs


def test_a_ppo_run_added_changes_no_other_runs_settings(default_config) -> None:
    """A PPO run's `rl` params leave out the keys listing the study's runs: adding a method to rl.reward_models (or
    a β, or tuning candidates) reruns no PPO run of another method."""
    from rmood.config import STUDY_KEYS, ppo_arms, run_settings

    rl = default_config["rl"]
    more = {**rl, "reward_models": [*rl["reward_models"], "ens_mean"], "eval_samples": 7,
            "kl_penalised": {**rl["kl_penalised"], "kl_coefs": [0.05, 0.1]},
            "tuning": {**rl["tuning"], "learning_rates": [1e-4]}}
    arms = ppo_arms(rl, default_config["reward_models"])
    assert {name: run_settings(rl, arm) for name, arm in arms.items()} == {
        name: run_settings(more, arm) for name, arm in arms.items()}
    settings = run_settings(rl, arms["rm"])
    assert not set(STUDY_KEYS) & settings.keys() and settings["steps"] == rl["steps"]
    assert (settings["kl_coef"], settings["learning_rate"]) == (rl["kl_coef"], rl["learning_rate"])
