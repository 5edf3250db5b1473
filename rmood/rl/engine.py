"""What rmood hands TRL's PPOTrainer besides the policy: the reward, the value model and a checkpoint callback.

TRL computes rewards with `get_reward(model, query_responses, pad_id, context_length)`: the model's
backbone on the policy's token ids, then `model.score` at the last response token (the `<|im_end|>`
that ends it). A reward model trained by rmood pools the last token of the conversation rendered by its
own chat template (for ChatML the newline after `<|im_end|>`), and its rewards at the two positions differ
(correlation ≈ 0.6 for the embedded `rm`, ≈ 0.1 for InfoRM). `RenderedReward` therefore gives TRL the
reward rmood's scoring gives the decoded response: the same number the proxy evaluation of PPO samples sees.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, TrainerCallback

from rmood.io import Record, atomic_dir
from rmood.labeling.label import conversation
from rmood.rm.score import Conversation, ModelError, right_pad, tokenize


class RenderedReward(nn.Module):
    """A reward model as TRL's `get_reward` calls it, scoring each rollout as `rmood.rm.score` does.

    Each row (prompt + response ids of the policy) is split at its prompt, the response is cut at the
    first eos and decoded (special tokens skipped, as `rmood.generation` does), the conversation is
    rendered by the RM's own tokenizer and chat template, and the RM's logit (no `reward_bias`) is
    broadcast over the row's positions, so whichever position TRL reads it gets that reward.
    """

    base_model_prefix = "backbone"

    def __init__(self, model: nn.Module, tokenizer, policy_tokenizer, prompts: dict[tuple[int, ...], Record]):
        super().__init__()
        if model.config.pad_token_id is None:
            raise ModelError("the reward model's config has no pad_token_id: it cannot pool a padded batch")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer, self.policy_tokenizer = tokenizer, policy_tokenizer
        self.prompts = prompts
        self.lengths = sorted({len(ids) for ids in prompts}, reverse=True)
        self.score = nn.Identity()

    def conversations(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[Conversation]:
        """The prompt's messages and the decoded response of every row."""
        eos = self.policy_tokenizer.eos_token_id
        result = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            tokens = [t for t, keep in zip(ids, mask) if keep]
            n = next((n for n in self.lengths if tuple(tokens[:n]) in self.prompts), None)
            if n is None:
                raise ValueError("a rollout does not start with any of the PPO prompts")
            response = tokens[n:]
            response = response[: response.index(eos)] if eos in response else response
            text = self.policy_tokenizer.decode(response, skip_special_tokens=True)
            result.append(conversation(self.prompts[tuple(tokens[:n])], text))
        return result

    @torch.no_grad()
    def backbone(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> SimpleNamespace:
        """`hidden_states[-1]` of shape [batch, length, 1] holding each row's reward at every position."""
        sequences = tokenize(self.tokenizer, self.conversations(input_ids, attention_mask))
        ids, mask = right_pad(sequences, self.model.config.pad_token_id, input_ids.device)
        rewards = self.model(input_ids=ids, attention_mask=mask).logits[:, 0].float()
        return SimpleNamespace(hidden_states=(rewards[:, None, None].expand(-1, input_ids.shape[1], 1),))


def value_model(reward_model: str, rm: nn.Module, seed: int, dtype: str) -> nn.Module:
    """PPO's value model: the RM itself when it is a plain Hugging Face class, else the RM's backbone with a fresh head.

    rmood's own classes (model_type "rmood_*": InfoRM, the rich MRM) have heads TRL's value loss cannot
    train as a per-token value, so their value model is the plain `*ForSequenceClassification` of the
    config class they extend (Qwen3), with the RM's backbone weights and a scalar head seeded by `seed`.
    """
    torch.manual_seed(seed)
    if not rm.config.model_type.startswith("rmood_"):
        return AutoModelForSequenceClassification.from_pretrained(reward_model, dtype=getattr(torch, dtype))
    base = next(c for c in type(rm.config).__mro__ if not c.model_type.startswith("rmood_"))
    fields = {f.name for f in dataclasses.fields(base)}
    config = base(**{k: v for k, v in rm.config.to_dict().items() if k in fields}, num_labels=1)
    value = AutoModelForSequenceClassification.from_config(config, dtype=getattr(torch, dtype))
    getattr(value, value.base_model_prefix).load_state_dict(getattr(rm, rm.base_model_prefix).state_dict())
    return value


class SaveCheckpoints(TrainerCallback):
    """After update k, save the policy and tokenizer to `targets[k]` (atomically), for every k in `targets`."""

    def __init__(self, policy: nn.Module, tokenizer, targets: dict[int, Path]):
        self.policy, self.tokenizer, self.targets = policy, tokenizer, targets

    def on_step_end(self, args, state, control, **kwargs):
        target = self.targets.get(state.global_step)
        if target is not None:
            with atomic_dir(target) as tmp:
                self.policy.save_pretrained(tmp, safe_serialization=True)
                self.tokenizer.save_pretrained(tmp)
            print(f"saved update {state.global_step} to {target}", flush=True)
