"""The reward-model methods: one registry that every list of methods in RMOOD is derived from.

A `Method` states its name, how its model is made (trained from the SFT policy on which pairs, by which
function; or by another step: WARM's merge, an ensemble's reduction, the MRM's conversion), where its model
lives, the config section its trainer takes, whether it is one model (PPO, the distribution analysis and uploads
need one; an ensemble is not) and whether vLLM can serve it (verl's reward), and the function that registers its
model classes with transformers. From the registry (`methods()`) come the config schema's lists of reward models
(`rmood.config`), the training steps of the trained methods (`rmood.rm.steps`) and their rules (rules/rm.smk),
the paths the rules read (rules/common.smk), the reward models verl accepts, the model classes
`rmood.rm.auto.register_models` registers and the modules the warm worker preloads.

Methods from outside the repository are plugins: a package names a `Method` in the entry-point group
`rmood.methods` (`[project.entry-points."rmood.methods"]` in its pyproject.toml), and once installed it is a method
like the built-in ones (examples/rmood-lenbt is one). A plugin trains its model from the SFT policy (`trainer` or
`trained_as`); its config section, if any, comes with its JSON schema and defaults.

Nothing heavy is imported here: this module is read when Snakemake parses the workflow.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

GROUP = "rmood.methods"  # the entry-point group of plugin methods

TRAIN_PAIRS = "pairs/train.implicit.jsonl"  # the preference pairs a trained method learns from (per replicate)
CHECK_PAIRS = "pairs/train.explicit.jsonl"  # the same pairs in explicit format: its train accuracy


@dataclass(frozen=True)
class Method:
    """A reward-model method. `trainer` ("module:function") makes a trained method's model from the SFT policy:
    it is called as `trainer(policy, pairs, model, work_dir, seed, rm, dtype, logging, log_dir)` plus its config
    `section` under that name, and runs as step `train_<name>`; `trained_as` names another method whose trainer
    and step it reuses on its own `pairs`. A method without either is made by the step `made_by`. Paths are
    relative to a replicate's folder."""

    name: str
    help: str
    trainer: str | None = None
    trained_as: str | None = None
    made_by: str | None = None
    pairs: str = TRAIN_PAIRS
    check_pairs: str = CHECK_PAIRS
    model: str | None = None  # default rm/<name>/model
    section: str | None = None
    schema: dict[str, Any] | None = None  # a plugin's section: its JSON schema (rmood.config.schema adds it)
    defaults: dict[str, Any] = field(default_factory=dict)  # and its values when the config leaves it out
    single: bool = True
    servable: bool = False
    register: str | None = None

    @property
    def model_path(self) -> str:
        """Its model folder, relative to a replicate's folder."""
        return self.model or f"rm/{self.name}/model"

    @property
    def step(self) -> str:
        """The step that makes its model."""
        if self.trainer is not None:
            return f"train_{self.name}"
        if self.trained_as is not None:
            return f"train_{self.trained_as}"
        assert self.made_by is not None
        return self.made_by

    @property
    def trained(self) -> bool:
        """Whether its model is trained from the SFT policy (by a rule of rules/rm.smk)."""
        return self.trainer is not None or self.trained_as is not None


def ensemble(reduction: str, help: str) -> Method:
    return Method(f"ens_{reduction}", f"ensemble of the member RMs: {help}", made_by="ensemble", single=False)


BUILT_IN: dict[str, Method] = {method.name: method for method in (
    Method("rm", "Bradley–Terry reward model (TRL's RewardTrainer)", trainer="rmood.rm.train:train_reward_model",
           servable=True),
    Method("rrm", "RRM: Bradley–Terry with a tie-aware loss on causally augmented, filtered pairs",
           trainer="rmood.rm.rrm:train_rrm", pairs="rrm/filtered.jsonl", check_pairs="rrm/filtered.jsonl",
           section="rrm", servable=True),
    Method("inform", "InfoRM: a variational information bottleneck on the reward head",
           trainer="rmood.rm.inform_trainer:train_inform", section="inform", register="rmood.rm.inform:register"),
    Method("golden", "reference: Bradley–Terry on the training pairs labelled by the gold reward", trained_as="rm",
           pairs="pairs/golden.implicit.jsonl", check_pairs="pairs/golden.explicit.jsonl", servable=True),
    Method("warm", "WARM: the element-wise mean of the member RMs' weights", made_by="warm_merge",
           model="warm/model", servable=True),
    ensemble("mean", "mean reward"),
    ensemble("wco", "worst-case (lowest) reward"),
    ensemble("uwo", "mean minus uncertainty (uncertainty-weighted)"),
    Method("mrm", "MRM: the rm's backbone with its GDA head folded into the score layer", made_by="convert_to_mrm",
           model="mrm/model", servable=True),
    Method("mrm_pen", "MRM with a Mahalanobis-distance penalty on the reward", made_by="convert_to_mrm",
           register="rmood.mrm.model:register"),
)}
NAME = re.compile(r"[a-z][a-z0-9_]*")
TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")  # "module:function"


class MethodError(ValueError):
    """A plugin method that cannot be used: the message names its entry point and package."""


def plugin_problem(method: Any, known: dict[str, Method]) -> str | None:
    """What makes `method`, loaded from an entry point, unusable next to the `known` methods, or None."""
    if not isinstance(method, Method):
        return f"is a {type(method).__name__}, not an rmood.rm.methods.Method"
    if not NAME.fullmatch(method.name) or method.name.startswith(("ens_", "rm_seed")):
        return f"{method.name!r} is not a method name (lower case, digits, _; not ens_* or rm_seed*)"
    if method.name in known:
        return f"reuses the name {method.name!r} of {'a built-in' if method.name in BUILT_IN else 'another'} method"
    if (method.trainer is None) == (method.trained_as is None) or method.made_by is not None:
        return "must give a trainer (\"module:function\") or trained_as (a method's name), and no made_by"
    if method.trained_as is not None and (method.trained_as not in known or known[method.trained_as].trainer is None):
        return f"trained_as {method.trained_as!r} names no method with a trainer"
    bad = [target for target in (method.trainer, method.register)
           if target is not None and not TARGET.fullmatch(target)]
    if bad:
        return f"{bad[0]!r} is not \"module:function\""
    if (method.section is None) != (method.schema is None):
        return "a config section needs its JSON schema (schema) and the schema its section"
    return None


@functools.cache
def methods() -> dict[str, Method]:
    """Every method by name: the built-in ones, then the plugins of the entry-point group `rmood.methods`, in the
    order of their entry points' names. A plugin that fails to load or to check raises MethodError."""
    found = dict(BUILT_IN)
    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        package = f"{entry.dist.name} {entry.dist.version}" if entry.dist else "an unknown package"
        where = f"reward-model plugin {entry.name} = {entry.value} (package {package})"
        try:
            method = entry.load()
        except Exception as error:  # noqa: BLE001 (any failure of a plugin's import is reported as one line)
            raise MethodError(f"{where}: cannot be imported: {type(error).__name__}: {error}") from error
        problem = plugin_problem(method, found)
        if problem:
            raise MethodError(f"{where}: {problem}")
        found[method.name] = method
    return found


def single_methods() -> list[str]:
    """The methods whose model is one model (not an ensemble): PPO and the distribution analysis can use them."""
    return [name for name, method in methods().items() if method.single]


def servable_methods() -> list[str]:
    """The methods vLLM can serve (plain `*ForSequenceClassification` models): those verl's PPO accepts."""
    return [name for name, method in methods().items() if method.servable]


def trainers() -> dict[str, Method]:
    """The methods with a trainer of their own, by the name of their training step."""
    return {method.step: method for method in methods().values() if method.trainer is not None}


def registrations() -> list[str]:
    """The functions ("module:function") registering the methods' model classes with transformers."""
    return list(dict.fromkeys(method.register for method in methods().values() if method.register))
