"""`python -m rmood <step> …`: every workflow step as a command, and the glue Snakemake rules call."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rmood.config import DEFAULT, ROOT, ConfigError, accelerate_config, load_config
from rmood.steps import STEPS, logging_settings
from rmood.worker import THREAD_VARIABLES


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m rmood", description=__doc__)
    commands = top.add_subparsers(dest="step", required=True, metavar="STEP")
    for name, step in STEPS.items():
        sub = commands.add_parser(name, help=step.help, description=step.help)
        for path in (*step.inputs, *step.outputs, *step.work):
            sub.add_argument(f"--{path.name.replace('_', '-')}", dest=path.name, required=not path.optional,
                             nargs="+" if path.many else None, help=path.help)
        for option, kind in step.options.items():
            sub.add_argument(f"--{option.replace('_', '-')}", dest=option, type=kind, required=True)
        if step.config:
            sub.add_argument("--config", default=str(DEFAULT), help=f"experiment config (default {DEFAULT})")
            sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                             help="override a config key, e.g. --set sft.epochs=1 (repeatable)")
    reward = commands.add_parser("reward", help="print the reward of one response to one prompt",
                                 description="Score one prompt and response with a reward model (or ensemble).")
    reward.add_argument("--model", required=True, help="reward model directory")
    reward.add_argument("--prompt", required=True, help="the user's message")
    reward.add_argument("--response", required=True, help="the assistant's response")
    reward.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    results = commands.add_parser(
        "results", help="print the study's pooled results (from reports/summary.csv), or write them into a README",
        description="The pooled results of results/<experiment>/reports/summary.csv as Markdown: the tables and "
                    "the verdict sentences of reports/mrm_eval.md.")
    results.add_argument("--config", default=str(DEFAULT), help=f"experiment config (default {DEFAULT})")
    results.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    results.add_argument("--readme", help="replace the block between <!-- results:begin --> and "
                                          "<!-- results:end --> of this file instead of printing")
    commands.add_parser("unlock", help="unlock this folder if a killed run left Snakemake's lock (never a live run's)",
                        description="Remove the lock a killed Snakemake run left in this folder; refuse, changing "
                                    "nothing, while a run is alive here. `make study` runs it first.")
    profile = commands.add_parser(
        "profile", help="link profiles/slurm as your `slurm` Snakemake profile (`snakemake --profile slurm`)",
        description="Link this checkout's profiles/slurm as a Snakemake profile in your config folder "
                    "($XDG_CONFIG_HOME/snakemake, by default ~/.config/snakemake), so that `snakemake --profile "
                    "slurm` finds it from any folder. An existing profile of that name is never overwritten.")
    profile.add_argument("--name", default="slurm", help="the profile's name (default slurm)")
    return top


def unlock() -> None:
    from rmood.lock import LockHeld, release_stale

    try:
        if release_stale():
            print("rmood: a killed run had left Snakemake's lock on this folder, and no run is alive here: unlocked")
    except LockHeld as error:
        sys.exit(f"rmood unlock: {error}")


def link_user_profile(name: str) -> None:
    from rmood.profile import PROFILE, ProfileError, link_profile

    try:
        link, made = link_profile(name)
    except ProfileError as error:
        sys.exit(f"rmood profile: {error}")
    print(f"{'linked' if made else 'already linked'}: {link} -> {PROFILE}; use `snakemake --profile {name}`")


def print_results(config: str, set: list[str], readme: str | None) -> None:
    from rmood.eval.markdown import results_markdown, update_readme

    settings = load_config(config, set)
    block = results_markdown(Path("results") / settings["experiment"] / "reports" / "summary.csv", settings)
    if readme is None:
        print(block)
    else:
        update_readme(readme, block)


def print_reward(model: str, prompt: str, response: str, dtype: str) -> None:
    from rmood.rm.score import load_reward_model, score_conversations

    conversation = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    print(f"{score_conversations(*load_reward_model(model, dtype), [conversation], 1)[0]:.6f}")


def main(argv: list[str] | None = None) -> None:
    args = vars(parser().parse_args(argv))
    name = args.pop("step")
    if name == "reward":
        print_reward(**args)
        return
    if name == "unlock":
        unlock()
        return
    if name == "profile":
        link_user_profile(**args)
        return
    from rmood.generation import BackendError
    from rmood.io import DataError, WriteError

    if name == "results":
        try:
            print_results(**args)
        except (ConfigError, DataError, WriteError) as error:
            sys.exit(f"rmood results: {error}")
        return
    from rmood.steps import settings as config_settings

    step = STEPS[name]
    settings = {option: args.pop(option) for option in step.options}
    try:  # the config first, before torch is imported: a bad one is refused at once
        if step.config:
            config = load_config(args.pop("config"), args.pop("set"))
            settings |= config_settings(name, config) | logging_settings(name, config)
    except ConfigError as error:
        sys.exit(f"rmood {name}: {error}")
    from rmood.credentials import CredentialError
    from rmood.labeling.judge import JudgeError
    from rmood.rm.score import ModelError
    from rmood.upload import UploadError

    try:
        step.run(args, settings)
    except (DataError, WriteError, ModelError, BackendError, JudgeError, CredentialError, UploadError) as error:
        # bad input, or a service that cannot answer: one line, no traceback
        sys.exit(f"rmood {name}: {error}")


@contextlib.contextmanager
def redirect_to(log: str) -> Iterator[None]:
    """Send this process's stdout and stderr (Python and C level, tqdm included) to `log`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "w", encoding="utf-8") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)


def own_process(name: str, config: dict[str, Any]) -> list[str] | None:
    """The command that runs step `name` in a process of its own (the request file is appended), or None to
    run it in this process or the warm worker: a step with its own stack runs with `environments.<env>`
    when that is set, a training step under `accelerate launch` when `training.launcher` is accelerate."""
    step = STEPS[name]
    python = config["environments"][step.env] if step.env else None
    if python is not None and not Path(python).is_file():  # checked here, not at parse: dry runs need no envs
        raise ConfigError(f"config key 'environments.{step.env}': {python} does not exist (build it with `make envs`)")
    training = config["training"]
    accelerate = step.trains and training["launcher"] == "accelerate"
    if python is None and not accelerate:
        return None
    launcher = ["-m", "accelerate.commands.launch", "--config_file", str(accelerate_config(config)),
                "--num_processes", str(training["num_processes"])] if accelerate else []
    return [python or sys.executable, *launcher, "-m", "rmood.job"]


def run_own_process(command: list[str], request: dict[str, Any], log: str, threads: int) -> int:
    """Run `command` with the request as a JSON file argument, output to `log`; returns its exit code."""
    import subprocess
    import tempfile

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
           **{name: str(threads) for name in THREAD_VARIABLES}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as file, \
            open(log, "w", encoding="utf-8") as out:
        json.dump(request, file)
        file.flush()
        return subprocess.run([*command, file.name], stdout=out, stderr=subprocess.STDOUT, env=env).returncode


def run_job(snakemake: Any) -> None:
    """Run the step named by the rule's `params.step` with the rule's named inputs, outputs and params:
    in a process of its own when its environment or launcher asks for one (`own_process`), else in the
    warm worker when Snakemake started one (see rmood.worker), else in this process."""
    from rmood.worker import WorkerDied, limit_threads, submit

    name = snakemake.params.step
    step = STEPS[name]
    paths = {}
    for path in (*step.inputs, *step.outputs):
        files = snakemake.input if path in step.inputs else snakemake.output
        value = getattr(files, path.name)
        paths[path.name] = list(value) if path.many else str(value)
    settings = {k: v for k, v in snakemake.params.items() if k != "step"}
    settings |= logging_settings(name, snakemake.config, snakemake.log[0])  # not params: they change no output
    log = os.path.abspath(snakemake.log[0])
    request = {"step": name, "paths": paths, "settings": settings, "log": log, "cwd": os.getcwd(),
               "threads": snakemake.threads}
    command = own_process(name, snakemake.config)
    try:
        code = run_own_process(command, request, log, snakemake.threads) if command else submit(request)
    except WorkerDied as error:
        sys.exit(f"{name} failed: {error}; see {log}")
    if code is None:
        limit_threads(snakemake.threads)
        with redirect_to(log):
            step.run(paths, settings)
    elif code != 0:
        where = shlex.join(command) if command else "the rmood worker"
        sys.exit(f"{name} failed in {where} (exit code {code}); see {log}")
