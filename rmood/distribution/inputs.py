"""The distribution analysis's inputs: single-prompt files, the RM representations of many sampled
responses, and the reward direction those representations are projected on.

For every supported RM the reward is affine in the representation f (the backbone's final hidden state
at the last non-pad token, what `score` sees): r = wᵀf + c. `score_weight` writes w:
- plain `*ForSequenceClassification` (rm, rrm, golden, warm, exported mrm): `score.weight[0]`;
- rich MRM: the GDA weight Σ⁻¹(μ₊ − μ₋) with `use_gda_reward`, else the RM's `score.original` weight
  (a Mahalanobis penalty λ·d_M(f) is not linear and not part of w);
- InfoRM at inference: r = w_rᵀμ(f) + b_r with μ(f) = A f + a (the μ rows of `encode_head`), so w = Aᵀw_r.
Ensembles have no single backbone and are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rmood.io import DataError, atomic_open, read_jsonl, write_jsonl
from rmood.data.prompts import conversation
from rmood.generation import read_samples


def select_prompts(prompts: str, out: list[str]) -> None:
    """Write each prompt record of the split `prompts` named by an `out` path `<prompt_id>.jsonl` to that file."""
    records = {r["id"]: r for r in read_jsonl(prompts, required=("id", "messages"))}
    for path in map(Path, out):
        if path.suffix != ".jsonl":
            raise ValueError(f"select_prompts: outputs are named <prompt_id>.jsonl, got {path.name}")
        if path.stem not in records:
            raise DataError(f"{prompts}: no prompt with id {path.stem!r} (asked for by {path})")
        write_jsonl(path, [records[path.stem]])


def _refuse_ensemble(model: str, what: str) -> None:
    from rmood.rm.ensemble import is_ensemble
    from rmood.rm.score import ModelError

    if is_ensemble(model):
        raise ModelError(f"{model}: an ensemble has no single {what}; give one reward model")


def sample_representations(
    model: str, samples: str, prompt_files: list[str], out: str, scoring: dict[str, Any], dtype: str
) -> None:
    """Write the RM representation of every sampled response (prompt + response), rows aligned with `samples`."""
    from rmood.mrm.representations import write_features
    from rmood.rm.score import load_reward_model

    _refuse_ensemble(model, "backbone to take representations from")
    records, prompts = read_samples(samples, prompt_files)
    conversations = [conversation(prompts[r["prompt_id"]], r["response"]) for r in records]
    rm, tokenizer = load_reward_model(model, dtype)
    write_features(rm, tokenizer, conversations, out, scoring["batch_size"])
    print(f"representations: {len(records)} samples → {out}")


def reward_direction(model, path: str) -> np.ndarray:
    """The float32 [hidden] vector w of the loaded reward model's affine reward wᵀf + c (module docstring)."""
    from torch import nn

    from rmood.mrm.model import GDAHead
    from rmood.rm.inform import InfoRMHead
    from rmood.rm.score import ModelError

    score = getattr(model, "score", None)
    if isinstance(score, GDAHead):
        weight = score.weight if model.config.use_gda_reward else score.original.weight[0]
    elif isinstance(score, InfoRMHead):
        mu_rows = score.encode_head.weight[: model.config.latent_dim]
        weight = score.reward_head.weight[0].float() @ mu_rows.float()
    elif isinstance(score, nn.Linear):
        weight = score.weight[0]
    else:
        raise ModelError(
            f"{path}: the distribution analysis needs a reward linear in the representation (a `score` Linear, "
            f"rmood's MRM or InfoRM head), this model's score is {type(score).__name__}"
        )
    return weight.detach().float().cpu().numpy()


def score_weight(model: str, out: str, dtype: str) -> None:
    """Write the reward direction w of `model` (module docstring) as a float32 .npy [hidden]."""
    from rmood.rm.score import load_reward_model

    _refuse_ensemble(model, "reward direction")
    rm, _ = load_reward_model(model, dtype)
    weight = reward_direction(rm, model)
    with atomic_open(out, "wb") as f:
        np.save(f, weight)
    print(f"reward direction: {weight.shape[0]} dims, |w| = {np.linalg.norm(weight):.4g} → {out}")
