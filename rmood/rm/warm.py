"""WARM (Ramé et al. 2024): a weight-averaged reward model, the element-wise mean of several RMs."""

from __future__ import annotations

from pathlib import Path

from rmood.io import atomic_dir
from rmood.rm.auto import register_models
from rmood.rm.score import ModelError


def merge_models(models: list[str], out: str) -> None:
    """Average the state dicts of reward models with one architecture and identical tensor shapes."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if len(models) < 2:
        raise ModelError(f"WARM needs at least two reward models, got {len(models)}")
    register_models()
    members = [AutoModelForSequenceClassification.from_pretrained(Path(m), dtype=torch.float32) for m in models]
    reference, first = members[0].state_dict(), models[0]
    for path, member in zip(models[1:], members[1:]):
        if member.config.architectures != members[0].config.architectures:
            raise ModelError(f"{path}: architecture {member.config.architectures} differs from {first}'s "
                             f"{members[0].config.architectures}")
        state = member.state_dict()
        if state.keys() != reference.keys():
            raise ModelError(f"{path}: tensors {sorted(state.keys() ^ reference.keys())[:3]} differ from {first}'s")
        for name, tensor in state.items():
            if tensor.shape != reference[name].shape:
                raise ModelError(f"{path}: {name} has shape {tuple(tensor.shape)}, {first} has "
                                 f"{tuple(reference[name].shape)}")
    merged = {name: torch.stack([m.state_dict()[name] for m in members]).mean(dim=0) for name in reference}
    members[0].load_state_dict(merged)
    with atomic_dir(out) as tmp:
        members[0].save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(first).save_pretrained(tmp)
