"""Config validation and the few helpers every rule file uses. Nothing heavy is imported here."""

import sys

from snakemake.utils import min_version, validate

sys.path.insert(0, workflow.basedir)  # rmood from this checkout, installed or not

from rmood.config import check_config
from rmood.data import SPLITS
from rmood.labeling.pairs import FORMATS as PAIR_FORMATS, PAIR_SETS
from rmood.steps import settings

min_version("9.0")


validate(config, "../config/schema.yaml")
check_config(config)

EXPERIMENT = config["experiment"]
SHARDS = range(config["sampling"]["shards"])
PROMPT_SPLITS = ("preference", "ood")  # sampled by the SFT policy: pairs and ood pairs
MAIN_ENV = "../environment.yml"


wildcard_constraints:
    shard=r"\d+",
    seed=r"\d+",
    reduction="mean|wco|uwo",


def result(path):
    """An artifact path: results/<experiment>/<path>."""
    return f"results/{EXPERIMENT}/{path}"


def log_file(name):
    return f"logs/{EXPERIMENT}/{name}.log"


def benchmark_file(name):
    return f"benchmarks/{EXPERIMENT}/{name}.tsv"


def step_params(step, **extra):
    """Params for workflow_scripts/step.py: the step's name, its config values, then extras (which win)."""
    return {"step": step, **settings(step, config), **extra}


def data_files(splits):
    return [result(f"data/{split}.jsonl") for split in splits]


def rm_model(name):
    """The model folder of a reward model (WARM's lives in warm/, as the design fixes)."""
    return result("warm/model") if name == "warm" else result(f"rm/{name}/model")


def rm_training_pairs(name):
    """The explicit-format pairs a reward model was trained on (for its train accuracy)."""
    special = {"rrm": "rrm/filtered.jsonl", "golden": "pairs/golden.explicit.jsonl"}
    return result(special.get(name, "pairs/train.explicit.jsonl"))


def seed_models():
    """The Bradley-Terry RMs that WARM averages and the ensembles combine."""
    return [rm_model(f"rm_seed{seed}") for seed in config["warm"]["seeds"]]
