"""Sampling responses from a policy, in resumable shards.

The prompts are split round-robin into `shards`; each shard sorts its prompts by length, cuts them
into fixed batches and seeds every batch from (seed, shard, batch), so a shard killed midway and
rerun produces exactly the records an uninterrupted run would have. Records are appended one batch
at a time; on restart the complete batches are kept and the rest is generated again.

A record (`SAMPLE_FIELDS`) holds `prompt_id`, `sample`, the decoded `response`, `finished` (it ended with
eos) and `tokens`: the response's token ids exactly as sampled, up to and including the first eos, so
log-probabilities can be taken of what the policy drew (`rmood.rl.kl`) rather than of a re-tokenization.

Two backends share all of that (`sample_prompts`) and differ only in the engine call, an `Engine`:
`hf` (`sample_shard`, transformers' `generate`, CPU or GPU) here, and `vllm` (`sample_shard_vllm`,
in rmood.vllm_sampling, GPU only, run in the vLLM environment). This module imports torch and
transformers only inside functions, so it loads in any environment.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rmood.data.prompts import context_length, fit_prompts
from rmood.io import DataError, Record, complete_records, dumps, iter_jsonl, read_jsonl, write_jsonl

RESPONSE_FIELDS = ("prompt_id", "sample", "response", "finished")  # what readers of the response text need
SAMPLE_FIELDS = (*RESPONSE_FIELDS, "tokens")  # a record as the samplers write it; resuming requires all of them

# One sampled response: its text, whether it ended with eos, and its token ids as sampled (up to and including
# the first eos, nothing after it).
Response = tuple[str, bool, list[int]]
# A backend's engine call: the token ids of a batch of prompts and the batch's seed -> for each prompt,
# its `sampling.n` responses, in sample order.
Engine = Callable[[list[list[int]], int], list[list[Response]]]
Batch = list[tuple[Record, list[int]]]  # prompts with their token ids


class BackendError(RuntimeError):
    """A sampling backend that cannot run here (wrong step, package or hardware); the message says what to do."""


def shard_prompts(prompt_files: list[str], shard: int, shards: int) -> list[Record]:
    """The prompts (records with `id` and `messages`) of one shard, round-robin over all files."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is outside 0..{shards - 1}")
    prompts = [r for path in prompt_files for r in iter_jsonl(path, required=("id", "messages"))]
    return prompts[shard::shards]


def encode_prompt(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of the prompt rendered by the chat template with the generation prompt (the policy's input)."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def response_text(tokenizer, tokens: list[int]) -> str:
    """A sampled response as text: its tokens up to the first eos, decoded without special tokens."""
    eos = tokenizer.eos_token_id
    return tokenizer.decode(tokens[: tokens.index(eos)] if eos in tokens else tokens, skip_special_tokens=True)


def sampled_response(tokenizer, tokens: list[int], finished: bool) -> Response:
    """A response from the token ids an engine sampled: anything after the first eos is dropped (padding)."""
    eos = tokenizer.eos_token_id
    kept = tokens[: tokens.index(eos) + 1] if eos in tokens else tokens
    return response_text(tokenizer, kept), finished, kept


def batch_seed(seed: int, shard: int, batch: int) -> int:
    """A 63-bit seed for one batch, independent of how many batches ran before it."""
    digest = hashlib.sha256(f"{seed}/{shard}/{batch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def require_backend(sampling: dict[str, Any], backend: str, step: str) -> None:
    """Refuse a sampling config meant for the other backend's step."""
    if sampling["backend"] != backend:
        other = "sample_vllm" if sampling["backend"] == "vllm" else "sample"
        raise BackendError(f"step {step} samples with sampling.backend {backend}, not {sampling['backend']!r}: "
                           f"run step {other}")


def shard_batches(
    tokenizer, prompt_files: list[str], shard: int, sampling: dict[str, Any], context: int | None = None
) -> list[Batch]:
    """The shard's prompts with their token ids, sorted by length and cut into batches of `sampling.batch_size`;
    prompts that leave no room for `sampling.max_new_tokens` in a `context`-token window are skipped (counted)."""
    prompts = shard_prompts(prompt_files, shard, sampling["shards"])
    encoded = fit_prompts([(p, encode_prompt(tokenizer, p["messages"])) for p in prompts], context,
                          sampling["max_new_tokens"], f"sampling shard {shard}")
    order = sorted(encoded, key=lambda item: len(item[1]))
    size = sampling["batch_size"]
    return [order[i : i + size] for i in range(0, len(order), size)]


def completed_records(path: Path, batches: list[list[Record]], n: int) -> tuple[list[Record], set[int]]:
    """Records of the batches that a previous (possibly killed) run finished, and their indices."""
    if not path.exists():
        return [], set()
    records: dict[str, list[Record]] = {}
    for record in complete_records(path, required=SAMPLE_FIELDS):
        records.setdefault(record["prompt_id"], []).append(record)
    kept, done = [], set()
    for index, batch in enumerate(batches):
        if all(len(records.get(p["id"], ())) == n for p in batch):
            done.add(index)
            kept.extend(r for p in batch for r in records[p["id"]])
    return kept, done


def sample_prompts(
    tokenizer, prompt_files: list[str], out: str, shard: int, seed: int, sampling: dict[str, Any],
    start: Callable[[], Engine], context: int | None = None,
) -> None:
    """Generate `sampling.n` responses per prompt of one shard into `out` (JSONL), resuming if possible.

    `start()` loads the backend's model (only when some batch is left to sample) and returns its engine
    call; batch `i` is sampled with seed `batch_seed(seed, shard, i)`. `context` is the model's context length.
    """
    from tqdm.auto import tqdm

    batches = shard_batches(tokenizer, prompt_files, shard, sampling, context)
    out_path = Path(out)
    partial = out_path.with_name(out_path.name + ".partial")
    kept, done = completed_records(partial, [[p for p, _ in batch] for batch in batches], sampling["n"])
    if done:
        print(f"resuming {out}: {len(done)}/{len(batches)} batches already sampled", flush=True)
    write_jsonl(partial, kept)  # drop whatever the killed run left half-done

    generate = start() if len(done) < len(batches) else None
    with partial.open("a", encoding="utf-8") as f:
        for index, batch in enumerate(tqdm(batches, desc=f"sampling shard {shard}", mininterval=5)):
            if index in done:
                continue
            responses = generate([tokens for _, tokens in batch], batch_seed(seed, shard, index))
            for (prompt, _), samples in zip(batch, responses, strict=True):
                for k, (text, finished, tokens) in enumerate(samples):
                    record = {"prompt_id": prompt["id"], "sample": k, "response": text, "finished": finished,
                              "tokens": tokens}
                    f.write(dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
    os.replace(partial, out_path)


def sample_shard(
    model: str, prompt_files: list[str], out: str, shard: int, seed: int, sampling: dict[str, Any], dtype: str
) -> None:
    """Step `sample` (sampling.backend hf): `sampling.n` responses per prompt of one shard with transformers."""
    from transformers import AutoConfig, AutoTokenizer

    require_backend(sampling, "hf", "sample")
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.padding_side = "left"
    sample_prompts(tokenizer, prompt_files, out, shard, seed, sampling,
                   lambda: hf_engine(model, tokenizer, sampling, dtype),
                   context_length(AutoConfig.from_pretrained(model), tokenizer))


def hf_engine(model: str, tokenizer, sampling: dict[str, Any], dtype: str) -> Engine:
    """Load the policy with transformers (on the GPU if there is one); its engine call seeds torch per batch."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    device = "cuda" if torch.cuda.is_available() else "cpu"
    policy = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype)).to(device).eval()
    config = GenerationConfig(
        do_sample=True,
        temperature=sampling["temperature"],
        top_p=sampling["top_p"],
        top_k=0,
        max_new_tokens=sampling["max_new_tokens"],
        num_return_sequences=sampling["n"],
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )

    def generate(prompts: list[list[int]], seed: int) -> list[list[Response]]:
        torch.manual_seed(seed)
        return generate_batch(policy, tokenizer, prompts, config, device)

    return generate


def generate_batch(policy, tokenizer, prompts: list[list[int]], config, device: str) -> list[list[Response]]:
    """Sample `config.num_return_sequences` responses for each tokenized prompt (left-padded batch).

    A row of `generate`'s output is padded after its first eos; a row without eos ran all `max_new_tokens`
    steps, so every token of it was sampled (the pad token among them, if the model drew it).
    """
    import torch

    width = max(map(len, prompts))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    with torch.no_grad():
        output = policy.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
    n = config.num_return_sequences
    rows = output[:, width:].tolist()
    return [[sampled_response(tokenizer, row, tokenizer.eos_token_id in row) for row in rows[i * n : (i + 1) * n]]
            for i in range(len(prompts))]


def read_samples(samples: str, prompt_files: list[str]) -> tuple[list[Record], dict[str, Record]]:
    """The records of a samples file and the prompts they answer (by id); every sample's prompt must be there."""
    prompts = {r["id"]: r for path in prompt_files for r in read_jsonl(path, required=("id", "messages"))}
    records = read_jsonl(samples, required=RESPONSE_FIELDS)
    missing = {r["prompt_id"] for r in records} - prompts.keys()
    if missing:
        raise DataError(f"{samples}: prompt ids not in {prompt_files}, e.g. {sorted(missing)[0]}")
    return records, prompts


def gather(shards: list[str], prompt_files: list[str], out: str) -> None:
    """Concatenate per-sample records of shard files (samples, or their labels) in prompt order, then sample
    index: the same file for any shard count."""
    rank = {r["id"]: i for i, r in enumerate(r for path in prompt_files for r in iter_jsonl(path, required=("id",)))}
    records = [r for path in shards for r in iter_jsonl(path, required=("prompt_id", "sample"))]
    unknown = {r["prompt_id"] for r in records} - rank.keys()
    if unknown:
        raise DataError(f"{len(unknown)} prompt ids of {shards} are not in {prompt_files}, e.g. {sorted(unknown)[0]}")
    write_jsonl(out, sorted(records, key=lambda r: (rank[r["prompt_id"]], r["sample"])))
