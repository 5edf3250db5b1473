"""Training logs (`logging.report_to`): the config key, its way into every training step, and real runs of a tiny
reward model and SFT whose TensorBoard event files hold the loss at every logging step, and whose saved weights are
byte for byte those of a run without logging. (PPO's logs: tests/test_rl.py.)"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rmood.config import ConfigError, load_config
from rmood.io import write_jsonl
from rmood.steps import LOG_DIR, STEPS, logging_settings, settings
from test_models import TRAINER, conversations

pytest.importorskip("torch")
pytest.importorskip("trl")

LOGGING_STEPS = 10  # rmood.training.trainer_kwargs
TENSORBOARD = {"report_to": ["tensorboard"]}


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard event files in `log_dir`: tag -> [(step, value), …]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(log_dir.glob("events.out.tfevents.*"))
    assert len(events) == 1, events  # one run, one writer
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def files(folder: Path) -> dict[str, str]:
    """Every file under `folder` by relative path, with its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def rm_pairs(prompt_data, tmp_path_factory) -> Path:
    convs = conversations(prompt_data["preference"], 12)
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    write_jsonl(path, [{"chosen": convs[i], "rejected": convs[i + 1]} for i in range(0, 12, 2)])
    return path


# 6 pairs in batches of 2 for 7 epochs: 21 optimizer steps, so the loss is logged at steps 10 and 20.
RM = {**TRAINER, "epochs": 7, "batch_size": 2, "save_steps": 100}


@pytest.fixture(scope="module")
def unlogged_rm(tiny_base, rm_pairs, tmp_path_factory) -> Path:
    from rmood.rm.train import train_reward_model

    folder = tmp_path_factory.mktemp("unlogged")
    train_reward_model(str(tiny_base), str(rm_pairs), str(folder / "rm"), str(folder / "work"), 0, RM, "float32",
                       logging={"report_to": []}, log_dir=str(folder / "logs"))
    assert not (folder / "logs").exists()  # nothing is written without a reporter
    return folder / "rm"


def test_the_default_reports_nowhere_and_the_schema_names_the_reporters() -> None:
    assert load_config()["logging"] == {"report_to": []}
    assert load_config(assignments=["logging.report_to=[tensorboard, wandb]"])["logging"]["report_to"] == [
        "tensorboard", "wandb"]
    for value, message in (("[comet_ml]", "logging.report_to"), ("tensorboard", "logging.report_to"),
                           ("[tensorboard, tensorboard]", "logging.report_to")):
        with pytest.raises(ConfigError, match=message):
            load_config(assignments=[f"logging.report_to={value}"])


def test_every_training_step_takes_the_logging_section_and_a_run_folder() -> None:
    training = {name for name, step in STEPS.items() if step.logs}
    assert training == {"sft", "train_rm", "train_rrm", "train_inform", "train_ppo"}
    assert {name for name, step in STEPS.items() if step.trains} < training
    assert all(LOG_DIR in STEPS[name].work for name in training)
    assert not any(LOG_DIR in step.work for name, step in STEPS.items() if name not in training)


def test_each_job_gets_a_run_folder_beside_its_log_and_logging_is_no_snakemake_param(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a Snakemake job runs in the workflow folder
    config = load_config(assignments=["logging.report_to=[tensorboard]"])
    for log, run in (("logs/embedded/rep0/train_rm.log", "logs/embedded/runs/rep0/train_rm"),
                     ("logs/embedded/rep0/train_rm_seed/1.log", "logs/embedded/runs/rep0/train_rm_seed/1"),
                     (str(tmp_path / "logs/embedded/sft.log"), "logs/embedded/runs/sft"),  # run_job's absolute path
                     ("logs/embedded/rep2/ppo/mrm.log", "logs/embedded/runs/rep2/ppo/mrm"),
                     ("/elsewhere/job.log", "/elsewhere/job.runs")):
        assert logging_settings("train_rm", config, log) == {"logging": {"report_to": ["tensorboard"]}, "log_dir": run}
    assert logging_settings("sft", config) == {"logging": {"report_to": ["tensorboard"]}}  # the CLI: --log-dir
    assert logging_settings("rm_check", config, "logs/embedded/rep0/rm_check/rm.log") == {}
    # The rules' params (rmood.steps.settings) do not carry it, so switching logging on or off reruns no job.
    default = load_config()
    assert all(settings(name, config) == settings(name, default) for name in STEPS)


def test_a_reward_model_logs_its_loss_to_tensorboard_and_saves_the_same_bytes(tiny_base, rm_pairs, unlogged_rm,
                                                                               tmp_path) -> None:
    from rmood.rm.train import train_reward_model

    logs = tmp_path / "logs" / "rep0" / "train_rm"
    train_reward_model(str(tiny_base), str(rm_pairs), str(tmp_path / "rm"), str(tmp_path / "work"), 0, RM, "float32",
                       logging=TENSORBOARD, log_dir=str(logs))
    values = scalars(logs)
    assert [step for step, _ in values["train/loss"]] == [10, 20]
    assert all(loss > 0 for _, loss in values["train/loss"])
    for tag in ("train/learning_rate", "train/grad_norm"):
        assert [step for step, _ in values[tag]] == [10, 20], tag
    for tag in ("train/accuracy", "train/margin", "train/mean_reward", "train/epoch"):  # also in the summary at the end
        assert [step for step, _ in values[tag]] == [10, 20, 21], tag
    assert [step for step, _ in values["train/train_loss"]] == [21]
    print({tag: [(step, round(value, 4)) for step, value in points] for tag, points in values.items()})
    # The artifact: the same files, byte for byte, as the run without logging, and no log among them.
    assert files(tmp_path / "rm") == files(unlogged_rm)
    assert (tmp_path / "rm" / "model.safetensors").read_bytes() == (unlogged_rm / "model.safetensors").read_bytes()
    assert not (tmp_path / "work").exists()


def test_a_rerun_that_starts_afresh_replaces_the_earlier_run(tiny_base, rm_pairs, tmp_path) -> None:
    from rmood.rm.train import train_reward_model

    logs = tmp_path / "logs"
    (logs).mkdir()
    (logs / "events.out.tfevents.0.stale").write_bytes(b"")
    settings = {**RM, "epochs": 2}  # 6 steps: no loss logged before the summary
    train_reward_model(str(tiny_base), str(rm_pairs), str(tmp_path / "rm"), str(tmp_path / "work"), 0, settings,
                       "float32", logging=TENSORBOARD, log_dir=str(logs))
    values = scalars(logs)  # one event file: the stale one is gone
    assert "train/loss" not in values and [step for step, _ in values["train/train_loss"]] == [6]


def test_inform_logs_its_kl_term(tiny_base, rm_pairs, tmp_path) -> None:
    from rmood.rm.inform_trainer import train_inform

    logs = tmp_path / "logs"
    train_inform(str(tiny_base), str(rm_pairs), str(tmp_path / "rm"), str(tmp_path / "work"), 0, RM,
                 {"latent_dim": 8, "beta": 0.1}, "float32", logging=TENSORBOARD, log_dir=str(logs))
    values = scalars(logs)
    assert [step for step, _ in values["train/loss"]] == [10, 20]
    assert [step for step, _ in values["train/kl"]] == [10, 20, 21]  # and in the summary at the end


def test_sft_logs_its_loss_to_tensorboard(tiny_base, prompt_data, tmp_path) -> None:
    from rmood.sft.train import train_sft

    # 64 demonstrations in batches of 4: 16 steps, the loss logged at step 10.
    settings = {**TRAINER, "save_steps": 100, "chat_template_path": None,
                "lora": {"enabled": False, "r": 4, "alpha": 8, "dropout": 0.0}}
    logs = tmp_path / "logs"
    train_sft(str(tiny_base), str(prompt_data["sft"]), str(tmp_path / "sft"), str(tmp_path / "work"), 0, settings,
              "float32", logging=TENSORBOARD, log_dir=str(logs))
    values = scalars(logs)
    assert [step for step, _ in values["train/loss"]] == [LOGGING_STEPS]
    assert [step for step, _ in values["train/train_loss"]] == [16]
    assert not any(p.name.startswith("events.") for p in (tmp_path / "sft").rglob("*"))


def test_wandb_runs_offline_without_a_key_and_changes_no_weight(tiny_base, rm_pairs, unlogged_rm, tmp_path,
                                                                monkeypatch) -> None:
    pytest.importorskip("wandb")
    from rmood.rm.train import train_reward_model

    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))  # never the user's settings
    logs = tmp_path / "logs"
    train_reward_model(str(tiny_base), str(rm_pairs), str(tmp_path / "rm"), str(tmp_path / "work"), 0, RM, "float32",
                       logging={"report_to": ["wandb"]}, log_dir=str(logs))
    runs = list((logs / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list(logs.rglob("*"))
    assert list(runs[0].glob("run-*.wandb"))  # the run's records, for `wandb sync`
    assert (tmp_path / "rm" / "model.safetensors").read_bytes() == (unlogged_rm / "model.safetensors").read_bytes()
    import os
    assert "WANDB_MODE" not in os.environ and "TENSORBOARD_LOGGING_DIR" not in os.environ  # the environment restored


def test_a_reporter_that_is_not_installed_is_named(tmp_path, monkeypatch) -> None:
    import importlib.util

    from rmood.training import training_logs

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ValueError, match="wandb, which is not installed"):
        with training_logs({"report_to": ["tensorboard", "wandb"]}, tmp_path, False):
            pass
    with pytest.raises(ValueError, match="no log folder"):
        with training_logs(TENSORBOARD, None, False):
            pass
