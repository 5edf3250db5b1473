"""How a stage declares its steps: `Step` (its function, file arguments, config keys) and `FileArg`.

Each stage declares its steps beside its code, in `rmood/<stage>/steps.py` (the upload stage, one module, in
`rmood/upload.py`); `rmood/steps.py` collects them into `STEPS`. The same declaration serves `python -m rmood <step>
…` (argparse) and the Snakemake rules (`workflow_scripts/step.py`; the Snakefile checks every rule's input and output
names against it when it is parsed), so a rule and the command line cannot drift apart. Nothing heavy is imported
here: a step's function is imported only when the step runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def load(target: str) -> Any:
    """What a "module:function" target names, its module imported (a step's function, a method's trainer or
    model-class registration)."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class FileArg:
    """A file or directory argument: `many` takes a list; an `optional` one may be left out on the command line (the
    function gets None). A step's `work` arguments are scratch space, not artifacts."""

    name: str
    help: str
    many: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Step:
    target: str  # "module:function"
    help: str
    inputs: tuple[FileArg, ...]
    outputs: tuple[FileArg, ...]
    config: dict[str, str]  # keyword argument -> dotted config key
    options: dict[str, type] = field(default_factory=dict)  # keyword arguments that are not config keys
    work: tuple[FileArg, ...] = ()
    env: str | None = None  # its own software stack: run with the interpreter `environments.<env>` when set
    trains: bool = False  # runs a Trainer: under `accelerate launch` when `training.launcher` is accelerate
    # Writes training logs: takes the `logging` section and a run folder `log_dir` (LOG_DIR), neither of which is a
    # Snakemake param (see `rmood.steps.logging_settings`): they change no output, so turning logging on reruns nothing.
    logs: bool = False

    def function(self):
        return load(self.target)

    def written(self, paths: dict[str, Any]) -> list[Path]:
        """The paths among `paths` this step writes: its work folders, then its outputs."""
        found = []
        for arg in (*self.work, *self.outputs):
            value = paths.get(arg.name)
            found += [Path(path) for path in (value or [] if arg.many else [value]) if path is not None]
        return found

    def run(self, paths: dict[str, Any], settings: dict[str, Any]) -> None:
        """Call the step function with its paths and settings (config values and options); a failure to write that
        no `rmood.io.writing` block named is raised as a WriteError naming a work folder or output of the step."""
        from rmood.io import failed_write

        try:
            self.function()(**paths, **settings)
        except Exception as err:
            translated = failed_write(err, self.written(paths))
            if translated is None or translated is err:
                raise
            raise translated from err


# The run folder of a training step's logs (`logging.report_to`): outside its work folder and its artifact.
LOG_DIR = FileArg("log_dir", "run folder of the training logs (TensorBoard, W&B) when logging.report_to names any",
                  optional=True)
# The checkpoint folder of a training step (resume after a crash).
CHECKPOINTS = FileArg("work_dir", "checkpoint folder (resume after a crash)")
