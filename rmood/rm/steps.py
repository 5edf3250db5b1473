"""The reward models: training (BT, RRM, InfoRM), WARM, ensembles, checks, scoring samples (rules/rm.smk, and the
`score` step of rules/eval.smk).

The declarations of this stage's steps (see rmood/declaration.py); the functions are imported only when a step
runs, so this module stays cheap to import."""

from __future__ import annotations

from rmood.declaration import CHECKPOINTS, LOG_DIR, FileArg, Step

STEPS: dict[str, Step] = {
    "train_rm": Step(
        "rmood.rm.train:train_reward_model",
        "Bradley–Terry reward model with TRL's RewardTrainer",
        inputs=(FileArg("policy", "SFT model directory"), FileArg("pairs", "implicit-format training pairs")),
        outputs=(FileArg("model", "reward model directory"),),
        work=(CHECKPOINTS, LOG_DIR),
        config={"seed": "seed", "rm": "rm", "dtype": "model.dtype"},
        trains=True,
        logs=True,
    ),
    "train_rrm": Step(
        "rmood.rm.rrm:train_rrm",
        "RRM: reward model with the tie-aware loss on the filtered pairs",
        inputs=(FileArg("policy", "SFT model directory"), FileArg("pairs", "filtered RRM pairs")),
        outputs=(FileArg("model", "reward model directory"),),
        work=(CHECKPOINTS, LOG_DIR),
        config={"seed": "seed", "rm": "rm", "rrm": "rrm", "dtype": "model.dtype"},
        trains=True,
        logs=True,
    ),
    "train_inform": Step(
        "rmood.rm.inform_trainer:train_inform",
        "InfoRM: reward model with a variational information bottleneck",
        inputs=(FileArg("policy", "SFT model directory"), FileArg("pairs", "implicit-format training pairs")),
        outputs=(FileArg("model", "reward model directory"),),
        work=(CHECKPOINTS, LOG_DIR),
        config={"seed": "seed", "rm": "rm", "inform": "inform", "dtype": "model.dtype"},
        trains=True,
        logs=True,
    ),
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
