"""Scoring conversations with a reward model, exactly as it saw them in training, and the `score` step (the
proxy reward of every sample).

A conversation is rendered and tokenized by the RM's own chat template (`apply_chat_template`, as
TRL's RewardTrainer does), batched in length-sorted order and right-padded; the model pools the last
non-pad token. Rewards come back in input order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rmood import arithmetic
from rmood.data.prompts import context_length, conversation
from rmood.generation import read_samples
from rmood.io import Record, read_json, write_jsonl

Conversation = list[dict[str, str]]


class ModelError(ValueError):
    """A directory that cannot serve as the model asked for."""


def load_reward_model(path: str | Path, dtype: str = "float32"):
    """A `*ForSequenceClassification` with a scalar head (or an ensemble of them) and its tokenizer, in eval mode."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rmood.rm.auto import register_models
    from rmood.rm.ensemble import is_ensemble

    register_models()
    path = Path(path)
    if is_ensemble(path):
        return load_ensemble(path, dtype)
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: not a model directory (no config.json)")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=getattr(torch, dtype))
    except (OSError, ValueError, KeyError) as err:  # no weights, an unknown model_type, a broken config.json
        raise ModelError(f"{path}: not a loadable reward model ({type(err).__name__}: {err})") from None
    if model.config.num_labels != 1:
        raise ModelError(f"{path}: a reward model needs a scalar head, this one has num_labels={model.config.num_labels}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"{path}: no loadable tokenizer ({type(err).__name__}: {err})") from None
    if not tokenizer.chat_template:
        raise ModelError(f"{path}: the tokenizer has no chat template")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval(), tokenizer


def load_ensemble(path: str | Path, dtype: str):
    """The ensemble in folder `path` (`rmood.rm.ensemble`) and its members' shared tokenizer."""
    from rmood.rm.ensemble import MANIFEST, EnsembleRewardModel

    manifest = read_json(Path(path) / MANIFEST)
    loaded = [load_reward_model(Path(path) / member, dtype) for member in manifest["members"]]
    vocabularies = {tuple(sorted(tok.get_vocab().items())) for _, tok in loaded}
    pads = {model.config.pad_token_id for model, _ in loaded}
    if len(vocabularies) > 1 or len(pads) > 1:
        raise ModelError(f"{path}: ensemble members must share one tokenizer and pad token")
    model = EnsembleRewardModel([m for m, _ in loaded], manifest["reduction"], manifest["uwo_lambda"])
    return model.eval(), loaded[0][1]


def tokenize(tokenizer, conversations: list[Conversation], add_generation_prompt: bool = False) -> list[list[int]]:
    """Token ids of each conversation under the tokenizer's chat template: what `apply_chat_template(c, tokenize=True)`
    gives, rendered for all conversations at once and encoded in one batch (about twice as fast)."""
    if not conversations:
        return []
    texts = tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def right_pad(sequences: list[list[int]], pad_id: int, device):
    """(input_ids, attention_mask) tensors for right-padded sequences."""
    import torch

    width = max(map(len, sequences))
    ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in sequences], device=device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=device)
    return ids, mask


def fit_context(model, sequences: list[list[int]], desc: str) -> list[list[int]]:
    """Sequences longer than the model's context keep their last `context` tokens (the response and the token the
    head pools), counted in the log. Sampled conversations fit by construction (`rmood.data.prompts.fit_prompts`
    skips the prompts that leave no room for a response); this guards reward models with a shorter context."""
    context = context_length(model.config)
    if context is None:
        return sequences
    long = sum(len(s) > context for s in sequences)
    if long:
        longest = max(map(len, sequences))
        print(
            f"{desc}: {long} of {len(sequences)} conversations are longer than the model's context of {context} "
            f"tokens (up to {longest}); they keep their last {context} tokens",
            flush=True,
        )
    return [s[-context:] for s in sequences] if long else sequences


def padded_batches(
    model, sequences: list[list[int]], batch_size: int, desc: str
) -> Iterator[tuple[list[int], Any, Any]]:
    """(indices, input_ids, attention_mask) of length-sorted, right-padded batches on the model's device.

    Refuses a model without a pad id, and sequences that end with it (last-non-pad pooling would skip that token).
    """
    from tqdm.auto import tqdm

    pad_id = model.config.pad_token_id
    if pad_id is None:
        raise ModelError("the reward model's config has no pad_token_id: it cannot pool a padded batch")
    ends_with_pad = [i for i, s in enumerate(sequences) if s[-1] == pad_id]
    if ends_with_pad:
        raise ModelError(
            f"{len(ends_with_pad)} conversations end with the pad token (id {pad_id}), so the model's last-non-pad "
            "pooling would skip it; give the tokenizer a pad token that never ends a conversation"
        )
    sequences = fit_context(model, sequences, desc)
    arithmetic.count("forward", arithmetic.matmul_parameters(model), sum(map(len, sequences)))
    device = next(model.parameters()).device
    for batch in tqdm(length_sorted_batches(list(map(len, sequences)), batch_size), desc=desc, mininterval=5):
        yield batch, *right_pad([sequences[i] for i in batch], pad_id, device)


def score_conversations(model, tokenizer, conversations: list[Conversation], batch_size: int) -> np.ndarray:
    """Rewards (float64, input order) of the conversations: the model's logit plus `config.reward_bias` (0 if absent).

    An exported MRM (`rmood.mrm.convert.export_mrm`) keeps the constant b of its reward weightᵀf + b in
    `config.reward_bias`, since its `score` layer has no bias: rmood's scoring returns weightᵀf + b, while
    PPO (TRL, verl) and vLLM, which read the logit, see weightᵀf, a constant shift of the PPO reward that
    changes no ranking and no Best-of-N choice. Identical conversations (Best-of-N and PPO samples repeat a lot)
    are scored once.
    """
    import torch

    distinct: dict[tuple[int, ...], int] = {}
    rows = [distinct.setdefault(tuple(ids), len(distinct)) for ids in tokenize(tokenizer, conversations)]
    sequences = [list(ids) for ids in distinct]
    rewards = np.empty(len(sequences), dtype=np.float64)
    with torch.no_grad():
        for batch, ids, mask in padded_batches(model, sequences, batch_size, "scoring"):
            rewards[batch] = model(input_ids=ids, attention_mask=mask).logits[:, 0].float().cpu().numpy()
    return rewards[np.asarray(rows, dtype=np.int64)] + getattr(model.config, "reward_bias", 0.0)


def reward_of_samples(model: str, records: list[Record], prompts: dict[str, Record], batch_size: int, dtype: str) -> list[float]:
    """The reward model's score of every sample, rendered as prompt + response with the RM's own template."""
    conversations = [conversation(prompts[r["prompt_id"]], r["response"]) for r in records]
    return score_conversations(*load_reward_model(model, dtype), conversations, batch_size).tolist()


def score_samples(model: str, samples: str, prompt_files: list[str], out: str, scoring: dict[str, Any], dtype: str) -> None:
    """Write `{prompt_id, sample, reward}` per sample: the proxy reward under the reward model `model`."""
    records, prompts = read_samples(samples, prompt_files)
    rewards = reward_of_samples(model, records, prompts, scoring["batch_size"], dtype)
    write_jsonl(out, ({"prompt_id": r["prompt_id"], "sample": r["sample"], "reward": x} for r, x in zip(records, rewards)))
