"""Reward-model representations: the final-layer hidden state of the last non-pad token, i.e. what the
reward model's `score` head sees, for chosen, rejected and message-only inputs of the preference pairs.

Conversations are tokenized and batched exactly as scoring does them (`rmood.rm.score`): the RM's chat
template, length-sorted right-padded batches, rows back in input order.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rmood.io import atomic_path, read_jsonl
from rmood.data.prompts import conversation
from rmood.rm.check import PAIR_FIELDS
from rmood.rm.ensemble import is_ensemble
from rmood.rm.score import Conversation, ModelError, load_reward_model, padded_batches, tokenize

if TYPE_CHECKING:
    import torch

OUTPUTS = ("chosen", "rejected", "message")


def backbone_features(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, hidden] final-layer state (after the final norm: the score head's input) at each row's last attended token.

    Positions count attended tokens only, so a left- or right-padded row gets the states of its unpadded sequence.
    """
    import torch

    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=False
    ).last_hidden_state
    columns = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    last = (columns * attention_mask).argmax(-1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def _fill_features(
    model, tokenizer, conversations: list[Conversation], batch_size: int, out: np.ndarray, add_generation_prompt: bool
) -> None:
    """Write the features of the conversations into the rows of `out` (input order), batch by batch."""
    import torch

    sequences = tokenize(tokenizer, conversations, add_generation_prompt)
    with torch.no_grad():
        for batch, ids, mask in padded_batches(model, sequences, batch_size, "representations"):
            out[batch] = backbone_features(model, ids, mask).float().cpu().numpy()


def _hidden_size(model) -> int:
    return model.config.get_text_config().hidden_size


def features(
    model, tokenizer, conversations: list[Conversation], batch_size: int, add_generation_prompt: bool = False
) -> np.ndarray:
    """[N, hidden] float32 features of the conversations, in input order."""
    out = np.empty((len(conversations), _hidden_size(model)), dtype=np.float32)
    _fill_features(model, tokenizer, conversations, batch_size, out, add_generation_prompt)
    return out


def write_features(model, tokenizer, conversations: list[Conversation], out: str, batch_size: int) -> None:
    """Write the features as a float32 .npy, streaming into a memory map that replaces `out` once complete."""
    with atomic_path(out) as tmp:
        shape = (len(conversations), _hidden_size(model))
        rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        _fill_features(model, tokenizer, conversations, batch_size, rows, add_generation_prompt=False)
        rows.flush()
        del rows


def pair_representations(model: str, pairs: str, out: list[str], scoring: dict[str, Any], dtype: str) -> None:
    """Write chosen.npy, rejected.npy and message.npy (the prompt alone), rows aligned with the explicit `pairs`."""
    targets = {Path(path).stem: path for path in out}
    names = sorted(Path(path).name for path in out)
    if names != sorted(f"{name}.npy" for name in OUTPUTS):
        raise ValueError(f"pair_representations: expected the outputs {[f'{n}.npy' for n in OUTPUTS]}, got {names}")
    if is_ensemble(model):
        raise ModelError(
            f"{model}: an ensemble has no single backbone to take representations from; give one reward model"
        )
    records = read_jsonl(pairs, required=PAIR_FIELDS)
    prompts = [{"messages": r["prompt"]} for r in records]
    inputs = {
        "chosen": [conversation(q, r["chosen"]) for q, r in zip(prompts, records)],
        "rejected": [conversation(q, r["rejected"]) for q, r in zip(prompts, records)],
        "message": [r["prompt"] for r in records],
    }
    rm, tokenizer = load_reward_model(model, dtype)
    for name in OUTPUTS:
        write_features(rm, tokenizer, inputs[name], targets[name], scoring["batch_size"])
        print(f"{name}: {len(records)} × {_hidden_size(rm)} → {targets[name]}")
