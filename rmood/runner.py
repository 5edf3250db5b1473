"""Where a workflow step runs, decided in one place, and the glue every Snakemake rule calls (`run_job`).

A job of a rule (`workflow_scripts/step.py`) runs its step

- in a **process of its own** (`own_process`) when the step has its own software stack and `environments.<env>`
  names its interpreter, or when it trains and `training.launcher` is accelerate (`accelerate launch`);
- else in the run's **warm worker** (`rmood.worker`, a forked child of a process that imported the ML stack once)
  when the run started one and the step has no software stack of its own;
- else **here**, in the job's own process (`rmood.job.run`, the same code the worker's child runs).

The worker is a switch of the run (`use_worker`): config `worker: true` (the default) starts it for local runs,
`worker: false` (`--config worker=false`, or the environment variable `RMOOD_WORKER=0`) never; it is never started
on a cluster or when the rules run in software environments of their own (`--sdm conda`, `apptainer`,
`env-modules`), since the worker runs Snakemake's Python, not the rule's environment.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

from rmood.config import ConfigError, accelerate_config
from rmood.io import remove_stale_temporaries
from rmood.job import checkout_environment, thread_environment
from rmood.steps import STEPS, logging_settings

OWN_PROCESS, WORKER, HERE = "own process", "worker", "here"


def use_worker(config: dict[str, Any], local: bool, deployment: Collection[Any] = ()) -> bool:
    """Whether a run starts the warm worker: config `worker` true (the default), a local run
    (`workflow.local_exec`), no software deployment method (`workflow.deployment_settings.deployment_method`:
    with conda, apptainer or env modules each rule runs in its own environment, which a worker forked from
    Snakemake's Python is not), and `RMOOD_WORKER` not "0"."""
    return bool(config["worker"] and local and not deployment
                and os.environ.get("RMOOD_WORKER", "1") != "0")


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


def where(name: str, config: dict[str, Any]) -> str:
    """OWN_PROCESS (see `own_process`), WORKER (the run's warm worker if one listens, else HERE) or HERE."""
    return place(name, own_process(name, config))


def place(name: str, command: list[str] | None) -> str:
    """Where step `name` runs given its `own_process` command. A step with a software stack of its own (`env`)
    never goes to the worker: without `environments.<env>` it runs with the rule's interpreter (its conda env with
    --sdm conda), which the worker's is not."""
    if command is not None:
        return OWN_PROCESS
    return HERE if STEPS[name].env else WORKER


def own_process_env(threads: int) -> dict[str, str]:
    """The environment of a step's own process: this checkout importable first, `threads` threads per library."""
    return checkout_environment() | thread_environment(threads)


def run_own_process(command: list[str], request: dict[str, Any], log: str, threads: int) -> int:
    """Run `command` with the request as a JSON file argument, output to `log`; returns its exit code."""
    import subprocess
    import tempfile

    env = own_process_env(threads)
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as file, \
            open(log, "w", encoding="utf-8") as out:
        json.dump(request, file)
        file.flush()
        return subprocess.run([*command, file.name], stdout=out, stderr=subprocess.STDOUT, env=env).returncode


def job_request(snakemake: Any) -> dict[str, Any]:
    """The request of a Snakemake job: the step named by the rule's `params.step`, the rule's inputs and outputs
    by the names the step declares, its params and logging settings, its log, folder and threads."""
    name = snakemake.params.step
    step = STEPS[name]
    paths = {}
    for path in (*step.inputs, *step.outputs):
        files = snakemake.input if path in step.inputs else snakemake.output
        value = getattr(files, path.name)
        paths[path.name] = list(value) if path.many else str(value) if value else None  # optional: [] when left out
    settings = {k: v for k, v in snakemake.params.items() if k not in ("step", "code")}
    settings |= logging_settings(name, snakemake.config, snakemake.log[0])  # not params: they change no output
    return {"step": name, "paths": paths, "settings": settings, "log": os.path.abspath(snakemake.log[0]),
            "cwd": os.getcwd(), "threads": snakemake.threads}


def run_job(snakemake: Any) -> None:
    """Run a Snakemake job's step where `where` says; a failure ends the job naming the step and its log."""
    from rmood import job
    from rmood.worker import WorkerDied, submit

    request = job_request(snakemake)
    name, log = request["step"], request["log"]
    for output in snakemake.output:  # a killed earlier try of this job may have left its half-written outputs
        remove_stale_temporaries(output)
    command = own_process(name, snakemake.config)
    destination = place(name, command)
    code = None  # run here
    if destination == OWN_PROCESS:
        code = run_own_process(command, request, log, snakemake.threads)
    elif destination == WORKER:
        try:
            code = submit(request)  # None: no worker listens
        except WorkerDied as error:
            sys.exit(f"{name} failed: {error}; see {log}")
    if code is None:
        job.run(request)
    elif code != 0:
        runner = shlex.join(command) if command else "the rmood worker"
        sys.exit(f"{name} failed in {runner} (exit code {code}); see {log}")
