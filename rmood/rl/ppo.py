"""PPO against one reward model with TRL's PPOTrainer, saving the policy after each update of `rl.checkpoints`.

The actor and the reference both start from the SFT policy. The reward of a rollout is the RM's logit on
the conversation rendered with the RM's own chat template (`rmood.rl.engine.RenderedReward`), without
the exported MRM's `config.reward_bias`: a constant, which changes no PPO advantage. On a cluster the verl
engine plays this part; this module is the one-machine engine.
"""

from __future__ import annotations

import gc
import re
import shutil
from pathlib import Path
from typing import Any

from rmood.data.prompts import context_length, fit_prompts
from rmood.generation import encode_prompt
from rmood.io import link_dir, read_jsonl
from rmood.rl import resolve
from rmood.training import finish, fingerprint, prepare_checkpoints, training_logs

TRAINING_KEYS = ("steps", "checkpoints", "batch_size", "mini_batches", "ppo_epochs", "learning_rate", "kl_coef",
                 "response_length", "missing_eos_penalty")  # the rl settings a resumed run must share


def checkpoint_steps(steps: int, checkpoints: list[int]) -> list[int]:
    """The updates after which the policy is saved: those of `checkpoints`, and always the last."""
    if steps < 1 or any(not 1 <= k <= steps for k in checkpoints):
        raise ValueError(f"rl.checkpoints ({checkpoints}) must lie in 1 … rl.steps ({steps})")
    return sorted({*checkpoints, steps})


def checkpoint_dirs(out: list[str], steps: int, checkpoints: list[int]) -> dict[int, Path]:
    """The checkpoint directory of each saved update, from `out` = [.../step_{k}/model, …]; refuses any other list."""
    dirs = {}
    for path in map(Path, out):
        match = re.fullmatch(r"step_(\d+)", path.parent.name)
        if match is None or path.name != "model":
            raise ValueError(f"{path}: a PPO checkpoint must be a folder .../step_<k>/model")
        if int(match[1]) in dirs:
            raise ValueError(f"{path}: update {match[1]} is listed twice")
        dirs[int(match[1])] = path
    expected = checkpoint_steps(steps, checkpoints)
    if sorted(dirs) != expected:
        raise ValueError(f"PPO with steps={steps}, checkpoints={checkpoints} saves updates {expected}, "
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
    logging: dict[str, Any] | None = None,
    log_dir: str | None = None,
    tuning: str | None = None,
) -> None:
    """Optimise `policy` against `reward_model` on `prompts` for `rl.steps` PPO updates; save to the `out` dirs.

    Each update samples `rl.batch_size` rollouts (prompts cycled in a seeded shuffled order, `PromptBatches`) of
    at most `rl.response_length` tokens at `sampling.temperature`, then runs `rl.ppo_epochs` epochs over
    `rl.mini_batches` mini-batches. The reward is the RM's score of the conversation rendered with its own
    chat template, without `config.reward_bias` (a constant: it changes no advantage), minus `rl.kl_coef`·KL to
    the reference (and minus `rl.missing_eos_penalty`, if set, for a response cut before its end-of-turn
    token). The value model is the SFT policy with a fresh scalar head, whatever the RM (`engine.value_model`): runs
    against different RMs differ in their reward only.

    Refuses an ensemble (PPO engines serve one model). Deterministic on CPU for a fixed seed.

    Resume: if every `out` dir exists the run is done and nothing happens. Otherwise, after each saved update k
    `work_dir` holds the policy (`policy-<k>`, hard-linked into `out`) and the rest of the state
    (`checkpoint-<k>`: value model, AdamW moments, LR schedule, Python/NumPy/torch RNG states, the update
    count), guarded like the SFT and RM checkpoints by a fingerprint of the settings and inputs. A rerun
    restores the missing `out` dirs up to the last complete state, logs "resuming PPO from update k", loads
    that state into the freshly built trainer (reference = the SFT policy, LR schedule built for all
    `rl.steps`) and runs only the remaining updates. The prompt batches are a pure function of (seed,
    update) (`engine.PromptBatches`) and the RNG states are those the uninterrupted run had after update k,
    so on the same machine, thread count and library versions a resumed run writes exactly the checkpoints
    an uninterrupted one writes (bit for bit on CPU; on a GPU as far as its kernels are deterministic).

    `logging.report_to` sends TRL's per-update metrics (rewards, KL, losses) to `log_dir`
    (`rmood.training.training_logs`); it changes no checkpoint. `rl.learning_rate: tuned` takes the rate from the
    `tuning` file (`rmood.rl.tuning`).
    """
    rl = resolve(rl, tuning)
    targets = checkpoint_dirs(out, rl["steps"], rl["checkpoints"])
    if all((path / "config.json").is_file() for path in targets.values()):
        print(f"every PPO checkpoint of {reward_model} exists; nothing to do", flush=True)
        return

    import torch
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from rmood.rl.engine import PromptBatches, RenderedReward, SaveCheckpoints, load_state, value_model
    from rmood.rm.ensemble import is_ensemble
    from rmood.rm.score import ModelError, load_reward_model

    if is_ensemble(reward_model):
        raise ModelError(f"{reward_model}: an ensemble cannot be optimised with PPO (the engines need one RM)")
    tokenizer = AutoTokenizer.from_pretrained(policy)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    if pad is None or pad == eos:
        raise ModelError(f"{policy}: TRL's PPO masks every pad token, so the policy needs a pad token other than eos")
    rm, rm_tokenizer = load_reward_model(reward_model, dtype)
    kept = fit_prompts([(r, encode_prompt(tokenizer, r["messages"])) for r in read_jsonl(prompts, required=("id", "messages"))],
                       context_length(AutoConfig.from_pretrained(policy), tokenizer), rl["response_length"], prompts)
    records, encoded = [r for r, _ in kept], [ids for _, ids in kept]
    if len(records) < rl["batch_size"]:
        raise ValueError(f"{prompts}: {len(records)} prompts, fewer than one PPO batch ({rl['batch_size']})")
    if any(pad in ids for ids in encoded):
        raise ModelError(f"{prompts}: a rendered prompt contains the pad token (id {pad}), which TRL would mask")

    settings = {"rl": {key: rl[key] for key in TRAINING_KEYS}, "temperature": sampling["temperature"], "seed": seed,
                "dtype": dtype}
    start = resume_point(work_dir, fingerprint(settings, [policy, reward_model, prompts]), targets)
    if start == rl["steps"]:
        finish(work_dir)
        return

    with training_logs(logging, log_dir, start > 0) as report:
        set_seed(seed)
        value = value_model(policy, seed, dtype)
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
            **report,
            use_cpu=not on_gpu,
            bf16=on_gpu and dtype == "bfloat16",
            fp16=on_gpu and dtype == "float16",
            activation_checkpointing=on_gpu,
            dataloader_num_workers=0,
        )
        # TRL's collator left-pads the prompts
        ppo_tokenizer = AutoTokenizer.from_pretrained(policy, padding_side="left")
        trainer = PPOTrainer(
            args=args,
            processing_class=ppo_tokenizer,
            model=actor,
            ref_model=None,  # TRL copies the initial actor
            reward_model=RenderedReward(rm, rm_tokenizer, tokenizer,
                                        {tuple(ids): r for ids, r in zip(encoded, records)}),
            train_dataset=Dataset.from_dict({"input_ids": encoded}),
            value_model=value,
            callbacks=[SaveCheckpoints(actor, tokenizer, targets, work_dir, start)],
        )
        if trainer.accelerator.num_processes != 1:
            raise ValueError("rmood's TRL PPO runs in one process (its prompt batches are not sharded)")
        trainer.dataloader = PromptBatches(trainer.train_dataset, args.local_batch_size, seed, trainer.data_collator,
                                           start)
        if start:
            print(f"resuming PPO from update {start} of {rl['steps']}", flush=True)
            work = Path(work_dir)
            load_state(work / f"checkpoint-{start}", work / f"policy-{start}", actor, value, trainer.optimizer,
                       trainer.lr_scheduler)
            args.num_total_batches = rl["steps"] - start  # TRL's loop runs this many updates; its schedule spans all
        # TRL calls gc.collect() twice per update. A full collection walks every object the process holds (the
        # imported torch/transformers/TRL stack: ~0.5 million) and took 0.3-0.6 s each time on a CPU, more than an
        # embedded update computes. Freezing moves what exists now into the permanent generation, so those calls only
        # see new objects.
        gc.freeze()
        trainer.train()
    finish(work_dir)


def resume_point(work_dir: str, digest: str, targets: dict[int, Path]) -> int:
    """The update a run continues from (0: from the start), with the `targets` of the updates before it restored.

    The last complete `checkpoint-<k>` in `work_dir` (see `rmood.training.prepare_checkpoints`) counts only if
    every saved policy up to k exists, in `targets` or as `work_dir/policy-<j>`; missing targets are relinked
    from the latter (Snakemake deletes the outputs of a killed job before rerunning it).
    """
    checkpoint = prepare_checkpoints(work_dir, digest)
    if checkpoint is None:
        return 0
    start = int(Path(checkpoint).name.split("-")[1])
    earlier = {k: path for k, path in targets.items() if k <= start}
    lost = [k for k, path in earlier.items()
            if not (path / "config.json").is_file() and not (Path(work_dir) / f"policy-{k}" / "config.json").is_file()]
    if lost:
        print(f"{checkpoint} cannot be resumed (the saved policies of updates {lost} are gone); starting over",
              flush=True)
        shutil.rmtree(work_dir)
        prepare_checkpoints(work_dir, digest)
        return 0
    for k, path in earlier.items():
        if not (path / "config.json").is_file():
            link_dir(Path(work_dir) / f"policy-{k}", path)
            print(f"restored {path} from the work folder", flush=True)
    return start
