"""InfoRM training: TRL's RewardTrainer with β·(KL_chosen + KL_rejected) added to the Bradley–Terry loss.

The model itself (config, bottleneck head, Auto registration) is in `rmood.rm.inform`; this module
holds what only training needs, so scoring an InfoRM never imports TRL.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from rmood.io import read_jsonl
from rmood.rm.auto import register_models
from rmood.rm.inform import inform_from_policy
from rmood.rm.train import fit_reward_model, reward_trainer_class


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) per sample: ½ Σ_k (μ² + σ² − 1 − log σ²)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)


class InfoRMTrainer(reward_trainer_class()):
    """TRL's RewardTrainer with InfoRM's loss: Bradley–Terry + β·mean(KL_chosen + KL_rejected); logs `kl`."""

    def __init__(self, *args: Any, beta: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.beta = beta

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        kl_chosen, kl_rejected = torch.chunk(kl_to_standard_normal(outputs.mu.float(), outputs.logvar.float()), chunks=2)
        kl = (kl_chosen + kl_rejected).mean()
        loss = loss + self.beta * kl
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["kl"].append(self.accelerator.gather_for_metrics(kl.detach()).mean().item())
        return (loss, outputs) if return_outputs else loss


def train_inform(
    policy: str, pairs: str, model: str, work_dir: str, seed: int, rm: dict[str, Any], inform: dict[str, Any], dtype: str,
    logging: dict[str, Any] | None = None, log_dir: str | None = None,
) -> None:
    """InfoRM: initialised from `policy`, trained on the implicit-format `pairs` with the `rm` settings, saved to `model`;
    its training logs (the KL term too) go to `log_dir` when `logging.report_to` names any."""
    register_models()  # a checkpoint or the saved model reloads through the Auto classes
    records = [{"chosen": r["chosen"], "rejected": r["rejected"]} for r in read_jsonl(pairs, required=("chosen", "rejected"))]
    reward_model, tokenizer = inform_from_policy(policy, inform["latent_dim"], seed, dtype)
    fit_reward_model(
        reward_model, tokenizer, records, model, work_dir, seed, rm, dtype,
        inputs=[policy, pairs],
        trainer_class=partial(InfoRMTrainer, beta=inform["beta"]),
        settings={"inform": inform},
        logging=logging,
        log_dir=log_dir,
    )
