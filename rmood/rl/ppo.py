"""PPO against one reward model with TRL's PPOTrainer, saving the policy after every `save_every` updates.

The actor and the reference both start from the SFT policy. The reward of a rollout is the RM's logit on
the conversation rendered with the RM's own chat template (`rmood.rl.engine.RenderedReward`), without
the exported MRM's `config.reward_bias`: a constant, which changes no PPO advantage. On a cluster the verl
engine plays this part; this module is the one-machine engine.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rmood.generation import encode_prompt
from rmood.io import read_jsonl
from rmood.training import finish


def checkpoint_steps(steps: int, save_every: int) -> list[int]:
    """The updates after which the policy is saved: save_every, 2·save_every, …, and always the last."""
    if steps < 1 or save_every < 1:
        raise ValueError(f"rl.steps ({steps}) and rl.save_every ({save_every}) must be positive")
    return sorted({*range(save_every, steps + 1, save_every), steps})


def checkpoint_dirs(out: list[str], steps: int, save_every: int) -> dict[int, Path]:
    """The checkpoint directory of each saved update, from `out` = [.../step_{k}/model, …]; refuses any other list."""
    dirs = {}
    for path in map(Path, out):
        match = re.fullmatch(r"step_(\d+)", path.parent.name)
        if match is None or path.name != "model":
            raise ValueError(f"{path}: a PPO checkpoint must be a folder .../step_<k>/model")
        if int(match[1]) in dirs:
            raise ValueError(f"{path}: update {match[1]} is listed twice")
        dirs[int(match[1])] = path
    expected = checkpoint_steps(steps, save_every)
    if sorted(dirs) != expected:
        raise ValueError(f"PPO with steps={steps}, save_every={save_every} saves updates {expected}, "
                         f"but the outputs are for {sorted(dirs)}")
    return dirs


def train_ppo(
    policy: str,
    reward_model: str,
    prompts: str,
    out: list[str],
    work_dir: str,
    seed: int,
    rl: dict[str, Any],
    sampling: dict[str, Any],
    dtype: str,
) -> None:
    """Optimise `policy` against `reward_model` on `prompts` for `rl.steps` PPO updates; save to the `out` dirs.

    Each update samples `rl.batch_size` rollouts (prompts cycled in seeded shuffled order, as TRL does) of
    at most `rl.response_length` tokens at `sampling.temperature`, then runs `rl.ppo_epochs` epochs over
    `rl.mini_batches` mini-batches. The reward is the RM's score of the conversation rendered with its own
    chat template, without `config.reward_bias` (a constant: it changes no advantage), minus `rl.kl_coef`·KL to
    the reference (and minus `rl.missing_eos_penalty`, if set, for a response cut before its end-of-turn
    token). The value model is the RM itself, or for rmood's own classes the RM's backbone with a fresh head
    (`engine.value_model`).

    Refuses an ensemble (PPO engines serve one model) and an RM whose tokenizer vocabulary differs from the
    policy's (its value model reads the policy's token ids). Deterministic on CPU for a fixed seed. TRL's PPO
    cannot resume: if every `out` dir exists the run is done and nothing happens, otherwise it starts over.
    """
    targets = checkpoint_dirs(out, rl["steps"], rl["save_every"])
    if all((path / "config.json").is_file() for path in targets.values()):
        print(f"every PPO checkpoint of {reward_model} exists; nothing to do", flush=True)
        return

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from rmood.rl.engine import RenderedReward, SaveCheckpoints, value_model
    from rmood.rm.ensemble import is_ensemble
    from rmood.rm.score import ModelError, load_reward_model

    if is_ensemble(reward_model):
        raise ModelError(f"{reward_model}: an ensemble cannot be optimised with PPO (the engines need one RM)")
    tokenizer = AutoTokenizer.from_pretrained(policy)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    if pad is None or pad == eos:
        raise ModelError(f"{policy}: TRL's PPO masks every pad token, so the policy needs a pad token other than eos")
    rm, rm_tokenizer = load_reward_model(reward_model, dtype)
    if rm_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ModelError(f"{reward_model}: its tokenizer vocabulary differs from the policy's ({policy}); TRL's PPO "
                         "feeds the policy's token ids to the value model initialised from it")
    records = read_jsonl(prompts, required=("id", "messages"))
    encoded = [encode_prompt(tokenizer, r["messages"]) for r in records]
    if len(records) < rl["batch_size"]:
        raise ValueError(f"{prompts}: {len(records)} prompts, fewer than one PPO batch ({rl['batch_size']})")
    if any(pad in ids for ids in encoded):
        raise ModelError(f"{prompts}: a rendered prompt contains the pad token (id {pad}), which TRL would mask")

    set_seed(seed)
    value = value_model(reward_model, rm, seed, dtype)
    actor = AutoModelForCausalLM.from_pretrained(policy, dtype=getattr(torch, dtype))
    on_gpu = torch.cuda.is_available()
    args = PPOConfig(
        output_dir=str(work_dir),
        seed=seed,
        total_episodes=rl["steps"] * rl["batch_size"],
        per_device_train_batch_size=rl["batch_size"],
        gradient_accumulation_steps=1,
        num_mini_batches=rl["mini_batches"],
        num_ppo_epochs=rl["ppo_epochs"],
        learning_rate=rl["learning_rate"],
        kl_coef=rl["kl_coef"],
        missing_eos_penalty=rl["missing_eos_penalty"],
        response_length=rl["response_length"],
        temperature=sampling["temperature"],
        stop_token="eos",
        num_sample_generations=0,
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        use_cpu=not on_gpu,
        bf16=on_gpu and dtype == "bfloat16",
        fp16=on_gpu and dtype == "float16",
        activation_checkpointing=on_gpu,
        dataloader_num_workers=0,
    )
    ppo_tokenizer = AutoTokenizer.from_pretrained(policy, padding_side="left")  # TRL's collator left-pads the prompts
    trainer = PPOTrainer(
        args=args,
        processing_class=ppo_tokenizer,
        model=actor,
        ref_model=None,  # TRL copies the initial actor
        reward_model=RenderedReward(rm, rm_tokenizer, tokenizer, {tuple(ids): r for ids, r in zip(encoded, records)}),
        train_dataset=Dataset.from_dict({"input_ids": encoded}),
        value_model=value,
        callbacks=[SaveCheckpoints(actor, tokenizer, targets)],
    )
    trainer.train()
    finish(work_dir)
