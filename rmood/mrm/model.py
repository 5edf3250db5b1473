"""The Mahalanobis reward model (MRM) as Hugging Face models, and the steps that make and check them.

- Exported (`export_mrm`, `mrm/model/`): the trained Bradley–Terry RM with its `score` weight replaced by
  the GDA weight Σ⁻¹(μ₊ − μ₋); a plain Qwen3ForSequenceClassification that PPO (TRL, verl), vLLM and
  RewardBench load without remote code. `score` has no bias, so the constant b is kept as
  `config.reward_bias` and added by rmood's own scoring only: those engines see weightᵀf.
- Rich (`build_mrm`, `MRMForSequenceClassification`, model_type "rmood_mrm"): the head keeps the RM's
  score layer and the GDA buffers μ₊, μ₋, Σ⁻¹, weight, bias, and returns weightᵀf + b − λ·d_M(f) or the
  RM's reward (`use_gda_reward`), d_M being the Mahalanobis distance to the nearer class mean. Its b is a
  buffer, never `config.reward_bias`. Importing this module (which `rmood.rm` does) registers it with
  AutoConfig and AutoModelForSequenceClassification.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from huggingface_hub.dataclasses import strict
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import roc_auc_score
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Qwen3Config,
    Qwen3Model,
    Qwen3PreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutputWithPast
from transformers.utils import can_return_tuple

from rmood.io import Record, atomic_dir, read_jsonl, write_json
from rmood.labeling.label import conversation
from rmood.mrm.gda import load_gda
from rmood.rm.check import PAIR_FIELDS
from rmood.rm.pooling import pooled_backbone
from rmood.rm.score import Conversation, ModelError, load_reward_model, score_conversations

MODEL_TYPE = "rmood_mrm"
BUFFERS = ("mu_pos", "mu_neg", "precision", "weight", "bias")
CHECK_ROWS = 64  # training rows on which compare_weights checks the converted models
TOLERANCE = {"float32": 1e-3, "bfloat16": 5e-2, "float16": 5e-2}  # of the checks: max |error| / max(1, max |reward|)


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
        """min over k ∈ {+, −} of sqrt((f − μ_k)ᵀ Σ⁻¹ (f − μ_k)), [...] for features [..., hidden]."""
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


class MRMForSequenceClassification(Qwen3PreTrainedModel):
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

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutputWithPast:
        pooled, outputs = pooled_backbone(
            self,
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return SequenceClassifierOutputWithPast(
            logits=self.score(pooled),
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


def register() -> None:
    """Register the rich MRM with AutoConfig and AutoModelForSequenceClassification (idempotent)."""
    AutoConfig.register(MODEL_TYPE, MRMConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(MRMConfig, MRMForSequenceClassification, exist_ok=True)


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


def responses(pairs: list[Record]) -> list[Conversation]:
    """The chosen conversations of explicit-format pairs, then the rejected ones (the representations' row order)."""
    return [conversation({"messages": p["prompt"]}, p[side]) for side in ("chosen", "rejected") for p in pairs]


def read_pairs(path: str) -> list[Record]:
    """The explicit-format pairs of `path`."""
    return read_jsonl(path, required=PAIR_FIELDS)


def max_error(actual: np.ndarray, expected: np.ndarray, dtype: str, what: str) -> float:
    """max |actual − expected|; raises when it exceeds the dtype's tolerance relative to max(1, max |expected|)."""
    error = float(np.max(np.abs(actual - expected)))
    if error > TOLERANCE[dtype] * max(1.0, float(np.max(np.abs(expected)))):
        raise ModelError(f"{what}: rewards differ from the expected ones by up to {error:.3g}")
    return error


def compare_weights(rm: str, mrm: str, pen_model: str, gda: str, pairs: str, train_pairs: str,
                    representations: list[str], out: str, scoring: dict[str, Any], dtype: str) -> None:
    """Write the comparison of the RM and the MRM and the check of the converted models (JSON).

    `weights`: cosine and norms of the GDA weight and the RM's score weight; `test_rewards`: Pearson and
    Spearman correlation of the RM's and the exported MRM's rewards on the responses of `pairs`;
    `export_check`: on the first ≤64 training rows (`train_pairs`, `representations` = [chosen.npy,
    rejected.npy]), the exported MRM's rewards vs weightᵀf + b; `rich_check`: the rich MRM (`pen_model`)
    vs weightᵀf + b − λ·d_M(f) in GDA mode and vs the RM in original mode. A failed check raises.
    """
    params, batch_size = load_gda(gda), scoring["batch_size"]
    rows = read_pairs(train_pairs)[:CHECK_ROWS]
    chosen, rejected = (np.load(path, mmap_mode="r", allow_pickle=False) for path in representations)
    if min(len(chosen), len(rejected)) < len(rows):
        raise ModelError(f"{representations}: fewer rows than the {len(rows)} training pairs checked")
    features = np.vstack((chosen[: len(rows)], rejected[: len(rows)])).astype(np.float64)
    expected = features @ params["weight"] + params["bias"]
    test, train = responses(read_pairs(pairs)), responses(rows)

    def scored(path: str, *sets: list[Conversation]) -> tuple[Any, Any, list[np.ndarray]]:
        model, tokenizer = load_reward_model(path, dtype)
        return model, tokenizer, [score_conversations(model, tokenizer, s, batch_size) for s in sets]

    rm_model, _, (rm_test, rm_train) = scored(rm, test, train)
    rm_weight = rm_model.score.weight.detach().double().cpu().numpy()[0]
    _, _, (mrm_test, mrm_train) = scored(mrm, test, train)
    rich, tokenizer, (rich_gda,) = scored(pen_model, train)
    rich.use_gda_reward = False
    rich_original = score_conversations(rich, tokenizer, train, batch_size)
    penalty = rich.config.mahalanobis_penalty
    distance = rich.score.mahalanobis(torch.from_numpy(features).to(rich.device)).double().cpu().numpy()
    gda_norm, rm_norm = float(np.linalg.norm(params["weight"])), float(np.linalg.norm(rm_weight))
    report = {
        "weights": {"cosine": float(params["weight"] @ rm_weight / (gda_norm * rm_norm)), "gda_norm": gda_norm,
                    "rm_norm": rm_norm},
        "test_rewards": {"n": len(test), "pearson": float(pearsonr(rm_test, mrm_test).statistic),
                         "spearman": float(spearmanr(rm_test, mrm_test).statistic)},
        "export_check": {"n": len(train), "max_abs_error": max_error(mrm_train, expected, dtype, mrm)},
        "rich_check": {
            "n": len(train), "mahalanobis_penalty": penalty,
            "gda_mode_max_abs_error": max_error(rich_gda, expected - penalty * distance, dtype, pen_model),
            "original_mode_max_abs_error": max_error(rich_original, rm_train, dtype, pen_model),
        },
    }
    write_json(out, report)
    print(report)


def ood_summary(id_distances: np.ndarray, ood_distances: np.ndarray) -> dict[str, float | int | None]:
    """AUROC of the distance as an OOD score (ood = positive), the counts and mean distances (None when empty)."""
    both = id_distances.size and ood_distances.size
    labels = np.r_[np.zeros(id_distances.size), np.ones(ood_distances.size)]
    return {
        "auroc": float(roc_auc_score(labels, np.r_[id_distances, ood_distances])) if both else None,
        "n_id": int(id_distances.size),
        "n_ood": int(ood_distances.size),
        "mean_distance_id": float(id_distances.mean()) if id_distances.size else None,
        "mean_distance_ood": float(ood_distances.mean()) if ood_distances.size else None,
    }


def ood_auroc(model: str, gda: str, test: str, ood: str, out: str, scoring: dict[str, Any], dtype: str) -> None:
    """Write ood.json: how well the Mahalanobis distance of the MRM's features separates `ood` from `test` responses."""
    from rmood.mrm.representations import features  # here: it imports rmood.rm, which imports this module

    mrm, tokenizer = load_reward_model(model, dtype)
    head = GDAHead.from_gda(load_gda(gda))

    def distances(path: str) -> np.ndarray:
        conversations = responses(read_pairs(path))
        if not conversations:
            return np.empty(0)
        found = features(mrm, tokenizer, conversations, scoring["batch_size"])
        return head.mahalanobis(torch.from_numpy(found)).double().numpy()

    report = ood_summary(distances(test), distances(ood))
    write_json(out, report)
    print(report)


register()
