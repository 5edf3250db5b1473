"""What rmood hands TRL's PPOTrainer besides the policy: the reward, the value model, the prompt batches and a
checkpoint callback that also saves what a killed run needs to continue (`save_state`/`load_state`).

TRL computes rewards with `get_reward(model, query_responses, pad_id, context_length)`: the model's
backbone on the policy's token ids, then `model.score` at the last response token (the `<|im_end|>`
that ends it). A reward model trained by rmood pools the last token of the conversation rendered by its
own chat template (for ChatML the newline after `<|im_end|>`), and its rewards at the two positions differ
(correlation ≈ 0.6 for the embedded `rm`, ≈ 0.1 for InfoRM). `RenderedReward` therefore gives TRL the
reward rmood's scoring gives the decoded response: the same number the proxy evaluation of PPO samples sees.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, TrainerCallback

from rmood.io import Record, atomic_dir, link_dir, read_json, write_json
from rmood.data.prompts import conversation
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


def value_model(policy: str, seed: int, dtype: str) -> nn.Module:
    """PPO's value model, the same for every reward model: the SFT policy's backbone with a scalar head seeded by
    `seed` (as verl's critic, `critic.model.path`). Runs against different RMs then differ in their reward only; an
    RM's own weights would give each run another critic (and rmood's own RM classes have no per-token value head)."""
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1, dtype=getattr(torch, dtype))


class PromptBatches:
    """The prompt batch of every PPO update, in a seeded order a rerun can start anywhere in.

    Update u (0-based) takes batch u mod m of epoch u div m (m = ⌊prompts / batch_size⌋, the last partial batch
    dropped as TRL does), an epoch being a permutation of the prompts drawn from NumPy's generator seeded by
    [seed, epoch]. It replaces TRL's DataLoader, whose epoch order is drawn from the global torch RNG
    when the epoch starts, so that a run resumed in mid-epoch sees the batches an uninterrupted one sees.
    """

    def __init__(self, dataset, batch_size: int, seed: int, collate, start: int = 0):
        self.dataset, self.batch_size, self.seed, self.collate, self.start = dataset, batch_size, seed, collate, start
        self.per_epoch = len(dataset) // batch_size

    def indices(self, update: int) -> list[int]:
        """The dataset rows of the prompts of `update` (0-based)."""
        import numpy as np

        epoch, batch = divmod(update, self.per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
        return order[batch * self.batch_size:(batch + 1) * self.batch_size].tolist()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        update = self.start
        while True:  # TRL draws one batch per update for as many updates as it runs
            yield self.collate([self.dataset[i] for i in self.indices(update)])
            update += 1


STATE = "trainer_state.json"


def save_state(folder: Path, value: nn.Module, optimizer, scheduler, update: int, episode: int) -> None:
    """What PPO needs besides the policy to continue after `update`: value model, optimizer, LR schedule, RNG."""
    from safetensors.torch import save_model

    from rmood.training import save_optimizer, save_rng

    save_model(value, str(folder / "value.safetensors"))
    save_optimizer(optimizer, folder / "optimizer.safetensors")
    save_rng(folder / "rng.safetensors")
    scheduler_state = scheduler.state_dict()
    try:
        json.dumps(scheduler_state)
    except TypeError as err:
        raise TypeError(f"the LR scheduler's state cannot be saved as JSON ({err})") from None
    write_json(folder / STATE, {"update": update, "episode": episode, "scheduler": scheduler_state})  # last


def load_state(folder: Path, policy_dir: Path, policy: nn.Module, value: nn.Module, optimizer, scheduler) -> None:
    """Load a state written by `save_state`, and the policy saved at the same update, into a freshly built trainer's
    models, optimizer and scheduler, and the global RNGs."""
    from safetensors.torch import load_model
    from transformers import AutoModelForCausalLM

    from rmood.training import load_optimizer, load_rng

    saved = AutoModelForCausalLM.from_pretrained(policy_dir, dtype=policy.dtype)
    policy.load_state_dict(saved.state_dict())
    del saved
    load_model(value, str(folder / "value.safetensors"))
    load_optimizer(optimizer, folder / "optimizer.safetensors")
    scheduler.load_state_dict(read_json(folder / STATE)["scheduler"])
    load_rng(folder / "rng.safetensors")  # last: loading the models above may draw random numbers


class SaveCheckpoints(TrainerCallback):
    """After update k, for every k in `targets`: save the policy and tokenizer to `targets[k]` and, in `work_dir`,
    the state to continue from k (`policy-<k>/`, `checkpoint-<k>/`), each folder written atomically.

    `targets[k]` hard-links the files of `work_dir/policy-<k>`, so the policies cost no extra space and survive
    Snakemake deleting a killed job's outputs; only the newest `checkpoint-<k>` (optimizer moments: large) is
    kept. A run resumed from update `start` counts its updates from there (`on_train_begin`).
    """

    def __init__(self, policy: nn.Module, tokenizer, targets: dict[int, Path], work_dir: str | Path, start: int = 0):
        self.policy, self.tokenizer, self.targets = policy, tokenizer, targets
        self.work_dir, self.start = Path(work_dir), start

    def on_train_begin(self, args, state, control, **kwargs):
        state.global_step = self.start
        state.episode = self.start * args.batch_size

    def on_step_end(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        update = state.global_step
        target = self.targets.get(update)
        if target is None:
            return
        policy_dir = self.work_dir / f"policy-{update}"
        with atomic_dir(policy_dir) as tmp:
            self.policy.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
        link_dir(policy_dir, target)
        with atomic_dir(self.work_dir / f"checkpoint-{update}") as tmp:
            save_state(tmp, model.value_model, optimizer, lr_scheduler, update, state.episode)
        for old in self.work_dir.glob("checkpoint-*"):
            if int(old.name.split("-")[1]) < update:
                shutil.rmtree(old)
        print(f"saved update {update} to {target}", flush=True)
