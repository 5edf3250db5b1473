"""The rich Mahalanobis reward model (MRM) as a Hugging Face model class.

`MRMForSequenceClassification` (model_type "rmood_mrm"): a Qwen3 backbone whose head (`GDAHead`) keeps the
RM's score layer and the GDA buffers μ₊, μ₋, Σ⁻¹, weight, bias, and returns weightᵀf + b − λ·d_M(f) or the
RM's reward (`use_gda_reward`), d_M being the Mahalanobis distance to the nearer class mean. Its b is a
buffer, never `config.reward_bias`. `register()` (called by `rmood.rm.auto.register_models`) registers it
with AutoConfig and AutoModelForSequenceClassification; importing this module registers nothing.
The steps that build it from an RM and a GDA fit are in `rmood.mrm.convert`, its checks in `rmood.mrm.check`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    Qwen3Config,
    Qwen3Model,
    Qwen3PreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutputWithPast

from rmood.rm.pooling import PooledRewardModel

MODEL_TYPE = "rmood_mrm"
BUFFERS = ("mu_pos", "mu_neg", "precision", "weight", "bias")


@strict
class MRMConfig(Qwen3Config):
    """A Qwen3 config with the MRM's reward mode and Mahalanobis penalty λ."""

    model_type = MODEL_TYPE
    use_gda_reward: bool = True
    mahalanobis_penalty: float = 0.0


class GDAHead(nn.Module):
    """hidden [..., hidden] → reward [..., 1]: weightᵀh + b − λ·d_M(h), or the RM's score layer (`original`).

    The GDA buffers are float32 and the GDA reward is computed in float32 whatever the backbone's dtype.
    """

    def __init__(self, config: MRMConfig):
        super().__init__()
        self.config = config
        size = config.hidden_size
        self.original = nn.Linear(size, 1, bias=False)
        for name, shape in zip(BUFFERS, ((size,), (size,), (size, size), (size,), ())):
            self.register_buffer(name, torch.zeros(shape))

    @classmethod
    def from_gda(cls, params: dict[str, np.ndarray]) -> GDAHead:
        """A head with `load_gda` parameters, for `mahalanobis` and `compute_gda_reward` (`original` untrained)."""
        head = cls(MRMConfig(hidden_size=params["weight"].shape[0]))
        head.set_gda(params)
        return head

    def set_gda(self, params: dict[str, np.ndarray]) -> None:
        """Copy the GDA parameters (float64, `load_gda`) into the float32 buffers."""
        if params["weight"].shape != self.weight.shape:
            raise ValueError(f"the GDA weight has shape {params['weight'].shape}, the model's hidden size is "
                             f"{self.weight.shape[0]}")
        for name in BUFFERS:
            getattr(self, name).copy_(torch.as_tensor(params[name], dtype=torch.float32))

    def compute_gda_reward(self, features: torch.Tensor) -> torch.Tensor:
        """weightᵀf + b, [...] for features [..., hidden]."""
        return features.float() @ self.weight.float() + self.bias.float()

    def mahalanobis(self, features: torch.Tensor) -> torch.Tensor:
        """min over k ∈ {+, −} of sqrt((f − μ_k)ᵀ Σ⁻¹ (f − μ_k)), [...] for features [..., hidden]: in torch, float32,
        on the model's device; tests/test_mrm.py pins it to the numpy `rmood.mrm.gda.nearest_mahalanobis`."""
        diff = features.float()[..., None, :] - torch.stack((self.mu_pos, self.mu_neg)).float()
        squared = ((diff @ self.precision.float()) * diff).sum(-1)
        return squared.clamp(min=0).sqrt().min(-1).values

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.config.use_gda_reward:
            return self.original(hidden.to(self.original.weight.dtype))
        reward = self.compute_gda_reward(hidden)
        if self.config.mahalanobis_penalty:
            reward = reward - self.config.mahalanobis_penalty * self.mahalanobis(hidden)
        return reward[..., None]


class MRMForSequenceClassification(PooledRewardModel, Qwen3PreTrainedModel):
    """A Qwen3 backbone (`model`) with the GDA head (`score`) on the last non-pad token; logits [batch, 1]."""

    config: MRMConfig
    config_class = MRMConfig
    base_model_prefix = "model"
    _keep_in_fp32_modules_strict = ["score"]

    def __init__(self, config: MRMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = Qwen3Model(config)
        self.score = GDAHead(config)
        self.post_init()

    @property
    def use_gda_reward(self) -> bool:
        """True: the (penalised) GDA reward; False: the original RM's reward. Saved with the config."""
        return self.config.use_gda_reward

    @use_gda_reward.setter
    def use_gda_reward(self, value: bool) -> None:
        self.config.use_gda_reward = value

    def head_output(self, pooled: torch.Tensor, outputs: Any) -> SequenceClassifierOutputWithPast:
        return SequenceClassifierOutputWithPast(
            logits=self.score(pooled),
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


def register() -> None:
    """Register the rich MRM with AutoConfig and AutoModelForSequenceClassification (idempotent)."""
    AutoConfig.register(MODEL_TYPE, MRMConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(MRMConfig, MRMForSequenceClassification, exist_ok=True)
