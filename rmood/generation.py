"""Sampling responses from a policy, in resumable shards.

The prompts are split round-robin into `shards`; each shard sorts its prompts by length, cuts them
into fixed batches and seeds every batch from (seed, shard, batch), so a shard killed midway and
rerun produces exactly the records an uninterrupted run would have. Records are appended one batch
at a time; on restart the complete batches are kept and the rest is generated again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rmood.io import DataError, Record, complete_records, dumps, iter_jsonl, write_jsonl

SAMPLE_FIELDS = ("prompt_id", "sample", "response", "finished")


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


def batch_seed(seed: int, shard: int, batch: int) -> int:
    """A 63-bit seed for one batch, independent of how many batches ran before it."""
    digest = hashlib.sha256(f"{seed}/{shard}/{batch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


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


def sample_shard(
    model: str, prompt_files: list[str], out: str, shard: int, seed: int, sampling: dict[str, Any], dtype: str
) -> None:
    """Generate `sampling.n` responses per prompt of one shard into `out` (JSONL), resuming if possible."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if sampling["backend"] != "hf":
        raise ValueError(f"sampling.backend {sampling['backend']!r} is not available in this environment")
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.padding_side = "left"
    prompts = shard_prompts(prompt_files, shard, sampling["shards"])
    encoded = {p["id"]: encode_prompt(tokenizer, p["messages"]) for p in prompts}
    order = sorted(prompts, key=lambda p: len(encoded[p["id"]]))
    size = sampling["batch_size"]
    batches = [order[i : i + size] for i in range(0, len(order), size)]

    out_path = Path(out)
    partial = out_path.with_name(out_path.name + ".partial")
    kept, done = completed_records(partial, batches, sampling["n"])
    if done:
        print(f"resuming {out}: {len(done)}/{len(batches)} batches already sampled", flush=True)
    write_jsonl(partial, kept)  # drop whatever the killed run left half-done

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
    with partial.open("a", encoding="utf-8") as f:
        for index, batch in enumerate(tqdm(batches, desc=f"sampling shard {shard}", mininterval=5)):
            if index in done:
                continue
            torch.manual_seed(batch_seed(seed, shard, index))
            records = generate_batch(policy, tokenizer, [encoded[p["id"]] for p in batch], config, device)
            for prompt, responses in zip(batch, records):
                for k, (text, finished) in enumerate(responses):
                    f.write(dumps({"prompt_id": prompt["id"], "sample": k, "response": text, "finished": finished}) + "\n")
            f.flush()
            os.fsync(f.fileno())
    os.replace(partial, out_path)


def generate_batch(policy, tokenizer, prompts: list[list[int]], config, device: str) -> list[list[tuple[str, bool]]]:
    """Sample `config.num_return_sequences` responses for each tokenized prompt (left-padded batch)."""
    import torch

    width = max(map(len, prompts))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    with torch.no_grad():
        output = policy.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
    n = config.num_return_sequences
    results = []
    for i in range(len(prompts)):
        responses = []
        for row in output[i * n : (i + 1) * n, width:].tolist():
            finished = config.eos_token_id in row
            tokens = row[: row.index(config.eos_token_id)] if finished else row
            responses.append((tokenizer.decode(tokens, skip_special_tokens=True), finished))
        results.append(responses)
    return results


def gather(shards: list[str], prompt_files: list[str], out: str) -> None:
    """Concatenate shard files in prompt order (then sample index): the same file for any shard count."""
    rank = {r["id"]: i for i, r in enumerate(r for path in prompt_files for r in iter_jsonl(path, required=("id",)))}
    records = [r for path in shards for r in iter_jsonl(path, required=SAMPLE_FIELDS)]
    unknown = {r["prompt_id"] for r in records} - rank.keys()
    if unknown:
        raise DataError(f"{len(unknown)} sampled prompt ids are not in {prompt_files}, e.g. {sorted(unknown)[0]}")
    write_jsonl(out, sorted(records, key=lambda r: (rank[r["prompt_id"]], r["sample"])))
