"""KL(policy ‖ reference) measured on the policy's own samples by teacher forcing.

For a response y to prompt x sampled from the policy, Σ_t [log π(y_t | x, y_<t) − log π_ref(y_t | x, y_<t)]
is an unbiased estimate of the sequence-level KL; its mean over samples is `kl_sequence`, the mean of the
per-token averages is `kl_token`. Log-probabilities are those of the models' raw logits (temperature 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rmood.generation import encode_prompt
from rmood.io import DataError, write_json
from rmood.labeling.label import read_samples
from rmood.rm.score import ModelError, length_sorted_batches, right_pad


def response_logprobs(model, tokenizer, prompt_ids: list[list[int]], response_ids: list[list[int]],
                      batch_size: int) -> list[np.ndarray]:
    """log π(y_t | x, y_<t) (float64) of every response token, per (prompt, response) pair in input order.

    Each pair is one right-padded row of a length-sorted batch; a response may be empty.
    """
    import torch

    sequences = [p + r for p, r in zip(prompt_ids, response_ids)]
    device = next(model.parameters()).device
    result: list[np.ndarray] = [np.empty(0)] * len(sequences)
    with torch.no_grad():
        for batch in length_sorted_batches(list(map(len, sequences)), batch_size):
            ids, mask = right_pad([sequences[i] for i in batch], tokenizer.pad_token_id or 0, device)
            logits = model(input_ids=ids, attention_mask=mask).logits
            for row, i in enumerate(batch):
                start, end = len(prompt_ids[i]), len(sequences[i])
                logprobs = logits[row, start - 1 : end - 1].double().log_softmax(-1)
                targets = ids[row, start:end, None]
                result[i] = logprobs.gather(-1, targets)[:, 0].cpu().numpy()
    return result


def sequence_kl(policy: str, reference: str, samples: str, prompts: str, out: str, scoring: dict[str, Any],
                dtype: str) -> None:
    """Write `{kl_sequence, kl_token, n}` (JSON) for the responses in `samples` to the prompts in `prompts`.

    A response is the tokenized response text, followed by the end-of-turn (eos) token when it `finished`;
    `kl_token` averages over the samples with at least one token.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy)
    if AutoTokenizer.from_pretrained(reference).get_vocab() != tokenizer.get_vocab():
        raise ModelError(f"{policy} and {reference} have different tokenizer vocabularies: no token-level KL")
    records, by_id = read_samples(samples, [prompts])
    if not records:
        raise DataError(f"{samples}: no samples")
    encoded = {pid: encode_prompt(tokenizer, by_id[pid]["messages"]) for pid in {r["prompt_id"] for r in records}}
    prompt_ids = [encoded[r["prompt_id"]] for r in records]
    eos = tokenizer.eos_token_id
    response_ids = [
        tokenizer(r["response"], add_special_tokens=False)["input_ids"] + ([eos] if r["finished"] else [])
        for r in records
    ]

    device = "cuda" if torch.cuda.is_available() else "cpu"
    logprobs = []
    for path in (policy, reference):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
        logprobs.append(response_logprobs(model, tokenizer, prompt_ids, response_ids, scoring["batch_size"]))
        del model
    differences = [p - q for p, q in zip(*logprobs)]
    write_json(out, {
        "kl_sequence": float(np.mean([d.sum() for d in differences])),
        "kl_token": float(np.mean([d.mean() for d in differences if d.size])),
        "n": len(differences),
    })
