"""The MRM's checks: the `compare_weights` step (the GDA weight against the RM's, and the converted models
against weightᵀf + b) and the `ood_auroc` step (the Mahalanobis distance as an OOD score)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import roc_auc_score

from rmood.data.prompts import conversation
from rmood.io import Record, read_jsonl, write_json
from rmood.mrm.gda import load_gda
from rmood.mrm.model import GDAHead
from rmood.mrm import representations
from rmood.rm.check import PAIR_FIELDS
from rmood.rm.score import Conversation, ModelError, load_reward_model, score_conversations

CHECK_ROWS = 64  # training rows on which compare_weights checks the converted models
TOLERANCE = {"float32": 1e-3, "bfloat16": 5e-2, "float16": 5e-2}  # of the checks: max |error| / max(1, max |reward|)


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
    mrm, tokenizer = load_reward_model(model, dtype)
    head = GDAHead.from_gda(load_gda(gda))

    def distances(path: str) -> np.ndarray:
        conversations = responses(read_pairs(path))
        if not conversations:
            return np.empty(0)
        found = representations.features(mrm, tokenizer, conversations, scoring["batch_size"])
        return head.mahalanobis(torch.from_numpy(found)).double().numpy()

    report = ood_summary(distances(test), distances(ood))
    write_json(out, report)
    print(report)
