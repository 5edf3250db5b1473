"""Every workflow step, collected from the stages that declare them beside their code (`rmood/<stage>/steps.py`,
and `rmood/upload.py`; see `rmood.declaration`), and the settings a step takes from the config.

Importing this module is cheap (no torch): step functions are imported only when a step runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rmood.data.steps import STEPS as DATA
from rmood.declaration import LOG_DIR, FileArg, Step
from rmood.distribution.steps import STEPS as DISTRIBUTION
from rmood.eval.steps import STEPS as EVAL
from rmood.labeling.steps import STEPS as LABELING
from rmood.mrm.steps import STEPS as MRM
from rmood.rl.steps import STEPS as RL
from rmood.rm.steps import STEPS as RM
from rmood.rrm_data.steps import STEPS as RRM_DATA
from rmood.sft.steps import STEPS as SFT
from rmood.upload import STEPS as UPLOAD

__all__ = ["LOG_DIR", "RUNS", "STAGES", "STEPS", "FileArg", "Step", "code_version", "logging_settings", "rule_mismatch",
           "settings"]

RUNS = "runs"  # a Snakemake job's run folder: logs/<experiment>/runs/<its log file's name without .log>

# Each stage's steps, in the order of the pipeline.
STAGES: dict[str, dict[str, Step]] = {
    "data": DATA,
    "sft": SFT,
    "labeling": LABELING,
    "rm": RM,
    "rrm_data": RRM_DATA,
    "mrm": MRM,
    "rl": RL,
    "eval": EVAL,
    "distribution": DISTRIBUTION,
    "upload": UPLOAD,
}
STEPS: dict[str, Step] = {name: step for steps in STAGES.values() for name, step in steps.items()}
if len(STEPS) != sum(map(len, STAGES.values())):
    raise ValueError("two stages declare a step of the same name")


def code_version(step: str) -> str:
    """The version of the code a step runs (`rmood.code`): a Snakemake param, so that a code change reruns its jobs."""
    from rmood.code import code_version as version

    return version(STEPS[step].target)


def settings(step: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config values a step takes, keyed by its keyword arguments (used for Snakemake `params`)."""
    from rmood.config import lookup

    return {arg: lookup(config, key) for arg, key in STEPS[step].config.items()}


def logging_settings(step: str, config: dict[str, Any], log: str | None = None) -> dict[str, Any]:
    """The `logging` section for a step that writes training logs, and, for a Snakemake job whose log file is `log`
    (logs/<experiment>/<name>.log), its run folder logs/<experiment>/runs/<name>: one per job, beside its log and
    outside its artifacts. Empty for other steps. Not Snakemake params, so switching logging on or off reruns no
    job (what a job saves does not depend on it)."""
    import os

    if not STEPS[step].logs:
        return {}
    values: dict[str, Any] = {"logging": config["logging"]}
    if log is not None:
        root = os.path.join("logs", config["experiment"])
        name = os.path.relpath(os.path.abspath(os.path.splitext(log)[0]), os.path.abspath(root))
        # a log file elsewhere (never in this workflow): the run folder beside it
        values["log_dir"] = os.path.splitext(log)[0] + f".{RUNS}" if name.startswith("..") else \
            os.path.join(root, RUNS, name)
    return values


def rule_mismatch(step: str, inputs: Iterable[str], outputs: Iterable[str], params: Iterable[str]) -> str | None:
    """What differs between a rule's named inputs, outputs and params and the declaration of the step it names
    (`params.step`), or None when they match. The Snakefile calls it for every rule when it is parsed, so a
    mismatch fails a dry run, not only the job (`rmood.runner.job_request` reads the files by these names)."""
    if step not in STEPS:
        return f"names step {step!r}, which no stage declares"
    declared = STEPS[step]
    expected = {
        "input": {arg.name for arg in declared.inputs},
        "output": {arg.name for arg in declared.outputs},
        # the work folders are the rule's to choose; the log run folder is not a param (see logging_settings)
        "params": {"step", "code", *declared.config, *declared.options,
                   *(arg.name for arg in declared.work if not arg.optional)},
    }
    problems = []
    for kind, names in (("input", set(inputs)), ("output", set(outputs)), ("params", set(params))):
        if names != expected[kind]:
            missing, extra = sorted(expected[kind] - names), sorted(names - expected[kind])
            problems.append(f"{kind} names {sorted(names)} differ from the declaration of step {step!r} "
                            f"(missing {missing}, not declared {extra})")
    return "; ".join(problems) or None
