"""The Robust Reward Model (RRM, Liu et al. 2024): TRL's RewardTrainer with a tie term in the loss.

Pairs labelled 0.5 (RRM's neutral pairs) are ties: instead of −log σ(d) they contribute
−w·½(log σ(d) + log σ(−d)), which is smallest at d = 0, with w = `rrm.neutral_loss_weight`.
A `tie` column travels from the data set through the collator to `compute_loss`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch.nn.functional import logsigmoid
from trl.trainer.reward_trainer import DataCollatorForPreference

from rmood.io import read_jsonl
from rmood.rm.train import fit_reward_model, reward_model_from_policy, reward_trainer_class
from rmood.rrm_data.augment import LABELS, PAIR_FIELDS, implicit


def rrm_loss(
    rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor, tie: torch.Tensor, neutral_loss_weight: float
) -> torch.Tensor:
    """Mean over the pairs of −log σ(d) (tie = 0) or −w·½(log σ(d) + log σ(−d)) (tie = 1), d = r_c − r_r."""
    d = rewards_chosen - rewards_rejected
    neutral = -neutral_loss_weight * 0.5 * (logsigmoid(d) + logsigmoid(-d))
    return torch.where(tie.bool(), neutral, -logsigmoid(d)).mean()


class DataCollatorForTiedPreference(DataCollatorForPreference):
    """TRL's preference collator plus `tie`: a float tensor, one entry per pair (1 for a tie)."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return {**super().torch_call(examples), "tie": torch.tensor([float(e["tie"]) for e in examples])}


class RRMTrainer(reward_trainer_class()):
    """RewardTrainer whose loss is `rrm_loss`; the training data needs a boolean `tie` column."""

    def __init__(self, *args, neutral_loss_weight: float, **kwargs):
        if neutral_loss_weight < 0:
            raise ValueError(f"rrm.neutral_loss_weight must be ≥ 0, got {neutral_loss_weight}")
        self.neutral_loss_weight = neutral_loss_weight
        super().__init__(*args, **kwargs)
        if kwargs.get("data_collator") is None:  # the parent's default, made after it settled the pad token
            self.data_collator = DataCollatorForTiedPreference(
                pad_token_id=self.processing_class.pad_token_id, pad_to_multiple_of=self.args.pad_to_multiple_of
            )

    def _set_signature_columns_if_needed(self):
        # Trainer drops the data set columns that are not signature columns (remove_unused_columns).
        if self._signature_columns is None:
            self._signature_columns = ["chosen_ids", "rejected_ids", "tie"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        tie = inputs.pop("tie")
        # The parent runs the model and logs its metrics (rewards, accuracy and margin over all pairs, ties included).
        _, outputs = super().compute_loss(model, inputs, return_outputs=True)
        rewards_chosen, rewards_rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
        loss = rrm_loss(rewards_chosen, rewards_rejected, tie, self.neutral_loss_weight)
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean((rewards_chosen + rewards_rejected) ** 2)
        return (loss, outputs) if return_outputs else loss


def train_rrm(
    policy: str, pairs: str, model: str, work_dir: str, seed: int, rm: dict[str, Any], rrm: dict[str, Any], dtype: str,
    logging: dict[str, Any] | None = None, log_dir: str | None = None,
) -> None:
    """RRM: initialised from `policy`, trained on the filtered augmented `pairs` (ties: label 0.5), saved to `model`;
    its training logs go to `log_dir` when `logging.report_to` names any."""
    records = [
        {"chosen": p["chosen"], "rejected": p["rejected"], "tie": p["label"] == LABELS["neutral"]}
        for p in map(implicit, read_jsonl(pairs, required=(*PAIR_FIELDS, "label")))
    ]
    reward_model, tokenizer = reward_model_from_policy(policy, seed, dtype)
    fit_reward_model(
        reward_model, tokenizer, records, model, work_dir, seed, rm, dtype, inputs=[policy, pairs],
        trainer_class=partial(RRMTrainer, neutral_loss_weight=rrm["neutral_loss_weight"]), settings={"rrm": rrm},
        logging=logging, log_dir=log_dir,
    )
