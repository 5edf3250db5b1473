"""Last-non-pad pooling, as `Qwen3ForSequenceClassification` does it, for rmood's own RM classes."""

from __future__ import annotations

from typing import Any

import torch
from transformers.utils import can_return_tuple


def last_non_pad(input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Index of the rightmost token that is not the pad token, per row (as Qwen3ForSequenceClassification)."""
    non_pad = (input_ids != pad_token_id).to(torch.int32)
    positions = torch.arange(input_ids.shape[-1], device=input_ids.device, dtype=torch.int32)
    return (positions * non_pad).argmax(-1)


def pooled_backbone(model, input_ids: torch.Tensor | None, **backbone_kwargs: Any) -> tuple[torch.Tensor, Any]:
    """Run `model.model` (the backbone) and return (final hidden state at each row's last non-pad token, outputs)."""
    outputs = model.model(input_ids, **backbone_kwargs)
    hidden = outputs.last_hidden_state
    pad_token_id = model.config.pad_token_id
    if input_ids is not None and pad_token_id is not None:
        last = last_non_pad(input_ids, pad_token_id).to(hidden.device)
    elif hidden.shape[0] == 1:
        last = torch.tensor([-1], device=hidden.device)
    else:
        raise ValueError(
            f"{type(model).__name__} pools the last non-pad token: a batch needs input_ids and config.pad_token_id"
        )
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last], outputs


class PooledRewardModel:
    """Mixin of rmood's reward-model classes (before `Qwen3PreTrainedModel` in the bases): `forward` pools the
    backbone `self.model` at each row's last non-pad token and returns `self.head_output(pooled, outputs)`."""

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ):
        pooled, outputs = pooled_backbone(
            self,
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return self.head_output(pooled, outputs)
