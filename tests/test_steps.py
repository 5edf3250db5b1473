"""The step registry and `python -m rmood`: declarations match the functions, the CLI is cheap to start."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rmood.cli import main, parser
from rmood.runner import HERE, OWN_PROCESS, WORKER, own_process, run_own_process, use_worker, where
from rmood.config import DEFAULT, ConfigError, load_config
from rmood.io import read_jsonl, write_jsonl
from rmood.steps import STAGES, STEPS, rule_mismatch, settings

ROOT = Path(__file__).resolve().parents[1]


def keyword_names(step) -> set[str]:
    paths = (*step.inputs, *step.outputs, *step.work)
    return {p.name for p in paths} | set(step.config) | set(step.options) | ({"logging"} if step.logs else set())


@pytest.mark.parametrize("name", sorted(STEPS))
def test_step_target_matches_its_declaration(name: str) -> None:
    step = STEPS[name]
    function = step.function()
    assert callable(function)
    parameters = inspect.signature(function).parameters
    kinds = {p.kind for p in parameters.values()}
    assert not kinds & {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}, name
    assert not kinds & {inspect.Parameter.POSITIONAL_ONLY}, name
    assert set(parameters) == keyword_names(step), name


def test_each_stage_declares_the_steps_of_its_own_code() -> None:
    """A step is declared beside its function: in rmood/<stage>/steps.py for a function in rmood/<stage>/ (the
    sampling steps of the top-level generation modules with the SFT stage that first samples; upload in its module)."""
    elsewhere = {"sample": "sft", "sample_vllm": "sft", "gather": "sft"}
    for stage, steps in STAGES.items():
        for name, step in steps.items():
            module = step.target.split(":")[0]
            assert elsewhere.get(name) == stage or module == f"rmood.{stage}" or module.startswith(f"rmood.{stage}."), \
                (stage, name, step.target)
            assert (ROOT / "rmood" / stage / "steps.py").is_file() or stage == "upload"


def test_a_rule_whose_names_differ_from_its_step_is_named() -> None:
    assert rule_mismatch("gold", ["samples", "prompt_files"], ["out"], ["step", "code", "gold", "judge", "dtype"]) is None
    assert rule_mismatch("train_rm", ["policy", "pairs"], ["model"], ["step", "code", "seed", "rm", "dtype", "work_dir"]) is None
    assert rule_mismatch("gold", ["sample", "prompt_files"], ["out"], ["step", "code", "gold", "judge", "dtype"]) == (
        "input names ['prompt_files', 'sample'] differ from the declaration of step 'gold' (missing ['samples'], "
        "not declared ['sample'])")
    assert "output names" in rule_mismatch("gold", ["samples", "prompt_files"], [], ["step", "code", "gold", "judge", "dtype"])
    assert "params names" in rule_mismatch("gold", ["samples", "prompt_files"], ["out"], ["step", "code", "gold", "dtype"])
    assert "missing ['code']" in rule_mismatch("gold", ["samples", "prompt_files"], ["out"],
                                               ["step", "gold", "judge", "dtype"])  # the code version is a param
    assert rule_mismatch("golden", [], [], ["step"]) == "names step 'golden', which no stage declares"


def test_a_dry_run_fails_when_a_rule_input_name_differs_from_its_step(tmp_path: Path) -> None:
    """The Snakefile checks every rule against its step when it is parsed: a dry run fails, naming the rule."""
    for name in ("Snakefile", "rules", "config", "workflow_scripts", "report", ".test"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, tmp_path / name)
    (tmp_path / "rmood").symlink_to(ROOT / "rmood")
    snakemake = [str(Path(sys.executable).parent / "snakemake"), "-n", "--quiet", "all",
                 "--configfile", ".test/config.yaml"]
    env = {**os.environ, "RMOOD_WORKER": "0"}
    passed = subprocess.run(snakemake, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert passed.returncode == 0, passed.stderr
    rules = tmp_path / "rules" / "rl.smk"
    text = rules.read_text(encoding="utf-8")
    bad = 'sample=replicate("ppo/{name}/step_{step}/samples.jsonl"),'
    rules.write_text(text.replace('samples=replicate("ppo/{name}/step_{step}/samples.jsonl"),', bad, 1), encoding="utf-8")
    assert bad in rules.read_text(encoding="utf-8")
    failed = subprocess.run(snakemake, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert failed.returncode != 0
    assert "rl_gold -- input names ['prompt_files', 'sample'] differ from the declaration of step 'gold'" \
        in failed.stderr


@pytest.mark.parametrize("name", sorted(STEPS))
def test_step_names_do_not_collide(name: str) -> None:
    step = STEPS[name]
    paths = [p.name for p in (*step.inputs, *step.outputs, *step.work)]
    names = paths + list(step.config) + list(step.options)
    assert len(names) == len(set(names)), name
    assert "config" not in names and "set" not in names and "step" not in names  # reserved by the CLI


@pytest.mark.parametrize("name", sorted(STEPS))
def test_step_config_keys_exist_in_the_default(name: str) -> None:
    values = settings(name, load_config())
    assert set(values) == set(STEPS[name].config)


def test_settings_for_sft() -> None:
    config = load_config()
    assert settings("sft", config) == {"seed": config["seed"], "sft": config["sft"], "dtype": config["model"]["dtype"]}
    config = load_config(assignments=["seed=5", "model.dtype=bfloat16", "sft.epochs=1"])
    values = settings("sft", config)
    assert values["seed"] == 5 and values["dtype"] == "bfloat16" and values["sft"]["epochs"] == 1


def test_parser_builds_every_step() -> None:
    top = parser()
    for name, step in STEPS.items():
        argv = [name]
        for path in (*step.inputs, *step.outputs, *step.work):
            argv += [f"--{path.name.replace('_', '-')}", "a", "b"] if path.many else [f"--{path.name.replace('_', '-')}", "a"]
        for option in step.options:
            argv += [f"--{option.replace('_', '-')}", "1"]
        if step.config:
            argv += ["--set", "seed=1", "--set", "sft.epochs=2"]
        args = vars(top.parse_args(argv))
        assert args.pop("step") == name
        for path in (*step.inputs, *step.outputs, *step.work):
            assert args.pop(path.name) == (["a", "b"] if path.many else "a")
        for option, kind in step.options.items():
            assert args.pop(option) == kind("1")
        if step.config:
            assert args.pop("config") == str(DEFAULT)
            assert args.pop("set") == ["seed=1", "sft.epochs=2"]
        assert args == {}, name


def test_parser_requires_every_path() -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["gather", "--shards", "a"])
    assert exit_info.value.code == 2


def test_the_paths_a_command_may_leave_out() -> None:
    """The log folder, the tuning results when the learning rate is a number (no tuning runs), and the InfoRM
    latent distances when there is no InfoRM."""
    args = vars(parser().parse_args(["train_rm", "--policy", "p", "--pairs", "x", "--model", "m", "--work-dir", "w"]))
    assert args["log_dir"] is None and args["work_dir"] == "w"
    args = vars(parser().parse_args(["train_ppo", "--policy", "p", "--reward-model", "r", "--prompts", "x", "--out",
                                     "o", "--work-dir", "w"]))
    assert args["tuning"] is None
    optional = {path.name for step in STEPS.values() for path in (*step.inputs, *step.outputs, *step.work)
                if path.optional}
    assert optional == {"log_dir", "tuning", "stop", "latent_files", "latent_reference"}


def test_cli_runs_a_step_in_process(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "prompts.jsonl", [{"id": "b"}, {"id": "a"}])
    write_jsonl(tmp_path / "s0.jsonl", [{"prompt_id": "a", "sample": 0, "response": "x", "finished": True}])
    write_jsonl(tmp_path / "s1.jsonl", [{"prompt_id": "b", "sample": 0, "response": "y", "finished": False}])
    out = tmp_path / "samples.jsonl"
    main(["gather", "--shards", str(tmp_path / "s0.jsonl"), str(tmp_path / "s1.jsonl"),
          "--prompt-files", str(tmp_path / "prompts.jsonl"), "--out", str(out)])
    assert [r["prompt_id"] for r in read_jsonl(out)] == ["b", "a"]


def test_steps_run_in_the_rule_process_by_default() -> None:
    config = load_config(DEFAULT)
    assert all(own_process(name, config) is None for name in STEPS)


def test_a_step_with_its_own_environment_runs_with_that_interpreter(tmp_path: Path) -> None:
    pythons = {env: tmp_path / env / "bin" / "python" for env in ("verl", "vllm")}
    for python in pythons.values():
        python.parent.mkdir(parents=True)
        python.touch()
    config = load_config(DEFAULT, [f"environments.{env}={python}" for env, python in pythons.items()])
    assert {step.env for step in STEPS.values()} == {None, "verl", "vllm"}
    for name, step in STEPS.items():
        expected = [str(pythons[step.env]), "-m", "rmood.job"] if step.env else None
        assert own_process(name, config) == expected, name


def test_a_missing_environment_is_named_when_its_step_runs() -> None:
    config = load_config(DEFAULT, ["environments.vllm=/no/such/python"])  # a dry run needs no environment
    with pytest.raises(ConfigError, match=r"'environments.vllm': /no/such/python does not exist \(build it with"):
        own_process("sample_vllm", config)


def test_training_steps_run_under_accelerate_launch_when_asked() -> None:
    config = load_config(DEFAULT, ["training.launcher=accelerate", "training.num_processes=4",
                                   "training.accelerate_config=config/accelerate/zero2.yaml"])
    trains = {name for name, step in STEPS.items() if step.trains}
    assert trains >= {"sft", "train_rm", "train_rrm", "train_inform"}
    for name in trains:
        assert own_process(name, config) == [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                                             str(ROOT / "config/accelerate/zero2.yaml"), "--num_processes", "4", "-m", "rmood.job"]
    assert all(own_process(name, config) is None for name in set(STEPS) - trains if not STEPS[name].env)


def test_the_worker_runs_local_jobs_only_when_the_rules_have_no_environment_of_their_own(monkeypatch) -> None:
    from snakemake_interface_executor_plugins.settings import DeploymentMethod

    monkeypatch.delenv("RMOOD_WORKER", raising=False)
    config = load_config(DEFAULT)
    assert config["worker"] is True and use_worker(config, local=True, deployment=set())
    assert not use_worker(config, local=False, deployment=set())  # a cluster
    for method in DeploymentMethod:  # --sdm conda, apptainer, env-modules: each rule in its own environment
        assert not use_worker(config, local=True, deployment={method}), method
    assert not use_worker(load_config(DEFAULT, ["worker=false"]), local=True, deployment=set())
    monkeypatch.setenv("RMOOD_WORKER", "0")
    assert not use_worker(config, local=True, deployment=set())


def test_a_step_with_its_own_environment_never_goes_to_the_worker() -> None:
    """With `environments.vllm` null (e.g. --sdm conda: the rule's conda env is the vLLM one), the vLLM step runs
    in the job's own process, never in the worker, which runs Snakemake's Python."""
    config = load_config(DEFAULT)
    assert config["environments"]["vllm"] is None and own_process("sample_vllm", config) is None
    assert where("sample_vllm", config) == HERE
    assert where("train_ppo_verl", config) == HERE
    assert {where(name, config) for name, step in STEPS.items() if not step.env} == {WORKER}


def test_where_a_step_runs_with_its_own_interpreter(tmp_path: Path) -> None:
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.touch()
    config = load_config(DEFAULT, [f"environments.vllm={python}", "training.launcher=accelerate"])
    assert where("sample_vllm", config) == OWN_PROCESS and where("train_rm", config) == OWN_PROCESS
    assert where("train_ppo_verl", config) == HERE and where("gather", config) == WORKER


class Named(list):
    """Snakemake's named lists (input, output, params) as far as `run_job` reads them: a list of the values, each
    also an attribute, and `items()`."""

    def __init__(self, **items: Any) -> None:
        super().__init__(items.values())
        self.__dict__.update(items)

    def items(self):
        return self.__dict__.items()


class FakeJob:
    """What Snakemake's `script:` gives workflow_scripts/step.py, for one `gather` job."""

    def __init__(self, tmp_path: Path, shards: list[str]) -> None:
        self.input = Named(shards=shards, prompt_files=[str(tmp_path / "prompts.jsonl")])
        self.output = Named(out=str(tmp_path / "samples.jsonl"))
        self.params = Named(step="gather")
        self.log = [str(tmp_path / "gather.log")]
        self.config = load_config(DEFAULT)
        self.threads = 1


def test_a_job_runs_here_with_its_output_and_traceback_in_its_log(tmp_path: Path, monkeypatch, capfd) -> None:
    from rmood.runner import run_job

    monkeypatch.delenv("RMOOD_WORKER_SOCKET", raising=False)  # no worker: the job runs in this process
    write_jsonl(tmp_path / "prompts.jsonl", [{"id": "b"}, {"id": "a"}])
    write_jsonl(tmp_path / "s0.jsonl", [{"prompt_id": "a", "sample": 0, "response": "x", "finished": True}])
    run_job(FakeJob(tmp_path, [str(tmp_path / "s0.jsonl")]))
    assert [r["prompt_id"] for r in read_jsonl(tmp_path / "samples.jsonl")] == ["a"]
    assert "rmood: gather computed in" in (tmp_path / "gather.log").read_text()
    print("after the job")  # this process's output is restored
    assert "after the job" in capfd.readouterr().out
    with pytest.raises(Exception, match="missing.jsonl"):
        run_job(FakeJob(tmp_path, [str(tmp_path / "missing.jsonl")]))
    assert "missing.jsonl" in (tmp_path / "gather.log").read_text()  # the traceback, in the job's log
    print("after the failed job")
    assert "after the failed job" in capfd.readouterr().out


def test_a_job_removes_what_a_killed_try_left_beside_its_output(tmp_path: Path, monkeypatch) -> None:
    from rmood.runner import run_job

    monkeypatch.delenv("RMOOD_WORKER_SOCKET", raising=False)
    write_jsonl(tmp_path / "prompts.jsonl", [{"id": "a"}])
    write_jsonl(tmp_path / "s0.jsonl", [{"prompt_id": "a", "sample": 0, "response": "x", "finished": True}])
    stale, kept = tmp_path / ".samples.jsonl.k1ll3d_x.tmp", tmp_path / ".prompts.jsonl.k1ll3d_x.tmp"
    stale.write_text("half")
    kept.write_text("another output's")
    run_job(FakeJob(tmp_path, [str(tmp_path / "s0.jsonl")]))
    assert not stale.exists() and kept.exists()


def test_a_step_runs_in_its_own_process_from_a_request_file(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "prompts.jsonl", [{"id": "b"}, {"id": "a"}])
    write_jsonl(tmp_path / "s0.jsonl", [{"prompt_id": "a", "sample": 0, "response": "x", "finished": True}])
    request = {"step": "gather", "settings": {}, "paths": {
        "shards": [str(tmp_path / "s0.jsonl"), str(tmp_path / "missing.jsonl")],
        "prompt_files": [str(tmp_path / "prompts.jsonl")], "out": str(tmp_path / "samples.jsonl")}}
    log = tmp_path / "job.log"
    assert run_own_process([sys.executable, "-m", "rmood.job"], request, str(log), 1) != 0
    assert "missing.jsonl" in log.read_text()  # the step's own error, in the job's log
    request["paths"]["shards"] = request["paths"]["shards"][:1]
    assert run_own_process([sys.executable, "-m", "rmood.job"], request, str(log), 1) == 0
    assert [r["prompt_id"] for r in read_jsonl(tmp_path / "samples.jsonl")] == ["a"]


# --- subprocesses: the real entry point ---------------------------------------------------------


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_module_help_lists_every_step() -> None:
    result = run_module("-m", "rmood", "--help")
    assert result.returncode == 0, result.stderr
    for name in STEPS:
        assert name in result.stdout


def test_module_without_a_step_fails() -> None:
    result = run_module("-m", "rmood")
    assert result.returncode == 2
    assert "required" in result.stderr


def test_every_step_help_exits_zero() -> None:
    processes = {
        name: subprocess.Popen([sys.executable, "-m", "rmood", name, "--help"], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for name in STEPS
    }  # in parallel: one interpreter start each, at once
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, (name, stderr)
        step = STEPS[name]
        for path in (*step.inputs, *step.outputs, *step.work):
            assert f"--{path.name.replace('_', '-')}" in stdout, (name, path.name)
        for option in step.options:
            assert f"--{option.replace('_', '-')}" in stdout, (name, option)
        assert ("--config" in stdout) == bool(step.config), name


def test_importing_the_cli_is_cheap() -> None:
    code = (
        "import sys\n"
        "import rmood.steps, rmood.cli, rmood.runner, rmood.job, rmood.config, rmood.io, rmood.generation\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = run_module("-c", code)
    assert result.returncode == 0, result.stderr
