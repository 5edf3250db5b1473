"""Shared fixtures: an offline environment and a tiny base model built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(
    vocab_size=320,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=16,
    max_position_embeddings=256,
)


@pytest.fixture(scope="session")
def prompt_data(tmp_path_factory) -> dict[str, Path]:
    """Small synthetic splits written as JSONL (sft, preference, ood)."""
    from rmood.data.synthetic import generate_splits
    from rmood.io import write_jsonl

    folder = tmp_path_factory.mktemp("data")
    sizes = {"sft": 64, "preference": 24, "unlabeled": 0, "val": 0, "eval": 8, "ood": 8}
    splits = generate_splits(
        0, sizes, list(("reverse", "sort", "add", "repeat")), ["repeat"], 2, 4, 0.3
    )
    paths = {}
    for split in ("sft", "preference", "ood"):
        paths[split] = folder / f"{split}.jsonl"
        write_jsonl(paths[split], splits[split])
    return paths


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, prompt_data) -> Path:
    """A tiny Qwen3 causal LM with its trained tokenizer (random weights)."""
    from rmood.sft.base import make_base

    out = tmp_path_factory.mktemp("models") / "base"
    make_base([str(prompt_data["sft"]), str(prompt_data["preference"])], out, 0, {"source": "tiny", "tiny": TINY})
    return out
