"""`python -m rmood <step> …`: every workflow step as a command (rules run theirs through `rmood.runner`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rmood.config import DEFAULT, ConfigError, load_config
from rmood.steps import STEPS, logging_settings


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
        description="The pooled results of results/<experiment>/reports/ (summary.csv, budgets.csv) as Markdown: the "
                    "tables and the verdict sentences of reports/mrm_eval.md.")
    results.add_argument("--config", default=str(DEFAULT), help=f"experiment config (default {DEFAULT})")
    results.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    results.add_argument("--readme", help="replace the block between <!-- results:begin --> and "
                                          "<!-- results:end --> of this file instead of printing")
    power = commands.add_parser(
        "power", help="how many replicates (and prompts) would detect a difference, from a finished study",
        description="From the variance components of a finished study (results/<experiment>/reports/variance.csv): "
                    "for every comparison with the baseline RM, the power of the study's test to find a true "
                    "difference of --difference, and the replicates needed at the study's prompts, twice and four "
                    "times as many.")
    power.add_argument("--difference", type=float, required=True, help="the true difference to detect, e.g. 0.02")
    power.add_argument("--power", type=float, default=0.8, help="the chance of detecting it (default 0.8)")
    power.add_argument("--config", default=str(DEFAULT), help=f"experiment config (default {DEFAULT})")
    power.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    calibration = commands.add_parser(
        "calibration", help="coverage, false positives and power of the report's statistics on simulated studies",
        description="Simulated studies with a known truth (rmood/eval/simulate.py): the coverage of the intervals, "
                    "the false-positive rate of every verdict and predicted against simulated power, as Markdown.")
    calibration.add_argument("--datasets", type=int, default=2000, help="simulated data sets per cell (default 2000)")
    calibration.add_argument("--readme", help="replace the block between <!-- calibration:begin --> and "
                                              "<!-- calibration:end --> of this file instead of printing")
    reference = commands.add_parser(
        "config-reference", help="the configuration reference (every key of config/schema.yaml) as Markdown",
        description="Every config key with its type, default, allowed values and description, generated from "
                    "config/schema.yaml and config/config.yaml (rmood/config_reference.py).")
    reference.add_argument("--out", help="write it to this file (config/README.md) instead of printing")
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


def write_reference(out: str | None) -> None:
    from rmood.config_reference import reference

    if out is None:
        print(reference(), end="")
    else:
        from rmood.io import atomic_open

        with atomic_open(out) as f:
            f.write(reference())


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
    block = results_markdown(Path("results") / settings["experiment"] / "reports", settings)
    if readme is None:
        print(block)
    else:
        update_readme(readme, block)


def print_power(difference: float, power: float, config: str, set: list[str]) -> None:
    from rmood.eval.power import power_table

    settings = load_config(config, set)
    variance = Path("results") / settings["experiment"] / "reports" / "variance.csv"
    print(power_table(variance, difference, settings["report"]["level"], power))


def print_calibration(datasets: int, readme: str | None) -> None:
    from rmood.eval.markdown import update_readme
    from rmood.eval.simulate import calibration

    block = calibration(datasets, progress=lambda what: print(f"rmood calibration: {what}", file=sys.stderr))
    if readme is None:
        print(block)
    else:
        update_readme(readme, block, "calibration")


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
    if name == "config-reference":
        write_reference(**args)
        return
    from rmood.generation import BackendError
    from rmood.io import DataError, WriteError

    reports = {"results": print_results, "power": print_power, "calibration": print_calibration}
    if name in reports:
        try:
            reports[name](**args)
        except (ConfigError, DataError, WriteError) as error:
            sys.exit(f"rmood {name}: {error}")
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
