"""The arithmetic a step does, for `bench/study.py`: how many tokens went through how many parameters.

Training (SFT and the reward models, `rmood.training.save_trained`) and every reward-model forward pass
(`rmood.rm.score.padded_batches`: scoring, checks, representations) count here; a job (`rmood.job.run`) prints the
counts in its log, which bench/study.py turns into FLOPs (2 per parameter and token forward, 6 when training:
forward and backward) against the machine's matrix-multiply rate. The attention's own product, quadratic in the
length, is left out (short sequences), and so is PPO (generation, and four models, each its own share).
"""

from __future__ import annotations

from collections import defaultdict

COUNTS: defaultdict[tuple[str, int], int] = defaultdict(int)  # (kind, parameters) -> tokens
KINDS = ("forward", "training")


def count(kind: str, parameters: int, tokens: int) -> None:
    """Record `tokens` through a model of `parameters` (`matmul_parameters`), `kind` forward or training."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    COUNTS[kind, parameters] += tokens


def matmul_parameters(model) -> int:
    """The parameters a token is multiplied through: all but the embedding tables' (a lookup), whose weights count
    again where an output layer shares them (a causal LM's tied head). An ensemble counts its members'."""
    import torch

    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    looked_up = sum(p.numel() for p in model.parameters() if id(p) in tables)
    shared = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and id(m.weight) in tables)
    return sum(p.numel() for p in model.parameters()) - looked_up + shared


def summary() -> list[str]:
    """The counts as the log lines bench/study.py reads, and a fresh start."""
    lines = [f"rmood: arithmetic {kind} {tokens} tokens through {parameters} parameters"
             for (kind, parameters), tokens in sorted(COUNTS.items())]
    COUNTS.clear()
    return lines
