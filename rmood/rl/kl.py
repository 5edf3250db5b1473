"""KL(policy ‖ reference) measured on the policy's own samples by teacher forcing.

For a response y to prompt x sampled from the policy, Σ_t [log π(y_t | x, y_<t) − log π_ref(y_t | x, y_<t)]
is an unbiased estimate of the sequence-level KL. It is taken on exactly the token ids the sampler drew (the
samples' `tokens`, not a re-tokenization of the decoded text) under the distributions actually sampled
from: log_softmax(logits / `sampling.temperature`) for the policy and for the reference alike, i.e. the KL
between the two tempered sampling distributions. A nucleus (`sampling.top_p` < 1) is refused: the
reference's nucleus need not hold the tokens the policy drew from its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rmood.config import require_full_support
from rmood.generation import encode_prompt
from rmood.io import DataError, Record, write_jsonl
from rmood.generation import read_samples
from rmood.rm.score import ModelError, length_sorted_batches, right_pad


def response_logprobs(model, tokenizer, prompt_ids: list[list[int]], response_ids: list[list[int]],
                      batch_size: int, temperature: float) -> list[np.ndarray]:
    """log π(y_t | x, y_<t) (float64) of every response token under softmax(logits / `temperature`), per
    (prompt, response) pair in input order.

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
                logprobs = (logits[row, start - 1 : end - 1].double() / temperature).log_softmax(-1)
                targets = ids[row, start:end, None]
                result[i] = logprobs.gather(-1, targets)[:, 0].cpu().numpy()
    return result


def sampled_tokens(records: list[Record], samples: str) -> list[list[int]]:
    """The `tokens` of every sample record; a record without them was sampled before rmood kept them."""
    for record in records:
        where = f"{samples}: sample {record['sample']} of prompt {record['prompt_id']}"
        if "tokens" not in record:
            raise DataError(f"{where} has no sampled token ids (`tokens`, which older versions of rmood did not "
                            "keep), so its KL cannot be measured exactly; resample the file")
        if not isinstance(record["tokens"], list) or not all(isinstance(t, int) for t in record["tokens"]):
            raise DataError(f"{where}: `tokens` is not a list of token ids")
    return [record["tokens"] for record in records]


def sequence_kl(policy: str, reference: str, samples: str, prompts: str, out: str, scoring: dict[str, Any],
                sampling: dict[str, Any], dtype: str) -> None:
    """Write `{prompt_id, sample, kl, tokens}` (JSONL) per sample of `samples`, in their order: `kl` is
    Σ_t [log π − log π_ref] over the response's sampled tokens at `sampling.temperature`, `tokens` their number.

    The log gets the mean per-sequence KL and the mean per-token KL (over the samples with at least one token).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    require_full_support(sampling)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    if AutoTokenizer.from_pretrained(reference).get_vocab() != tokenizer.get_vocab():
        raise ModelError(f"{policy} and {reference} have different tokenizer vocabularies: no token-level KL")
    records, by_id = read_samples(samples, [prompts])
    if not records:
        raise DataError(f"{samples}: no samples")
    response_ids = sampled_tokens(records, samples)
    encoded = {pid: encode_prompt(tokenizer, by_id[pid]["messages"]) for pid in {r["prompt_id"] for r in records}}
    prompt_ids = [encoded[r["prompt_id"]] for r in records]

    device = "cuda" if torch.cuda.is_available() else "cpu"
    logprobs = []
    for path in (policy, reference):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
        logprobs.append(response_logprobs(model, tokenizer, prompt_ids, response_ids, scoring["batch_size"],
                                          sampling["temperature"]))
        del model
    differences = [p - q for p, q in zip(*logprobs)]
    write_jsonl(out, ({"prompt_id": r["prompt_id"], "sample": r["sample"], "kl": float(d.sum()), "tokens": int(d.size)}
                      for r, d in zip(records, differences)))
    per_token = [d.mean() for d in differences if d.size]
    print(f"KL(policy ‖ reference) at temperature {sampling['temperature']} over {len(records)} samples: "
          f"{np.mean([d.sum() for d in differences]):.4f} nats per sequence, "
          f"{np.mean(per_token) if per_token else float('nan'):.4f} per token", flush=True)
