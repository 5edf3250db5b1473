"""InfoRM (Miao et al. 2024): a reward model with a variational information bottleneck.

The last non-pad token's final hidden state h is encoded into a Gaussian latent, (μ, log σ²) =
`encode_head`(h); the reward is `reward_head`(z) with z = μ + ε·σ in training (reparameterisation)
and z = μ at inference. Training adds β·(KL_chosen + KL_rejected), each KL to N(0, I), to the
Bradley–Terry loss. Once registered with the Auto classes (`rmood.rm.auto.register_models()`), a saved
InfoRM loads with `AutoModelForSequenceClassification.from_pretrained(dir)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Qwen3Config,
    Qwen3Model,
    Qwen3PreTrainedModel,
)
from transformers.utils import ModelOutput

from rmood.rm.pooling import PooledRewardModel


MODEL_TYPE = "rmood_inform"


@strict
class InfoRMConfig(Qwen3Config):
    """A Qwen3 config with the width of InfoRM's latent."""

    model_type = MODEL_TYPE
    latent_dim: int = 128


@dataclass
class InfoRMOutput(ModelOutput):
    """Rewards [batch, 1] and the latent's (μ, log σ²) [batch, latent_dim] at the pooled tokens."""

    logits: torch.FloatTensor | None = None
    mu: torch.FloatTensor | None = None
    logvar: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class InfoRMHead(nn.Module):
    """hidden [..., hidden] → reward [..., 1] through a sampled (training) or mean (eval) latent."""

    def __init__(self, config: InfoRMConfig):
        super().__init__()
        self.encode_head = nn.Linear(config.hidden_size, 2 * config.latent_dim)
        self.reward_head = nn.Linear(config.latent_dim, 1)

    def encode(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of the latent, each [..., latent_dim]."""
        mu, logvar = self.encode_head(hidden).chunk(2, dim=-1)
        return mu, logvar

    def reward(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """reward_head(z): z = μ + ε·exp(½ log σ²) in training mode, z = μ in eval mode."""
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.reward_head(z)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.reward(*self.encode(hidden))


class InfoRMForSequenceClassification(PooledRewardModel, Qwen3PreTrainedModel):
    """A Qwen3 backbone (`model`) with the InfoRM head (`score`) on the last non-pad token."""

    config: InfoRMConfig
    config_class = InfoRMConfig

    def __init__(self, config: InfoRMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = Qwen3Model(config)
        self.score = InfoRMHead(config)
        self.post_init()

    def head_output(self, pooled: torch.Tensor, outputs: Any) -> InfoRMOutput:
        mu, logvar = self.score.encode(pooled)
        return InfoRMOutput(
            logits=self.score.reward(mu, logvar),
            mu=mu,
            logvar=logvar,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


def register() -> None:
    """Register InfoRM with AutoConfig and AutoModelForSequenceClassification (idempotent)."""
    AutoConfig.register(MODEL_TYPE, InfoRMConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(InfoRMConfig, InfoRMForSequenceClassification, exist_ok=True)


def inform_from_policy(policy: str, latent_dim: int, seed: int, dtype: str):
    """An InfoRM on the policy's Qwen3 backbone (every backbone weight loaded, seeded random head) and its tokenizer."""
    policy_config = AutoConfig.from_pretrained(policy)
    if policy_config.model_type != "qwen3":
        raise ValueError(f"{policy}: InfoRM is built on a Qwen3 backbone, this model is {policy_config.model_type!r}")
    tokenizer = AutoTokenizer.from_pretrained(policy)
    dropped = {"model_type", "architectures", "transformers_version", "_name_or_path", "id2label", "label2id", "dtype"}
    fields = {k: v for k, v in policy_config.to_dict().items() if k not in dropped}
    config = InfoRMConfig(**{**fields, "latent_dim": latent_dim, "num_labels": 1, "pad_token_id": tokenizer.pad_token_id})
    torch.manual_seed(seed)
    model, info = InfoRMForSequenceClassification.from_pretrained(
        policy, config=config, dtype=getattr(torch, dtype), output_loading_info=True
    )
    missing = sorted(k for k in info["missing_keys"] if not k.startswith("score."))
    mismatched = sorted(info["mismatched_keys"])
    if missing or mismatched:
        raise ValueError(f"{policy}: the backbone did not load fully (missing {missing[:3]}, mismatched {mismatched[:3]})")
    return model, tokenizer
