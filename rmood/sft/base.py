"""The base model: the embedded tiny Qwen3 (tokenizer trained here) or a local Hugging Face model.

The tiny model is a real `Qwen3ForCausalLM` with a byte-level BPE tokenizer and a ChatML chat template
that carries `{% generation %}` markers, so SFT, reward training and scoring take exactly the code
path they take with Qwen3-4B.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rmood.io import atomic_dir, iter_jsonl

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def corpus(paths: Iterable[str | Path]) -> Iterable[str]:
    """Texts the tokenizer learns from: every prompt and demonstration in the data files, and the role names the chat
    template writes before each of them (`user`, `assistant`), so that, as in Qwen's own vocabulary, a role header
    is one token rather than six bytes: every conversation is 7 tokens (about a sixth) shorter."""
    for path in paths:
        for record in iter_jsonl(path, required=("messages",)):
            for message in record["messages"]:
                yield message["role"]
                yield message["content"]
            if record.get("output"):
                yield "assistant"
                yield record["output"]


def train_tokenizer(texts: Iterable[str], vocab_size: int, model_max_length: int):
    """A byte-level BPE tokenizer (pad `<|endoftext|>` ≠ eos `<|im_end|>`) with the ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        eos_token=IM_END,
        chat_template=CHATML_TEMPLATE,
        model_max_length=model_max_length,
        padding_side="right",
    )


def build_tiny(data_files: list[str], out: str | Path, seed: int, tiny: dict[str, Any]) -> None:
    """Train the tokenizer on the data, build a randomly initialised Qwen3 and save both to `out`."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    tokenizer = train_tokenizer(corpus(data_files), tiny["vocab_size"], tiny["max_position_embeddings"])
    config = Qwen3Config(
        **{**tiny, "vocab_size": len(tokenizer)},
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def link_pretrained(source: str | Path, out: str | Path) -> None:
    """Use a local Hugging Face model as the base: copy its directory (safetensors only)."""
    source = Path(source)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"model.source {source}: not a Hugging Face model directory (no config.json)")
    if not any(source.glob("*.safetensors")):
        raise ValueError(f"model.source {source}: no *.safetensors weights (pickled .bin weights are refused)")
    with atomic_dir(out) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.bin", "*.pt", "*.pth", "*.pkl"))


def make_base(data_files: list[str], out: str | Path, seed: int, model: dict[str, Any]) -> None:
    """Write `base/`: the tiny model when `model.source == "tiny"`, else a copy of the given directory."""
    if model["source"] == "tiny":
        build_tiny(data_files, out, seed, model["tiny"])
    else:
        link_pretrained(model["source"], out)
