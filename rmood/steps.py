"""Every workflow step, declared once: its function, file arguments and config keys.

The same declaration serves `python -m rmood <step> …` (argparse) and the Snakemake rules
(`workflow_scripts/step.py`), so a rule and the command line cannot drift apart. Importing this module
is cheap (no torch): step functions are imported only when a step runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Path:
    """A file or directory argument: `many` takes a list; `work` is scratch space, not an artifact; an `optional` one
    may be left out on the command line (the function gets None)."""

    name: str
    help: str
    many: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Step:
    target: str  # "module:function"
    help: str
    inputs: tuple[Path, ...]
    outputs: tuple[Path, ...]
    config: dict[str, str]  # keyword argument -> dotted config key
    options: dict[str, type] = field(default_factory=dict)  # keyword arguments that are not config keys
    work: tuple[Path, ...] = ()
    env: str | None = None  # its own software stack: run with the interpreter `environments.<env>` when set
    trains: bool = False  # runs a Trainer: under `accelerate launch` when `training.launcher` is accelerate
    # Writes training logs: takes the `logging` section and a run folder `log_dir` (LOG_DIR), neither of which is a
    # Snakemake param (see `logging_settings`): they change no output, so turning logging on reruns nothing.
    logs: bool = False

    def function(self):
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)

    def run(self, paths: dict[str, Any], settings: dict[str, Any]) -> None:
        """Call the step function with its paths and settings (config values and options)."""
        self.function()(**paths, **settings)


# The run folder of a training step's logs (`logging.report_to`): outside its work folder and its artifact.
LOG_DIR = Path("log_dir", "run folder of the training logs (TensorBoard, W&B) when logging.report_to names any",
               optional=True)
RUNS = "runs"  # a Snakemake job's run folder: logs/<experiment>/runs/<its log file's name without .log>

STEPS: dict[str, Step] = {
    "data": Step(
        "rmood.data.prepare:prepare_data",
        "write the normalised prompt splits data/<split>.jsonl",
        inputs=(),
        outputs=(Path("out", "one <split>.jsonl per split", many=True),),
        config={"seed": "seed", "data": "data"},
    ),
    "base": Step(
        "rmood.sft.base:make_base",
        "build the tiny base model and tokenizer (or copy a local HF model)",
        inputs=(Path("data_files", "JSONL files the tokenizer learns from", many=True),),
        outputs=(Path("out", "base model directory"),),
        config={"seed": "seed", "model": "model"},
    ),
    "sft": Step(
        "rmood.sft.train:train_sft",
        "supervised fine-tuning with TRL's SFTTrainer",
        inputs=(Path("base", "base model directory"), Path("train", "SFT split (JSONL)")),
        outputs=(Path("model", "fine-tuned model directory"),),
        work=(Path("work_dir", "checkpoint folder (resume after a crash)"), LOG_DIR),
        config={"seed": "seed", "sft": "sft", "dtype": "model.dtype"},
        trains=True,
        logs=True,
    ),
    "sample": Step(
        "rmood.generation:sample_shard",
        "sample n responses per prompt for one shard (resumable)",
        inputs=(Path("model", "policy directory"), Path("prompt_files", "prompt JSONL files", many=True)),
        outputs=(Path("out", "shard JSONL"),),
        config={"seed": "seed", "sampling": "sampling", "dtype": "model.dtype"},
        options={"shard": int},
    ),
    "sample_vllm": Step(
        "rmood.vllm_sampling:sample_shard_vllm",
        "sample n responses per prompt for one shard with vLLM (resumable; CUDA GPUs)",
        inputs=(Path("model", "policy directory"), Path("prompt_files", "prompt JSONL files", many=True)),
        outputs=(Path("out", "shard JSONL"),),
        config={"seed": "seed", "sampling": "sampling", "dtype": "model.dtype"},
        options={"shard": int},
        env="vllm",
    ),
    "gather": Step(
        "rmood.generation:gather",
        "concatenate the shards of samples (or of their labels) in prompt order",
        inputs=(Path("shards", "shard JSONL files", many=True), Path("prompt_files", "prompt JSONL files", many=True)),
        outputs=(Path("out", "gathered JSONL"),),
        config={},
    ),
    "gold": Step(
        "rmood.labeling.gold:label_gold",
        "gold score of every sampled response",
        inputs=(Path("samples", "samples JSONL"), Path("prompt_files", "prompt JSONL files", many=True)),
        outputs=(Path("out", "gold labels JSONL"),),
        config={"gold": "gold", "judge": "judge", "dtype": "model.dtype"},
    ),
    "pairs": Step(
        "rmood.labeling.pairs:make_pairs",
        "preference pairs (train/test/ood, explicit and implicit formats)",
        inputs=(
            Path("samples", "samples JSONL"),
            Path("gold_labels", "gold labels JSONL"),
            Path("preference", "preference split JSONL"),
            Path("ood", "ood split JSONL"),
        ),
        outputs=(Path("out", "{train,test,ood,golden}.{explicit,implicit}.jsonl", many=True),),
        config={"seed": "seed", "pairs": "pairs", "annotator": "annotator", "judge": "judge"},
        options={"replicate": int},
    ),
    "score": Step(
        "rmood.rm.score:score_samples",
        "the proxy reward of every sampled response under a reward model",
        inputs=(
            Path("model", "reward model directory"),
            Path("samples", "samples JSONL"),
            Path("prompt_files", "prompt JSONL files", many=True),
        ),
        outputs=(Path("out", "rewards JSONL"),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "train_rm": Step(
        "rmood.rm.train:train_reward_model",
        "Bradley–Terry reward model with TRL's RewardTrainer",
        inputs=(Path("policy", "SFT model directory"), Path("pairs", "implicit-format training pairs")),
        outputs=(Path("model", "reward model directory"),),
        work=(Path("work_dir", "checkpoint folder (resume after a crash)"), LOG_DIR),
        config={"seed": "seed", "rm": "rm", "dtype": "model.dtype"},
        trains=True,
        logs=True,
    ),
    "rrm_augment": Step(
        "rmood.rrm_data.augment:augment_pairs",
        "RRM: add non-contextual and neutral (tie) pairs to the training pairs",
        inputs=(Path("pairs", "explicit train pairs"),),
        outputs=(Path("out", "augmented pairs JSONL"),),
        config={"seed": "seed", "rrm": "rrm"},
    ),
    "rrm_label": Step(
        "rmood.rrm_data.label:label_pairs",
        "RRM: the trained rm's win probability for every augmented pair",
        inputs=(Path("model", "reward model directory"), Path("pairs", "augmented pairs JSONL")),
        outputs=(Path("out", "labelled pairs JSONL"),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "rrm_filter": Step(
        "rmood.rrm_data.filter:filter_pairs",
        "RRM: keep the augmented pairs the rm gets wrong by at least the threshold",
        inputs=(Path("labeled", "labelled pairs JSONL"),),
        outputs=(Path("out", "filtered pairs JSONL"), Path("stats", "pairs kept per type (JSON)")),
        config={"rrm": "rrm"},
    ),
    "train_rrm": Step(
        "rmood.rm.rrm:train_rrm",
        "RRM: reward model with the tie-aware loss on the filtered pairs",
        inputs=(Path("policy", "SFT model directory"), Path("pairs", "filtered RRM pairs")),
        outputs=(Path("model", "reward model directory"),),
        work=(Path("work_dir", "checkpoint folder (resume after a crash)"), LOG_DIR),
        config={"seed": "seed", "rm": "rm", "rrm": "rrm", "dtype": "model.dtype"},
        trains=True,
        logs=True,
    ),
    "train_inform": Step(
        "rmood.rm.inform_trainer:train_inform",
        "InfoRM: reward model with a variational information bottleneck",
        inputs=(Path("policy", "SFT model directory"), Path("pairs", "implicit-format training pairs")),
        outputs=(Path("model", "reward model directory"),),
        work=(Path("work_dir", "checkpoint folder (resume after a crash)"), LOG_DIR),
        config={"seed": "seed", "rm": "rm", "inform": "inform", "dtype": "model.dtype"},
        trains=True,
        logs=True,
    ),
    "warm_merge": Step(
        "rmood.rm.warm:merge_models",
        "WARM: average the weights of several reward models",
        inputs=(Path("models", "reward model directories", many=True),),
        outputs=(Path("out", "merged reward model directory"),),
        config={},
    ),
    "ensemble": Step(
        "rmood.rm.ensemble:make_ensemble",
        "an ensemble of reward models (mean, worst-case or uncertainty-weighted)",
        inputs=(Path("models", "member reward model directories", many=True),),
        outputs=(Path("out", "ensemble folder"),),
        config={"uwo_lambda": "ensemble.uwo_lambda"},
        options={"reduction": str},
    ),
    "representations": Step(
        "rmood.mrm.representations:pair_representations",
        "final-layer last-token representations of chosen, rejected and prompt-only inputs",
        inputs=(Path("model", "reward model directory"), Path("pairs", "explicit pairs JSONL")),
        outputs=(Path("out", "chosen.npy, rejected.npy and message.npy", many=True),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "gda": Step(
        "rmood.mrm.gda:fit_gda",
        "Gaussian discriminant analysis (streaming, Ledoit-Wolf) -> gda_parameters.npz",
        inputs=(Path("chosen", "chosen representations (.npy)"), Path("rejected", "rejected representations (.npy)")),
        outputs=(Path("out", "gda_parameters.npz"),),
        config={"chunk_size": "mrm.chunk_size"},
    ),
    "convert_to_mrm": Step(
        "rmood.mrm.convert:convert_to_mrm",
        "fold the GDA head into the rm's score layer (mrm) and build the penalised rmood MRM (mrm_pen)",
        inputs=(Path("rm", "Bradley-Terry reward model directory"), Path("gda", "gda_parameters.npz")),
        outputs=(Path("model", "exported MRM directory"), Path("pen_model", "penalised MRM directory")),
        config={"penalty": "mrm.penalty"},
    ),
    "compare_weights": Step(
        "rmood.mrm.check:compare_weights",
        "GDA weight vs the rm's score weight, reward correlation, checks of the converted models",
        inputs=(
            Path("rm", "Bradley-Terry reward model directory"),
            Path("mrm", "exported MRM directory"),
            Path("pen_model", "penalised MRM directory"),
            Path("gda", "gda_parameters.npz"),
            Path("pairs", "explicit test pairs"),
            Path("train_pairs", "explicit train pairs"),
            Path("representations", "chosen.npy and rejected.npy of the train pairs", many=True),
        ),
        outputs=(Path("out", "compare_weights.json"),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "mrm_ood": Step(
        "rmood.mrm.check:ood_auroc",
        "AUROC of the Mahalanobis distance: in-distribution test responses vs ood responses",
        inputs=(
            Path("model", "exported MRM directory"),
            Path("gda", "gda_parameters.npz"),
            Path("test", "explicit test pairs"),
            Path("ood", "explicit ood pairs"),
        ),
        outputs=(Path("out", "ood.json"),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "rm_check": Step(
        "rmood.rm.check:check_rm",
        "train / test (vs gold) / ood accuracy of a reward model",
        inputs=(
            Path("model", "reward model directory"),
            Path("train", "explicit train pairs"),
            Path("test", "explicit test pairs"),
            Path("ood", "explicit ood pairs"),
        ),
        outputs=(Path("out", "check.json"),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "train_ppo": Step(
        "rmood.rl.ppo:train_ppo",
        "PPO (TRL) of the SFT policy against a reward model, saving the policy every rl.save_every updates",
        inputs=(
            Path("policy", "SFT model directory"),
            Path("reward_model", "reward model directory"),
            Path("prompts", "prompt JSONL for the rollouts"),
        ),
        outputs=(Path("out", "ppo/<rm>/step_<k>/model directories", many=True),),
        work=(Path("work_dir", "scratch folder"), LOG_DIR),
        config={"seed": "seed", "rl": "rl", "sampling": "sampling", "dtype": "model.dtype"},
        logs=True,
    ),
    "train_ppo_verl": Step(
        "rmood.rl.verl:train_ppo_verl",
        "PPO (verl: Ray, FSDP, vLLM rollouts) of the SFT policy against a reward model, saving the policy every "
        "rl.save_every updates",
        inputs=(
            Path("policy", "SFT model directory"),
            Path("reward_model", "reward model directory (rm, rrm, golden, warm or mrm)"),
            Path("prompts", "prompt JSONL for the rollouts"),
        ),
        outputs=(Path("out", "ppo/<rm>/step_<k>/model directories", many=True),),
        work=(Path("work_dir", "verl's checkpoints (resume), config.yaml, prompts.parquet"),),
        config={"seed": "seed", "rl": "rl", "sampling": "sampling"},
        env="verl",
    ),
    "ppo_eval": Step(
        "rmood.rl.evaluate:evaluate_run",
        "every checkpoint of one PPO run: its samples, their gold and proxy rewards and KL from the reference",
        inputs=(
            Path("policies", "ppo/<rm>/step_<k>/model directories", many=True),
            Path("reference", "reference (SFT) directory"),
            Path("reward_model", "reward model directory"),
            Path("step0_samples", "the SFT policy's samples (step 0)"),
            Path("prompt_files", "the eval prompts JSONL", many=True),
        ),
        outputs=(
            Path("samples", "step_<k>/samples.jsonl per checkpoint", many=True),
            Path("gold_labels", "step_<k>/gold.jsonl per checkpoint", many=True),
            Path("proxy", "step_0/proxy.jsonl, then step_<k>/proxy.jsonl per checkpoint", many=True),
            Path("kl", "step_<k>/kl.jsonl per checkpoint", many=True),
        ),
        config={"seed": "seed", "sampling": "sampling", "gold": "gold", "judge": "judge", "scoring": "scoring",
                "dtype": "model.dtype"},
    ),
    "rl_kl": Step(
        "rmood.rl.kl:sequence_kl",
        "KL(policy || reference) of each of the policy's samples, on its sampled tokens at the sampling temperature",
        inputs=(
            Path("policy", "policy directory"),
            Path("reference", "reference (SFT) directory"),
            Path("samples", "the policy's samples JSONL (with their sampled `tokens`)"),
            Path("prompts", "prompt JSONL"),
        ),
        outputs=(Path("out", "kl.jsonl: {prompt_id, sample, kl, tokens} per sample"),),
        config={"scoring": "scoring", "sampling": "sampling", "dtype": "model.dtype"},
    ),
    "bon_report": Step(
        "rmood.eval.bon:bon_report",
        "expected gold and proxy of best-of-n against KL_BoN, per reward model",
        inputs=(Path("scores", "bon/scores/<rm>.jsonl files", many=True), Path("gold", "gold labels JSONL")),
        outputs=(Path("out", "bon/report.json"), Path("per_prompt", "bon/per_prompt.npz")),
        config={"n": "bon.n"},
    ),
    "ppo_curve": Step(
        "rmood.eval.ppo_curve:ppo_curve",
        "KL, gold and proxy of every checkpoint of one PPO run",
        inputs=(
            Path("kl_files", "kl.jsonl per step", many=True),
            Path("gold_files", "gold.jsonl per step", many=True),
            Path("proxy_files", "proxy.jsonl per step", many=True),
        ),
        outputs=(Path("out", "curve.json"), Path("per_prompt", "per_prompt.npz")),
        config={},
        options={"rm": str},
    ),
    "report": Step(
        "rmood.eval.report:make_report",
        "the summary table and curves with their intervals, the Markdown report and the plots of the study",
        inputs=(
            Path("checks", "rep<seed>/rm/<rm>/check.json files", many=True),
            Path("bon", "rep<seed>/bon/per_prompt.npz files", many=True),
            Path("ppo", "rep<seed>/ppo/<rm>/per_prompt.npz files", many=True),
            Path("figures", "distribution figures to link from the Markdown", many=True),
        ),
        outputs=(
            Path("summary", "reports/summary.csv"),
            Path("curves", "reports/curves.csv"),
            Path("markdown", "reports/mrm_eval.md"),
            Path("plots", "reports/plots/*.png", many=True),
        ),
        config={"reward_models": "reward_models", "report": "report", "seed": "seed"},
    ),
    "dist_prompts": Step(
        "rmood.distribution.inputs:select_prompts",
        "the analysed eval prompts, one file per prompt id",
        inputs=(Path("prompts", "eval split JSONL"),),
        outputs=(Path("out", "<prompt_id>.jsonl files", many=True),),
        config={},
    ),
    "dist_representations": Step(
        "rmood.distribution.inputs:sample_representations",
        "the reward model's representation of every sampled response",
        inputs=(
            Path("model", "reward model directory"),
            Path("samples", "samples JSONL"),
            Path("prompt_files", "prompt JSONL files", many=True),
        ),
        outputs=(Path("out", "representations (.npy)"),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "score_weight": Step(
        "rmood.distribution.inputs:score_weight",
        "the reward model's reward direction in representation space",
        inputs=(Path("model", "reward model directory"),),
        outputs=(Path("out", "weight.npy"),),
        config={"dtype": "model.dtype"},
    ),
    "dist_pca": Step(
        "rmood.distribution.visualize:prompt_pca_plot",
        "PCA of each prompt's sampled representations, coloured by reward, with the reward direction",
        inputs=(
            Path("representations", "representation_<prompt>.npy files", many=True),
            Path("rewards", "rewards_<prompt>.jsonl files", many=True),
            Path("weight", "weight.npy"),
        ),
        outputs=(Path("out_png", "figure"), Path("out_json", "numbers behind it")),
        config={"seed": "seed"},
    ),
    "tsne": Step(
        "rmood.distribution.visualize:tsne_plot",
        "t-SNE of chosen vs rejected training representations",
        inputs=(Path("chosen", "chosen.npy"), Path("rejected", "rejected.npy"), Path("weight", "weight.npy")),
        outputs=(Path("out_png", "figure"), Path("out_json", "numbers behind it")),
        config={"seed": "seed", "max_points": "distribution.tsne_points", "pair_centre": "distribution.pair_centre"},
    ),
    "pca_mode": Step(
        "rmood.distribution.visualize:pca_plot",
        "PCA of the training representations after a transform (pair, prompt_subtract, w_projection, ...)",
        inputs=(
            Path("chosen", "chosen.npy"),
            Path("rejected", "rejected.npy"),
            Path("message", "message.npy"),
            Path("weight", "weight.npy"),
        ),
        outputs=(Path("out_png", "figure"), Path("out_json", "numbers behind it")),
        config={"seed": "seed"},
        options={"mode": str},
    ),
    "difference": Step(
        "rmood.distribution.visualize:difference_plot",
        "PCA of chosen − rejected differences, a Gaussianity test and the reward margins",
        inputs=(Path("chosen", "chosen.npy"), Path("rejected", "rejected.npy"), Path("weight", "weight.npy")),
        outputs=(Path("out_png", "figure"), Path("out_json", "numbers behind it")),
        config={"seed": "seed"},
    ),
    "center": Step(
        "rmood.distribution.visualize:center_plot",
        "inner products of the pair centres with the reward direction",
        inputs=(Path("chosen", "chosen.npy"), Path("rejected", "rejected.npy"), Path("weight", "weight.npy")),
        outputs=(Path("out_png", "figure"), Path("out_json", "numbers behind it")),
        config={},
    ),
    "upload": Step(
        "rmood.upload:upload_model",
        "push a model directory to the Hugging Face Hub (token from HF_TOKEN)",
        inputs=(Path("model", "model directory"),),
        outputs=(Path("out", "upload receipt (JSON)"),),
        config={"upload": "upload"},
        options={"repo_id": str},
    ),
    "rm_table": Step(
        "rmood.rm.table:rm_table",
        "every reward model's checks side by side",
        inputs=(Path("checks", "rm/<name>/check.json files", many=True),),
        outputs=(Path("csv", "reports/rm_accuracy.csv"), Path("markdown", "reports/rm_accuracy.md")),
        config={},
    ),
}


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
