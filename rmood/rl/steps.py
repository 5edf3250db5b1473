"""The RL stage: PPO (TRL or verl) and the evaluation of its checkpoints (rules/rl.smk).

The declarations of this stage's steps (see rmood/declaration.py); the functions are imported only when a step
runs, so this module stays cheap to import."""

from __future__ import annotations

from rmood.declaration import LOG_DIR, FileArg, Step

STEPS: dict[str, Step] = {
    "train_ppo": Step(
        "rmood.rl.ppo:train_ppo",
        "PPO (TRL) of the SFT policy against a reward model, saving the policy after the updates of rl.checkpoints",
        inputs=(
            FileArg("policy", "SFT model directory"),
            FileArg("reward_model", "reward model directory"),
            FileArg("prompts", "prompt JSONL for the rollouts"),
            FileArg("tuning", "tuning/ppo.json: the learning rate chosen on the tuning seed (rl.learning_rate tuned)",
                    optional=True),
        ),
        outputs=(FileArg("out", "ppo/<rm>/step_<k>/model directories", many=True),),
        work=(FileArg("work_dir", "scratch folder"), LOG_DIR),
        config={"seed": "seed", "rl": "rl", "sampling": "sampling", "dtype": "model.dtype"},
        logs=True,
    ),
    "train_ppo_verl": Step(
        "rmood.rl.verl:train_ppo_verl",
        "PPO (verl: Ray, FSDP, vLLM rollouts) of the SFT policy against a reward model, saving the policy after the "
        "updates of rl.checkpoints",
        inputs=(
            FileArg("policy", "SFT model directory"),
            FileArg("reward_model", "reward model directory: a method vLLM can serve (rmood.rm.methods)"),
            FileArg("prompts", "prompt JSONL for the rollouts"),
            FileArg("tuning", "tuning/ppo.json: the learning rate chosen on the tuning seed (rl.learning_rate tuned)",
                    optional=True),
        ),
        outputs=(FileArg("out", "ppo/<rm>/step_<k>/model directories", many=True),),
        work=(FileArg("work_dir", "verl's checkpoints (resume), config.yaml, prompts.parquet"),),
        config={"seed": "seed", "rl": "rl", "sampling": "sampling"},
        env="verl",
    ),
    "ppo_tuning": Step(
        "rmood.rl.tuning:choose_learning_rate",
        "the PPO learning rate: the smallest candidate whose run on the tuning seed reaches the largest KL budget",
        inputs=(
            FileArg("step0", "the tuning seed's SFT samples: ppo/sft/step_0/samples.jsonl"),
            FileArg("samples_files", "ppo/tune_lr<rate>/step_<k>/samples.jsonl per candidate and checkpoint", many=True),
            FileArg("kl_files", "ppo/tune_lr<rate>/step_<k>/kl.jsonl per candidate and checkpoint", many=True),
        ),
        outputs=(FileArg("out", "tuning/ppo.json"),),
        config={"tuning": "rl.tuning", "report": "report"},
    ),
    "stop_tuning": Step(
        "rmood.rl.stopping:choose_stop_share",
        "the outlier share at which PPO stops early: the candidate whose stops lose the least gold on the tuning runs",
        inputs=(FileArg("curves", "rep<tuning seed>/ppo/tune_lr<rate>/curve.json per candidate", many=True),),
        outputs=(FileArg("out", "tuning/stop.json"),),
        config={"tuning": "rl.tuning", "report": "report"},
    ),
    "ppo_eval": Step(
        "rmood.rl.evaluate:evaluate_run",
        "every checkpoint of one PPO run: its samples, their gold and proxy rewards and KL from the reference",
        inputs=(
            FileArg("policies", "ppo/<rm>/step_<k>/model directories", many=True),
            FileArg("reference", "reference (SFT) directory"),
            FileArg("reward_model", "reward model directory"),
            FileArg("step0_samples", "the SFT policy's samples (step 0)"),
            FileArg("prompt_files", "the eval prompts JSONL", many=True),
        ),
        outputs=(
            FileArg("samples", "step_<k>/samples.jsonl per checkpoint", many=True),
            FileArg("gold_labels", "step_<k>/gold.jsonl per checkpoint", many=True),
            FileArg("proxy", "step_0/proxy.jsonl, then step_<k>/proxy.jsonl per checkpoint", many=True),
            FileArg("kl", "step_<k>/kl.jsonl per checkpoint", many=True),
        ),
        config={"seed": "seed", "sampling": "sampling", "gold": "gold", "judge": "judge", "scoring": "scoring",
                "dtype": "model.dtype"},
    ),
    "rl_kl": Step(
        "rmood.rl.kl:sequence_kl",
        "KL(policy || reference) of each of the policy's samples, on its sampled tokens at the sampling temperature",
        inputs=(
            FileArg("policy", "policy directory"),
            FileArg("reference", "reference (SFT) directory"),
            FileArg("samples", "the policy's samples JSONL (with their sampled `tokens`)"),
            FileArg("prompts", "prompt JSONL"),
        ),
        outputs=(FileArg("out", "kl.jsonl: {prompt_id, sample, kl, tokens} per sample"),),
        config={"scoring": "scoring", "sampling": "sampling", "dtype": "model.dtype"},
    ),
}
