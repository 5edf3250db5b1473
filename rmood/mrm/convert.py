"""The `convert_to_mrm` step: a Bradley–Terry RM and its GDA fit made into the two MRM models.

- Exported (`export_mrm`, `mrm/model/`): the trained RM with its `score` weight replaced by the GDA weight
  Σ⁻¹(μ₊ − μ₋); a plain Qwen3ForSequenceClassification that PPO (TRL, verl), vLLM and RewardBench load
  without remote code. `score` has no bias, so the constant b is kept as `config.reward_bias` and added by
  rmood's own scoring only: those engines see weightᵀf.
- Rich (`build_mrm`, `rmood.mrm.model.MRMForSequenceClassification`): the RM's backbone and score layer with
  the GDA buffers and a Mahalanobis penalty λ.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rmood.io import atomic_dir
from rmood.mrm.gda import load_gda
from rmood.mrm.model import MRMConfig
from rmood.rm.auto import register_models
from rmood.rm.score import ModelError


def load_source(rm: str, gda: str):
    """The Bradley–Terry RM (stored dtype) and the GDA parameters, checked to fit its bias-free [1, hidden] score."""
    model = AutoModelForSequenceClassification.from_pretrained(rm, dtype="auto")
    params = load_gda(gda)
    score = getattr(model, "score", None)
    if not isinstance(score, nn.Linear) or score.bias is not None or score.weight.shape != (1, params["weight"].size):
        raise ModelError(f"{rm}: expected a bias-free score layer of shape [1, {params['weight'].size}] (the GDA "
                         f"width), got {score}")
    return model, params


def export_mrm(rm: str, gda: str, out: str) -> None:
    """Write the exported MRM: `rm` with score.weight = GDA weight and config.reward_bias = GDA bias."""
    model, params = load_source(rm, gda)
    with torch.no_grad():
        model.score.weight.copy_(torch.as_tensor(params["weight"][None], dtype=model.score.weight.dtype))
    model.config.reward_bias = float(params["bias"])
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(rm).save_pretrained(tmp)


def build_mrm(rm: str, gda: str, out: str, penalty: float) -> None:
    """Write the rich MRM: `rm`'s backbone and score layer (`score.original`), the GDA buffers, λ = `penalty`."""
    register_models()
    source, params = load_source(rm, gda)
    if source.config.model_type != "qwen3":
        raise ModelError(f"{rm}: the rich MRM has a Qwen3 backbone, this model is {source.config.model_type!r}")
    dropped = {"model_type", "architectures", "transformers_version", "_name_or_path", "reward_bias"}
    fields = {k: v for k, v in source.config.to_dict().items() if k not in dropped}
    config = MRMConfig(**fields, mahalanobis_penalty=penalty)
    model = AutoModelForSequenceClassification.from_config(config, dtype=source.dtype)
    model.score.float()
    model.model.load_state_dict(source.model.state_dict())
    model.score.original.load_state_dict(source.score.state_dict())
    model.score.set_gda(params)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(rm).save_pretrained(tmp)


def convert_to_mrm(rm: str, gda: str, model: str, pen_model: str, penalty: float) -> None:
    """The `convert_to_mrm` step: the exported MRM to `model`, the rich MRM with λ = `penalty` to `pen_model`."""
    export_mrm(rm, gda, model)
    build_mrm(rm, gda, pen_model, penalty)
