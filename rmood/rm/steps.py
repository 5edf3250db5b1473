"""The reward models: training (one step per trained method of `rmood.rm.methods`), WARM, ensembles, checks,
scoring samples (rules/rm.smk, and the `score` step of rules/eval.smk).

The declarations of this stage's steps (see rmood/declaration.py); the functions are imported only when a step
runs, so this module stays cheap to import."""

from __future__ import annotations

from rmood.declaration import CHECKPOINTS, LOG_DIR, FileArg, Step
from rmood.rm.methods import Method, trainers

def training_step(method: Method) -> Step:
    """The step training a method's model from the SFT policy on its pairs (`rmood.rm.methods.Method.trainer`)."""
    section = {method.section: method.section} if method.section else {}
    return Step(
        method.trainer,
        method.help,
        inputs=(FileArg("policy", "SFT model directory"), FileArg("pairs", f"training pairs (as {method.pairs})")),
        outputs=(FileArg("model", "reward model directory"),),
        work=(CHECKPOINTS, LOG_DIR),
        config={"seed": "seed", "rm": "rm", **section, "dtype": "model.dtype"},
        trains=True,
        logs=True,
    )


STEPS: dict[str, Step] = {
    **{step: training_step(method) for step, method in trainers().items()},
    "warm_merge": Step(
        "rmood.rm.warm:merge_models",
        "WARM: average the weights of several reward models",
        inputs=(FileArg("models", "reward model directories", many=True),),
        outputs=(FileArg("out", "merged reward model directory"),),
        config={},
    ),
    "ensemble": Step(
        "rmood.rm.ensemble:make_ensemble",
        "an ensemble of reward models (mean, worst-case or uncertainty-weighted)",
        inputs=(FileArg("models", "member reward model directories", many=True),),
        outputs=(FileArg("out", "ensemble folder"),),
        config={"uwo_lambda": "ensemble.uwo_lambda"},
        options={"reduction": str},
    ),
    "ensemble_score": Step(
        "rmood.rm.ensemble:combine_scores",
        "an ensemble's reward of every sample, reduced from its members' rewards of the same samples",
        inputs=(
            FileArg("model", "ensemble folder"),
            FileArg("scores", "the members' rewards JSONL of the same samples (score outputs)", many=True),
        ),
        outputs=(FileArg("out", "rewards JSONL"),),
        config={},
    ),
    "rm_check": Step(
        "rmood.rm.check:check_rm",
        "train / test (vs gold) / ood accuracy of a reward model",
        inputs=(
            FileArg("model", "reward model directory"),
            FileArg("train", "explicit train pairs"),
            FileArg("test", "explicit test pairs"),
            FileArg("ood", "explicit ood pairs"),
        ),
        outputs=(
            FileArg("out", "check.json"),
            FileArg("rewards", "check_rewards.npz: the rewards of each split's chosen and rejected responses"),
        ),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "rm_check_ensemble": Step(
        "rmood.rm.check:check_ensemble",
        "an ensemble's rm_check, reduced from its members' rewards of the same pairs",
        inputs=(
            FileArg("model", "ensemble folder"),
            FileArg("rewards", "the members' check_rewards.npz", many=True),
        ),
        outputs=(
            FileArg("out", "check.json"),
            FileArg("reduced", "check_rewards.npz of the ensemble: its members' rewards reduced"),
        ),
        config={},
    ),
    "score": Step(
        "rmood.rm.score:score_samples",
        "the proxy reward of every sampled response under a reward model",
        inputs=(
            FileArg("model", "reward model directory"),
            FileArg("samples", "samples JSONL"),
            FileArg("prompt_files", "prompt JSONL files", many=True),
        ),
        outputs=(FileArg("out", "rewards JSONL"),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "rm_table": Step(
        "rmood.rm.table:rm_table",
        "every reward model's checks side by side",
        inputs=(FileArg("checks", "rm/<name>/check.json files", many=True),),
        outputs=(FileArg("csv", "reports/rm_accuracy.csv"), FileArg("markdown", "reports/rm_accuracy.md")),
        config={},
    ),
}
