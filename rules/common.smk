"""Config validation and the few helpers every rule file uses. Nothing heavy is imported here."""

import os
import sys

from snakemake.utils import min_version

sys.path.insert(0, workflow.basedir)  # rmood from this checkout, installed or not

from rmood.config import ConfigError, member_names, member_seed, validate_config
from rmood.config import canonical, ppo_arms, run_settings, tuning_arms
from rmood.eval import PLOTS
from rmood.data import SPLITS
from rmood.labeling.pairs import FORMATS as PAIR_FORMATS, PAIR_SETS
from rmood.rl.ppo import checkpoint_steps
from rmood.rl import TUNED
from rmood.rm.methods import CHECK_PAIRS, MethodError, methods

try:  # the plugin methods, before the steps they add: a broken one stops the parse with one line
    METHODS = methods()
except MethodError as error:
    sys.exit(f"rmood: {error}")

from rmood.steps import code_version, rule_mismatch, settings
from rmood import worker
from rmood.runner import use_worker

min_version("9.0")


try:
    validate_config(config)
except ConfigError as error:  # one line, no traceback
    sys.exit(f"rmood: {error}")

EXPERIMENT = config["experiment"]
WORKER = {}  # the warm worker process of a local run (rmood/worker.py)


onstart:
    # The warm worker (config `worker`, see rmood/runner.py): local runs only, and never when rules run in
    # software environments of their own (--sdm conda/apptainer/env-modules), which the worker's Python is not.
    os.environ.pop(worker.SOCKET_ENV, None)  # never a worker of another run
    if use_worker(
        config, workflow.local_exec, workflow.deployment_settings.deployment_method
    ):
        WORKER["process"] = worker.start()


onsuccess:
    if WORKER:
        worker.stop(WORKER.pop("process"))


onerror:
    if WORKER:
        worker.stop(WORKER.pop("process"))


SHARDS = range(config["sampling"]["shards"])
REPLICATES = config["replicates"]
# A replicate re-draws the policy side too (base model, SFT, its samples and their gold labels), or shares it.
FULL_SCOPE = config["replicate_scope"] == "full"
# A pretrained base model (model.source: a directory) carries no randomness: one copy serves every replicate.
PRETRAINED = config["model"]["source"] != "tiny"
# The replicate whose reward models the distribution analysis looks at and `upload` pushes.
FIRST_REPLICATE = REPLICATES[0]
PROMPT_SPLITS = ("preference", "ood")  # sampled by the SFT policy: pairs and ood pairs
MAIN_ENV = "../environment.yml"
# The step and conda env of the sampling backend, and of the PPO engine (its own work folder per engine).
VLLM = config["sampling"]["backend"] == "vllm"
SAMPLE_STEP = "sample_vllm" if VLLM else "sample"
SAMPLE_ENV = "../envs/vllm.yml" if VLLM else MAIN_ENV
VERL = config["rl"]["engine"] == "verl"
PPO_STEP = "train_ppo_verl" if VERL else "train_ppo"
PPO_ENV = "../envs/verl.yml" if VERL else MAIN_ENV
PPO_WORK = "verl" if VERL else "work"
REPRESENTATIONS = ("chosen", "rejected", "message")
BON_SAMPLING = {
    **config["sampling"],
    "n": config["bon"]["n"],
    "shards": config["bon"]["shards"],
}
RL_SAMPLING = {**config["sampling"], "n": config["rl"]["eval_samples"], "shards": 1}
# The reported PPO runs by name, and the tuning seed's (rl.learning_rate: tuned; else none).
PPO_ARMS = ppo_arms(config["rl"], config["reward_models"])
TUNING_ARMS = tuning_arms(config["rl"])
TUNING_SEED = config["rl"]["tuning"]["seed"]
PPO_STEPS = checkpoint_steps(config["rl"]["steps"], config["rl"]["checkpoints"])
PPO_EVAL_PER_RUN = config["rl"]["eval_jobs"] == "run"
DIST_PROMPTS = [f"eval-{i:06d}" for i in range(config["distribution"]["prompts"])]
DIST_SAMPLING = {
    **config["sampling"],
    "n": config["distribution"]["samples"],
    "shards": 1,
}
DIST_MODELS = [
    name
    for name in config["distribution"]["reward_models"]
    if name in config["reward_models"]
]
# The methods trained from the SFT policy: a rule each (rules/rm.smk).
TRAINED_METHODS = [method for method in METHODS.values() if method.trained]
PCA_MODES = ("pair", "prompt_subtract", "w_projection", "residualize", "regression")


wildcard_constraints:
    shard=r"\d+",
    prompt=r"eval-\d+",
    mode="|".join(PCA_MODES),
    step=r"\d+",
    rep=r"\d+",
    member=r"\d+",
    reduction="mean|wco|uwo",


def result(path):
    """An artifact all replicates share: results/<experiment>/<path>."""
    return f"results/{EXPERIMENT}/{path}"


def replicate(path, rep="{rep}"):
    """An artifact of one replicate: results/<experiment>/rep<seed>/<path> (the `{rep}` wildcard unless given)."""
    return f"results/{EXPERIMENT}/rep{rep}/{path}"


def log_file(name):
    return f"logs/{EXPERIMENT}/{name}.log"


def benchmark_file(name):
    return f"benchmarks/{EXPERIMENT}/{name}.tsv"


def replicate_seed(wildcards):
    """The seed of a per-replicate step: the replicate's own."""
    return int(wildcards.rep)


def policy_file(path, rep="{rep}", shared=False):
    """An artifact of the policy side (base model, SFT policy, its samples and their gold labels, the distribution
    analysis' samples): one per replicate when `replicate_scope` is full, shared by every replicate when after_sft
    (or when `shared`: a pretrained base model)."""
    return replicate(path, rep) if FULL_SCOPE and not shared else result(path)


def policy_job(name, shared=False):
    """The log and benchmark name of a policy-side job: rep{rep}/<name> when it is one replicate's, else <name>."""
    return f"rep{{rep}}/{name}" if FULL_SCOPE and not shared else name


def policy_seed(wildcards):
    """The seed of a policy-side job: its replicate's when it is one replicate's, else `seed`."""
    return int(wildcards.rep) if "rep" in wildcards.keys() else config["seed"]


def job_resources(kind):
    """What one job of `kind` asks the scheduler for (config `resources`; its CPUs are the rule's threads, which
    Slurm's cpus_per_task follows); GPUs only when it needs any."""
    job = config["resources"][kind]
    resources = {"mem_mb": job["mem_mb"], "runtime": job["runtime"]}
    if job["gpus"]:
        resources["gpu"] = job["gpus"]
        if config["resources"]["gpu_model"]:
            resources["gpu_model"] = config["resources"]["gpu_model"]
    return resources


def step_params(step, **extra):
    """Params for workflow_scripts/step.py: the step's name, the version of its code (a job reruns when the code it
    runs changes, rmood/code.py), its config values, then extras (which win); mappings with their keys sorted
    (`rmood.config.canonical`: the order the config files were merged in reruns nothing).
    """
    params = {
        "step": step,
        "code": code_version(step),
        **settings(step, config),
        **extra,
    }
    return {
        name: value if callable(value) else canonical(value)
        for name, value in params.items()
    }


def check_rule_steps(rules):
    """Stop the parse (a dry run too) when one of the rules running workflow_scripts/step.py names no declared
    step, or its named inputs, outputs or params differ from the step's declaration (rmood/<stage>/steps.py); a
    job would otherwise fail only when it runs. Called by the Snakefile once every rule is defined.
    """
    problems = []
    for each in rules:
        if not str(getattr(each, "script", None) or "").endswith(
            "workflow_scripts/step.py"
        ):
            continue
        step = each.params.get("step")
        problem = (
            rule_mismatch(
                step, each.input.keys(), each.output.keys(), each.params.keys()
            )
            if isinstance(step, str)
            else "runs workflow_scripts/step.py without params step=<name>"
        )
        if problem:
            problems.append(f"  {each.name} -- {problem}")
    if problems:
        sys.exit(
            "rmood: the names of these rules differ from their steps' declarations\n"
            + "\n".join(problems)
        )


def data_files(splits):
    return [result(f"data/{split}.jsonl") for split in splits]


def rm_model(name, rep="{rep}"):
    """The model folder of a reward model: its method's (rmood/rm/methods.py), or rm/<name>/model (a member)."""
    return replicate(
        METHODS[name].model_path if name in METHODS else f"rm/{name}/model", rep
    )


def rm_training_pairs(name, rep):
    """The explicit-format pairs a reward model was trained on (for its train accuracy)."""
    return replicate(METHODS[name].check_pairs if name in METHODS else CHECK_PAIRS, rep)


def arm(wildcards):
    """A PPO run (`rmood.config.Arm`), reported or tuning."""
    return {**PPO_ARMS, **TUNING_ARMS}[wildcards.name]


def arm_model(wildcards):
    """The reward model a PPO run optimises (and its proxy evaluation scores with)."""
    return rm_model(arm(wildcards).reward_model, wildcards.rep)


def arm_rl(wildcards):
    """The `rl` settings of a PPO run (`rmood.config.run_settings`)."""
    return run_settings(config["rl"], arm(wildcards))


def arm_tuning(wildcards):
    """The tuning result a PPO run takes its learning rate from (none when its rate is a number)."""
    return result("tuning/ppo.json") if arm(wildcards).learning_rate == TUNED else []


def ppo_policy(name, step, rep):
    """The policy after `step` PPO updates against `name` (step 0: the SFT policy)."""
    if int(step) == 0:
        return policy_file("sft/model", rep)
    return replicate(f"ppo/{name}/step_{step}/model", rep)


def rl_file(name, step, kind, rep):
    """A checkpoint's samples or gold labels; step 0 (the SFT policy) is sampled once per replicate for all RMs,
    as `sft`."""
    owner = "sft" if int(step) == 0 else name
    return replicate(f"ppo/{owner}/step_{step}/{kind}.jsonl", rep)


def latent_files(wildcards):
    """A PPO run's distances in InfoRM's latent space, every checkpoint (rules/mrm.smk): with an InfoRM among the
    reward models, and not for the tuning runs (they would need an InfoRM of the tuning seed, for nothing).
    """
    if "inform" not in config["reward_models"] or wildcards.name in TUNING_ARMS:
        return []
    return [
        rl_file(wildcards.name, step, "latent", wildcards.rep)
        for step in [0, *PPO_STEPS]
    ]


def latent_reference(wildcards):
    """The InfoRM latent space's Gaussian and outlier threshold, where `latent_files` has files."""
    return (
        replicate("rm/inform/latent_reference.npz", wildcards.rep)
        if latent_files(wildcards)
        else []
    )


def rl_outputs(kind, steps):
    """One PPO run's `kind` file (samples, gold, proxy, kl, distance) of every checkpoint in `steps`."""
    return [replicate(f"ppo/{{name}}/step_{step}/{kind}.jsonl") for step in steps]


def distribution_figures():
    """The figures of the distribution analysis (each with its numbers in a JSON file beside it), made for the
    first replicate's reward models."""
    visual = ("tsne", *(f"pca_{mode}" for mode in PCA_MODES), "difference", "center")
    return [
        *(
            replicate(f"distribution/{name}/pca.png", FIRST_REPLICATE)
            for name in DIST_MODELS
        ),
        *(
            replicate(f"distribution/visual/{figure}.png", FIRST_REPLICATE)
            for figure in visual
        ),
    ]


def mrm_reports(rep):
    """The MRM's own reports, when the MRM is among the reward models."""
    if "mrm" not in config["reward_models"]:
        return []
    return [replicate("mrm/compare_weights.json", rep), replicate("mrm/ood.json", rep)]


def upload_source(name):
    """The model directory pushed as `name`: the SFT policy or a reward model, of the first replicate."""
    return (
        policy_file("sft/model", FIRST_REPLICATE)
        if name == "sft"
        else rm_model(name, FIRST_REPLICATE)
    )


def uploads():
    """The upload receipts of the models in `upload.models`, when uploading is enabled."""
    if not config["upload"]["enabled"]:
        return []
    return [result(f"upload/{name}.json") for name in config["upload"]["models"]]


def member_models():
    """The model folders of the WARM/ensemble members (of the job's replicate)."""
    return [rm_model(name) for name in member_names(config["warm"]["seeds"])]


def member_files(path):
    """`path` (a per-replicate artifact of an RM `{name}`) of each WARM/ensemble member, in the members' order."""
    return [
        replicate(path.format(name=name))
        for name in member_names(config["warm"]["seeds"])
    ]


def every_replicate(path):
    """`path` (a per-replicate artifact) of every replicate."""
    return [replicate(path, rep) for rep in REPLICATES]
