"""Time representation extraction and scoring: length-sorted batches vs one at a time vs unsorted batches.

    python bench/representations.py                       # the embedded tiny Qwen3 on synthetic data
    python bench/representations.py --model RM --pairs train.explicit.jsonl
    python bench/representations.py --repeat 5 --threads 1   # as a local workflow job runs (one thread)

Without --model, a tiny base (config/config.yaml's `model.tiny`) is built in a temporary folder from
synthetic data and given a fresh scalar head; conversations are preference prompts with answers of
varied length. With --pairs, they are the chosen and rejected conversations of an explicit pairs file.

On the tiny CPU model one conversation costs ~2 ms, of which batching removes the per-call overhead but
not the ~0.5 ms of arithmetic, so batched scoring is 3–4× faster (2 threads; 2.5× with 1). Batches of
8–64 cost the same per conversation; larger ones are slower (more padding, activations out of cache).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from tabulate import tabulate  # noqa: E402

from rmood.config import load_config  # noqa: E402
from rmood.io import read_jsonl, write_jsonl  # noqa: E402
from rmood.data.prompts import conversation  # noqa: E402
from rmood.mrm.representations import backbone_features, features  # noqa: E402
from rmood.rm.check import PAIR_FIELDS  # noqa: E402
from rmood.rm.score import Conversation, load_reward_model, right_pad, score_conversations, tokenize  # noqa: E402


def tiny_reward_model(folder: Path, n: int) -> tuple[Path, list[Conversation]]:
    """A tiny RM (fresh head on the embedded tiny base) and `n` synthetic conversations of varied length."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rmood.data.synthetic import generate_splits
    from rmood.sft.base import make_base

    config = load_config()
    synthetic = config["data"]["synthetic"]
    sizes = {"sft": n, "preference": n, "unlabeled": 0, "val": 0, "eval": 0, "ood": 0}
    splits = generate_splits(
        0, sizes, synthetic["families"], synthetic["ood_families"], synthetic["min_items"], synthetic["max_items"],
        synthetic["verbose_fraction"],
    )
    write_jsonl(folder / "sft.jsonl", splits["sft"])
    make_base([str(folder / "sft.jsonl")], folder / "base", 0, {"source": "tiny", "tiny": config["model"]["tiny"]})
    tokenizer = AutoTokenizer.from_pretrained(folder / "base")
    model = AutoModelForSequenceClassification.from_pretrained(
        folder / "base", num_labels=1, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(folder / "rm")
    tokenizer.save_pretrained(folder / "rm")
    convs = [conversation(r, r["reference"] * (1 + i % 4)) for i, r in enumerate(splits["preference"])]
    return folder / "rm", convs


def pair_conversations(path: str, n: int) -> list[Conversation]:
    """The chosen and rejected conversations of the first pairs of an explicit pairs file (`n` in all)."""
    pairs = read_jsonl(path, required=PAIR_FIELDS)[: (n + 1) // 2]
    convs = [conversation({"messages": p["prompt"]}, p[side]) for p in pairs for side in ("chosen", "rejected")]
    return convs[:n]


def unsorted_features(model, tokenizer, convs: list[Conversation], batch_size: int) -> np.ndarray:
    """Features from batches in input order (no length sorting): the baseline sorting is measured against."""
    import torch

    sequences = tokenize(tokenizer, convs)
    device = next(model.parameters()).device
    rows = []
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            ids, mask = right_pad(sequences[start : start + batch_size], model.config.pad_token_id, device)
            rows.append(backbone_features(model, ids, mask).float().cpu().numpy())
    return np.concatenate(rows)


def padding_share(lengths: list[int], batches: list[list[int]]) -> float:
    """Pad tokens as a share of all tokens the batches feed the model."""
    total = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths) / total


def best_times(methods: dict[str, Callable[[], np.ndarray]], repeat: int) -> dict[str, tuple[float, np.ndarray]]:
    """Best wall time of each method over `repeat` rounds (methods interleaved, so load drift hits all alike)."""
    best: dict[str, tuple[float, np.ndarray]] = {}
    for _ in range(repeat):
        for name, function in methods.items():
            start = time.perf_counter()
            result = function()
            seconds = time.perf_counter() - start
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, result)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="reward model directory (default: a fresh tiny RM)")
    parser.add_argument("--pairs", help="explicit pairs JSONL (default: synthetic conversations)")
    parser.add_argument("--n", type=int, default=256, help="conversations to time (default 256)")
    parser.add_argument("--batch-size", type=int, default=load_config()["scoring"]["batch_size"])
    parser.add_argument("--single", type=int, default=32, help="conversations run one at a time (default 32)")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many rounds per method (default 2)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's; a local workflow job gets its rule's threads, 1)")
    args = parser.parse_args()

    import torch
    from transformers.utils import logging

    from rmood.rm.score import length_sorted_batches

    logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, convs = tiny_reward_model(Path(tmp), args.n) if args.model is None else (Path(args.model), [])
        if args.pairs:
            convs = pair_conversations(args.pairs, args.n)
        if not convs:
            parser.error("--model needs --pairs (the conversations to time)")
        model, tokenizer = load_reward_model(model_dir, args.dtype)
    bs, few = args.batch_size, convs[: args.single]
    lengths = list(map(len, tokenize(tokenizer, convs)))
    in_order = [list(range(i, min(i + bs, len(convs)))) for i in range(0, len(convs), bs)]
    features(model, tokenizer, convs[:bs], bs)  # warm-up
    methods = {
        "features, length-sorted batches": lambda: features(model, tokenizer, convs, bs),
        "features, unsorted batches": lambda: unsorted_features(model, tokenizer, convs, bs),
        "features, one at a time": lambda: np.concatenate([features(model, tokenizer, [c], 1) for c in few]),
        "scores, length-sorted batches": lambda: score_conversations(model, tokenizer, convs, bs),
        "scores, one at a time": lambda: np.array([score_conversations(model, tokenizer, [c], 1)[0] for c in few]),
    }
    best = best_times(methods, args.repeat)

    device = next(model.parameters()).device
    print(f"{len(convs)} conversations ({len(few)} one at a time), {min(lengths)}–{max(lengths)} tokens "
          f"(mean {np.mean(lengths):.0f}), hidden {model.config.hidden_size}, batch size {bs}, {device} "
          f"({torch.get_num_threads()} threads), best of {args.repeat}")
    pad_sorted = padding_share(lengths, length_sorted_batches(lengths, bs))
    padding = [pad_sorted, padding_share(lengths, in_order), 0.0, pad_sorted, 0.0]
    rows = []
    for (name, (seconds, result)), pad in zip(best.items(), padding):
        kind = name.split(",")[0]
        batched_seconds, batched = best[f"{kind}, length-sorted batches"]
        per_conv, batched_per_conv = seconds / len(result), batched_seconds / len(batched)
        rows.append([name, f"{1000 * per_conv:.2f}", f"{1 / per_conv:.0f}", f"{pad:.0%}", per_conv / batched_per_conv,
                     np.abs(result - batched[: len(result)]).max()])
    print(tabulate(rows, headers=["method", "ms/conv", "conv/s", "padding", "sorted batched ×", "max |Δ|"],
                   floatfmt=(None, None, None, None, ".1f", ".1e")))


if __name__ == "__main__":
    main()
