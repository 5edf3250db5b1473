"""The experiment configuration: loading, `key=value` overrides, schema validation, cross-key checks.

The Snakefile and `python -m rmood` validate the same way: JSON Schema (`config/schema.yaml`: unknown keys, types,
ranges), then `check_config` for what a schema cannot say.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from rmood.rl import TUNED, tuning_run
from rmood.rm.methods import methods, servable_methods, single_methods

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schema.yaml"
DEFAULT = ROOT / "config" / "config.yaml"


class ConfigError(ValueError):
    """An invalid configuration; the message names the key."""


def template_path(path: str) -> Path:
    """A template path from config (`judge.*.template`): a relative one is taken from the project folder (config/judge/…)."""
    return ROOT / path


def lookup(config: dict[str, Any], key: str) -> Any:
    """`config["a"]["b"]` for the dotted key "a.b"."""
    value: Any = config
    for part in key.split("."):
        value = value[part]
    return value


def member_seed(replicate: int, member: int) -> int:
    """The training seed of WARM/ensemble member `member` (`warm.seeds`) in replicate `replicate`: a 31-bit hash of
    both, so members differ across replicates and never repeat the replicate's own `rm` (seed `replicate`)."""
    digest = hashlib.sha256(f"member/{replicate}/{member}".encode()).digest()
    return int.from_bytes(digest[:4], "little") >> 1


def member_names(seeds: list[int]) -> list[str]:
    """The Bradley-Terry RMs of `warm.seeds` that WARM averages and the ensembles combine: member 0 is the
    replicate's `rm` itself (not trained twice), member k is `rm_seed<k>`."""
    return ["rm" if member == 0 else f"rm_seed{member}" for member in seeds]


def override(config: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` assignments (values parsed as YAML) to a copy of `config`."""
    config = copy.deepcopy(config)
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep:
            raise ConfigError(f"override {assignment!r}: expected key=value")
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"config key {key!r}: {part!r} is not a section")
            node = node[part]
        try:
            node[leaf] = parse_value(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"config key {key!r}: {raw!r} is not a YAML value ({yaml_problem(error)})") from None
    return config


def yaml_problem(error: yaml.YAMLError) -> str:
    """What a YAML error says, in one line."""
    return getattr(error, "problem", None) or " ".join(str(error).split())


def parse_value(raw: str) -> Any:
    """A command-line value: a number if it reads as one (YAML misses `1e-4`), else YAML."""
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return yaml.safe_load(raw)


def check_config(config: dict[str, Any]) -> None:
    """Checks across keys that the schema cannot express."""
    data, synthetic = config["data"], config["data"]["synthetic"]
    if data["source"] == "synthetic":
        unknown = sorted(set(synthetic["ood_families"]) - set(synthetic["families"]))
        if unknown:
            raise ConfigError(f"config key 'data.synthetic.ood_families': {unknown} are not in data.synthetic.families")
        if len(set(synthetic["families"]) - set(synthetic["ood_families"])) < 2:
            raise ConfigError("config key 'data.synthetic.ood_families': fewer than 2 families left for training")
        if synthetic["min_items"] > synthetic["max_items"]:
            raise ConfigError("config key 'data.synthetic.min_items': larger than data.synthetic.max_items")
    elif not data["root"]:
        raise ConfigError("config key 'data.root': required when data.source is alpacafarm")
    if config["gold"]["source"] == "programmatic" and data["source"] != "synthetic":
        raise ConfigError("config key 'gold.source': the programmatic gold reward needs data.source synthetic")
    if config["report"]["baseline"] not in config["reward_models"]:
        raise ConfigError(f"config key 'report.baseline': {config['report']['baseline']!r} is not in reward_models")
    rl = config["rl"]
    if max(rl["checkpoints"]) > rl["steps"]:
        raise ConfigError(f"config key 'rl.checkpoints': update {max(rl['checkpoints'])} is past rl.steps "
                          f"({rl['steps']})")
    if len(rl["checkpoints"]) > MAX_CHECKPOINTS:
        raise ConfigError(f"config key 'rl.checkpoints': {len(rl['checkpoints'])} checkpoints per PPO run, more than "
                          f"{MAX_CHECKPOINTS}; each is sampled, labelled and scored")
    penalised = rl["kl_penalised"]["reward_model"]
    if rl["kl_penalised"]["kl_coefs"] and penalised not in config["reward_models"]:
        raise ConfigError(f"config key 'rl.kl_penalised.reward_model': {penalised!r} is not in reward_models")
    if rl["learning_rate"] == TUNED:
        if rl["tuning"]["seed"] in config["replicates"]:
            raise ConfigError(f"config key 'rl.tuning.seed': {rl['tuning']['seed']} is a reported replicate; the "
                              "learning rate must be chosen on a seed that is not")
        if rl["tuning"]["reward_model"] not in config["reward_models"]:
            raise ConfigError(f"config key 'rl.tuning.reward_model': {rl['tuning']['reward_model']!r} is not in "
                              "reward_models")
    prompts, eval_size = config["distribution"]["prompts"], data["sizes"]["eval"]
    if prompts > eval_size:
        raise ConfigError(f"config key 'distribution.prompts': {prompts} analysed eval prompts, more than "
                          f"data.sizes.eval ({eval_size})")
    if set(config["rl"]["reward_models"]) & set(config["reward_models"]):
        require_full_support(config["sampling"])
    for key, builtins in (("model.source", ("tiny",)), ("gold.source", GOLD_SOURCES)):
        value = lookup(config, key)
        if value not in builtins and not os.path.isfile(os.path.join(value, "config.json")):
            raise ConfigError(f"config key {key!r}: {value!r} is not a model directory (no config.json)")
    template = config["sft"]["chat_template_path"]
    if template is not None and not os.path.exists(template):
        raise ConfigError(f"config key 'sft.chat_template_path': {template!r} does not exist")
    if config["model"]["source"] != "tiny" and template is None and not has_chat_template(config["model"]["source"]):
        raise ConfigError(
            f"config key 'sft.chat_template_path': the tokenizer of model.source {config['model']['source']!r} has no "
            "chat template; give a .jinja template or a tokenizer directory to take it from"
        )
    if config["gold"]["source"] not in GOLD_SOURCES and not has_chat_template(config["gold"]["source"]):
        raise ConfigError(
            f"config key 'gold.source': the tokenizer of {config['gold']['source']!r} has no chat template, so the "
            "gold reward model cannot render conversations"
        )
    check_judge(config)
    check_cluster(config)


GOLD_SOURCES = ("programmatic", "judge")  # the gold rewards that are not a reward-model directory


def check_judge(config: dict[str, Any]) -> None:
    """Where gold.source or annotator.source is judge: an endpoint, a model and a template of the right fields."""
    from rmood.io import DataError
    from rmood.labeling.templates import load_template

    judge = config["judge"]
    for task, user in (("pointwise", "gold.source"), ("pairwise", "annotator.source")):
        if lookup(config, user) != "judge":
            continue
        for key in ("base_url", "model"):
            if not judge[key]:
                raise ConfigError(f"config key 'judge.{key}': required when {user} is judge")
        template = judge[task]["template"]
        try:
            load_template(template_path(template), task)
        except DataError as error:  # "<path>: reason"; the value is quoted instead (a path may hold a newline)
            reason = str(error).removeprefix(f"{template_path(template)}: ")
            raise ConfigError(f"config key 'judge.{task}.template': {template!r}: {reason}") from None


def require_full_support(sampling: dict[str, Any]) -> None:
    """Refuse a nucleus where the KL of PPO checkpoints is measured: the reference's may exclude sampled tokens."""
    if sampling["top_p"] < 1:
        raise ConfigError(f"config key 'sampling.top_p': {sampling['top_p']} < 1 samples from a nucleus the reference "
                          "policy may not share, so the KL of PPO checkpoints cannot be measured exactly; set it to 1")


MAX_CHECKPOINTS = 1000  # per PPO run: Snakemake holds every job of the DAG in memory


class Arm(NamedTuple):
    """A PPO run: the reward model it optimises, its KL coefficient and learning rate (a number or "tuned")."""

    reward_model: str
    kl_coef: float
    learning_rate: float | str


def ppo_arms(rl: dict[str, Any], reward_models: list[str]) -> dict[str, Arm]:
    """The reported PPO runs by name: one per RM of `rl.reward_models` also in `reward_models` (named as the RM,
    `rl.kl_coef`), then one per β of `rl.kl_penalised.kl_coefs` (named `<rm>_kl<β>`)."""
    rate = rl["learning_rate"]
    arms = {name: Arm(name, rl["kl_coef"], rate) for name in rl["reward_models"] if name in reward_models}
    name = rl["kl_penalised"]["reward_model"]
    arms.update({penalised_run(name, beta): Arm(name, beta, rate) for beta in rl["kl_penalised"]["kl_coefs"]})
    return arms


def canonical(value: Any) -> Any:
    """`value` with the keys of every mapping in it sorted. Snakemake compares a job's params as written, so two
    configs that differ only in key order (config files merged in another order: `--configfile config/config.yaml
    my.yaml` against `--configfile my.yaml`) would otherwise rerun every job."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


# The keys of `rl` that say which runs the study has and how they are evaluated, not how one run trains.
STUDY_KEYS = ("reward_models", "kl_penalised", "tuning", "eval_samples", "eval_jobs")


def run_settings(rl: dict[str, Any], arm: Arm) -> dict[str, Any]:
    """The `rl` settings of one PPO run: its own KL coefficient and learning rate, without the keys that list the
    study's runs (STUDY_KEYS), so that adding a run (a method in `rl.reward_models`) reruns no other."""
    return canonical({key: value for key, value in rl.items() if key not in STUDY_KEYS} | {
        "kl_coef": arm.kl_coef, "learning_rate": arm.learning_rate})


def penalised_run(reward_model: str, kl_coef: float) -> str:
    """The name of the PPO run against `reward_model` with KL coefficient `kl_coef` (`rl.kl_penalised`)."""
    return f"{reward_model}_kl{kl_coef:g}"


def tuning_arms(rl: dict[str, Any]) -> dict[str, Arm]:
    """The PPO runs of the tuning seed by name (`rmood.rl.tuning`), none unless `rl.learning_rate` is tuned."""
    if rl["learning_rate"] != TUNED:
        return {}
    tuning = rl["tuning"]
    return {tuning_run(rate): Arm(tuning["reward_model"], rl["kl_coef"], rate) for rate in tuning["learning_rates"]}


def penalised_baseline(rl: dict[str, Any], baseline: str) -> str | None:
    """The KL-penalised PPO run of the baseline RM (the first β of `rl.kl_penalised`), or None."""
    penalised = rl["kl_penalised"]
    return penalised_run(baseline, penalised["kl_coefs"][0]) if penalised["reward_model"] == baseline and \
        penalised["kl_coefs"] else None


def accelerate_config(config: dict[str, Any]) -> Path:
    """`training.accelerate_config`, a relative path taken from the project folder (config/accelerate/…)."""
    return ROOT / config["training"]["accelerate_config"]


def check_cluster(config: dict[str, Any]) -> None:
    """Checks of the GPU engines, launchers and upload settings."""
    rl, sampling, resources = config["rl"], config["sampling"], config["resources"]
    if rl["engine"] == "verl":
        verl = rl["verl"]
        runs = {**ppo_arms(rl, config["reward_models"]), **tuning_arms(rl)}.values()
        unservable = sorted({run.reward_model for run in runs} - set(servable_methods()))
        if unservable:
            raise ConfigError(f"config key 'rl.reward_models': verl serves reward models with vLLM, which cannot load "
                              f"{unservable}; use {servable_methods()}")
        if rl["missing_eos_penalty"] is not None:
            raise ConfigError("config key 'rl.missing_eos_penalty': the verl engine has no such penalty; set it to null")
        gpus = verl["n_gpus_per_node"] * verl["nnodes"]
        if rl["batch_size"] % rl["mini_batches"] or rl["batch_size"] % gpus:
            raise ConfigError(f"config key 'rl.batch_size': {rl['batch_size']} must be a multiple of rl.mini_batches "
                              f"({rl['mini_batches']}) and of the GPUs verl uses ({gpus})")
        if resources["ppo"]["gpus"] < verl["n_gpus_per_node"]:
            raise ConfigError(f"config key 'resources.ppo.gpus': {resources['ppo']['gpus']} GPUs per PPO job, fewer "
                              f"than rl.verl.n_gpus_per_node ({verl['n_gpus_per_node']})")
    if sampling["backend"] == "vllm":
        if sampling["temperature"] > 2:
            raise ConfigError("config key 'sampling.temperature': vLLM accepts at most 2")
        if resources["sample"]["gpus"] < sampling["vllm"]["tensor_parallel_size"]:
            raise ConfigError(f"config key 'resources.sample.gpus': {resources['sample']['gpus']} GPUs per sampling "
                              f"job, fewer than sampling.vllm.tensor_parallel_size "
                              f"({sampling['vllm']['tensor_parallel_size']})")
        if rl["eval_jobs"] == "run":
            raise ConfigError("config key 'rl.eval_jobs': run evaluates the checkpoints in the main environment, but "
                              "sampling.backend vllm samples in its own: use checkpoint")
    training = config["training"]
    if training["launcher"] == "accelerate" and not os.path.isfile(accelerate_config(config)):
        raise ConfigError(f"config key 'training.accelerate_config': {training['accelerate_config']!r} does not exist")
    upload = config["upload"]
    if upload["enabled"]:
        if not upload["namespace"]:
            raise ConfigError("config key 'upload.namespace': required when upload.enabled is true")
        missing = [name for name in upload["models"] if name != "sft" and name not in config["reward_models"]]
        if missing:
            raise ConfigError(f"config key 'upload.models': {missing} are not in reward_models")


def has_chat_template(model_dir: str | Path) -> bool:
    """Whether a Hugging Face model directory's tokenizer carries a chat template (checked on the files only)."""
    if any(os.path.isfile(os.path.join(model_dir, name)) for name in ("chat_template.jinja", "chat_template.json")):
        return True
    try:
        with open(os.path.join(model_dir, "tokenizer_config.json"), encoding="utf-8") as f:
            return bool(json.load(f).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


@functools.cache
def schema_validator() -> Any:
    """A JSON Schema validator of config/schema.yaml with the types stricter than YAML's: an integer is not a
    float (`2.0` shards would reach `range`), and a number is finite (NaN passes every bound)."""
    import jsonschema

    checker = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many({
        "integer": lambda _, value: isinstance(value, int) and not isinstance(value, bool),
        "number": lambda _, value: not isinstance(value, bool) and (
            isinstance(value, int) or isinstance(value, float) and math.isfinite(value)),
    })
    validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=checker)
    return validator(schema())


@functools.cache
def schema() -> dict[str, Any]:
    """config/schema.yaml with the names of the reward-model methods filled in from their registry
    (`rmood.rm.methods`). Read only: it is cached."""
    document = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    names = {"reward_model": list(methods()), "single_reward_model": single_methods(),
             "uploadable_model": ["sft", *single_methods()]}
    for name, values in names.items():
        document["$defs"][name]["enum"] = values
    for method in methods().values():  # a plugin's own section
        if method.schema is not None:
            if method.section in document["properties"]:
                raise ConfigError(f"config key {method.section!r}: the section of reward-model method {method.name!r} "
                                  "is already a config key")
            document["properties"][method.section] = method.schema
    return document


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate against the schema and across keys; a ConfigError names the key and the reason. The sections of
    plugin methods the config leaves out are filled in with their defaults first (in place)."""
    for method in methods().values():
        if method.schema is not None:
            config.setdefault(method.section, copy.deepcopy(method.defaults))
    error = next(schema_validator().iter_errors(config), None)
    if error is not None:
        key = ".".join(map(str, error.absolute_path)) or "(top level)"
        raise ConfigError(f"config key {key!r}: {error.message}")
    check_config(config)
    return config


def load_config(path: str | Path = DEFAULT, assignments: list[str] = ()) -> dict[str, Any]:
    """Read a YAML config, apply overrides and validate it; a ConfigError names the file (and line) or the key."""
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 ({error.reason} at byte {error.start})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise ConfigError(f"{where}: {yaml_problem(error)}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys")
    return validate_config(override(config, list(assignments)))
