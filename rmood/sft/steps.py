"""The SFT stage: the base model, supervised fine-tuning and sampling from a policy (rules/sft.smk; the sampling
steps, rmood/generation.py and rmood/vllm_sampling.py, also serve rules/eval.smk, rl.smk and distribution.smk).

The declarations of this stage's steps (see rmood/declaration.py); the functions are imported only when a step
runs, so this module stays cheap to import."""

from __future__ import annotations

from rmood.declaration import CHECKPOINTS, LOG_DIR, FileArg, Step

STEPS: dict[str, Step] = {
    "base": Step(
        "rmood.sft.base:make_base",
        "build the tiny base model and tokenizer (or copy a local HF model)",
        inputs=(FileArg("data_files", "JSONL files the tokenizer learns from", many=True),),
        outputs=(FileArg("out", "base model directory"),),
        config={"seed": "seed", "model": "model"},
    ),
    "sft": Step(
        "rmood.sft.train:train_sft",
        "supervised fine-tuning with TRL's SFTTrainer",
        inputs=(FileArg("base", "base model directory"), FileArg("train", "SFT split (JSONL)")),
        outputs=(FileArg("model", "fine-tuned model directory"),),
        work=(CHECKPOINTS, LOG_DIR),
        config={"seed": "seed", "sft": "sft", "dtype": "model.dtype"},
        trains=True,
        logs=True,
    ),
    "sample": Step(
        "rmood.generation:sample_shard",
        "sample n responses per prompt for one shard (resumable)",
        inputs=(FileArg("model", "policy directory"), FileArg("prompt_files", "prompt JSONL files", many=True)),
        outputs=(FileArg("out", "shard JSONL"),),
        config={"seed": "seed", "sampling": "sampling", "dtype": "model.dtype"},
        options={"shard": int},
    ),
    "sample_vllm": Step(
        "rmood.vllm_sampling:sample_shard_vllm",
        "sample n responses per prompt for one shard with vLLM (resumable; CUDA GPUs)",
        inputs=(FileArg("model", "policy directory"), FileArg("prompt_files", "prompt JSONL files", many=True)),
        outputs=(FileArg("out", "shard JSONL"),),
        config={"seed": "seed", "sampling": "sampling", "dtype": "model.dtype"},
        options={"shard": int},
        env="vllm",
    ),
    "gather": Step(
        "rmood.generation:gather",
        "concatenate the shards of samples (or of their labels) in prompt order",
        inputs=(FileArg("shards", "shard JSONL files", many=True), FileArg("prompt_files", "prompt JSONL files", many=True)),
        outputs=(FileArg("out", "gathered JSONL"),),
        config={},
    ),
}
