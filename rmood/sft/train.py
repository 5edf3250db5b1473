"""Supervised fine-tuning with TRL's SFTTrainer (assistant-only loss, optional LoRA merged on save)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rmood.io import iter_jsonl
from rmood.training import fingerprint, length_grouped, prepare_checkpoints, save_trained, trainer_kwargs, training_logs


def conversations(path: str | Path) -> list[dict[str, Any]]:
    """The SFT split as chat conversations: the prompt messages plus the demonstration."""
    return [
        {"messages": [*r["messages"], {"role": "assistant", "content": r["output"]}]}
        for r in iter_jsonl(path, required=("messages", "output"))
    ]


def sft_trainer_class():
    """TRL's SFTTrainer, batching conversations of similar length when `train_sampling_strategy` is
    `group_by_length` (`rmood.training.length_grouped`, whose sampler also shuffles the batches' order)."""
    from trl import SFTTrainer

    return length_grouped(SFTTrainer, lambda dataset: [len(ids) for ids in dataset["input_ids"]])


def train_sft(base: str, train: str, model: str, work_dir: str, seed: int, sft: dict[str, Any], dtype: str,
              logging: dict[str, Any] | None = None, log_dir: str | None = None) -> None:
    """Fine-tune `base` on the demonstrations in `train` and save the (merged) model to `model`; the training logs go
    to `log_dir` when `logging.report_to` names any (`rmood.training.training_logs`)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    resume = prepare_checkpoints(work_dir, fingerprint({"sft": sft, "seed": seed, "dtype": dtype}, [base, train]))
    tokenizer = AutoTokenizer.from_pretrained(base)
    policy = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
    peft_config = None
    if sft["lora"]["enabled"]:
        from peft import LoraConfig

        lora = sft["lora"]
        peft_config = LoraConfig(
            r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
            target_modules="all-linear", task_type="CAUSAL_LM",
        )
    with training_logs(logging, log_dir, resume is not None) as report:
        args = SFTConfig(
            **trainer_kwargs(sft, seed, work_dir, dtype) | report,
            assistant_only_loss=True,
            chat_template_path=sft["chat_template_path"],
            packing=False,
        )
        trainer = sft_trainer_class()(
            model=policy,
            args=args,
            train_dataset=Dataset.from_list(conversations(train)),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        trainer.train(resume_from_checkpoint=resume)
    save_trained(trainer, model, work_dir, merge_lora=peft_config is not None)
