"""How far sampled responses lie from the reward model's training distribution: the Mahalanobis distance along the
optimisation (best-of-n and every PPO checkpoint).

A response's distance is that of the `rm`'s features of prompt + response (the final-layer state its score head
sees, `rmood.mrm.representations.features`) under the replicate's GDA fit: the distance to the nearer class mean in
the metric of the shared covariance (`GDAHead.mahalanobis`), the distance `mrm_pen` subtracts from its reward.

- `sample_distances` (rules `ppo_distance`, `bon_distance`): `{prompt_id, sample, distance}` per sample of each
  samples file.
- `reference_distances` (rule `sft_distance`): the same for the SFT policy's own samples of the eval prompts (step 0
  of every PPO run), and `mrm/distance_reference.json`: the outlier threshold — the `quantile` of those distances, as
  the Mahalanobis Outlier Probability of Miao et al. (InfoRM) takes the SFT policy's outputs as the reference — and
  the mean distance of the SFT samples and of the training pairs' responses (the GDA's own data), the reference
  levels of the report's plot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rmood.data.prompts import conversation
from rmood.generation import read_samples
from rmood.io import DataError, read_json, read_npy, read_npz, write_json, write_jsonl, write_npz

Conversation = list[dict[str, str]]

CHUNK = 4096  # training representations per chunk


def _load(model: str, gda: str, dtype: str):
    """The rm and its tokenizer, and a GDA head holding the replicate's fit."""
    from rmood.mrm.gda import load_gda
    from rmood.mrm.model import GDAHead
    from rmood.rm.score import load_reward_model

    rm, tokenizer = load_reward_model(model, dtype)
    return rm, tokenizer, GDAHead.from_gda(load_gda(gda))


def _distances(head, features: np.ndarray, what: str) -> np.ndarray:
    """The Mahalanobis distance of each row of `features` (float64), refusing non-finite features."""
    import torch

    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        raise DataError(f"{what}: {int(bad.sum())} of {len(features)} feature rows are not finite (first: row "
                        f"{int(np.argmax(bad))})")
    return head.mahalanobis(torch.from_numpy(np.ascontiguousarray(features))).double().numpy()


def _write_file(samples: str, prompt_files: list[str], out: str,
                distances: Callable[[list[Conversation], str], np.ndarray]) -> np.ndarray:
    """Write the distance of every sample of `samples` (`distances(conversations, samples)`) to `out`; return them."""
    records, prompts = read_samples(samples, prompt_files)
    if not records:
        raise DataError(f"{samples}: no samples")
    found = distances([conversation(prompts[r["prompt_id"]], r["response"]) for r in records], samples)
    write_jsonl(out, ({"prompt_id": r["prompt_id"], "sample": r["sample"], "distance": float(d)}
                      for r, d in zip(records, found)))
    print(f"{samples}: mean distance {found.mean():.3f} over {len(found)} samples → {out}", flush=True)
    return found


def _feature_distances(model: str, gda: str, scoring: dict[str, Any], dtype: str):
    """conversations, what → their distance in the rm's features under the GDA fit; and the GDA head."""
    from rmood.mrm.representations import features

    rm, tokenizer, head = _load(model, gda, dtype)
    return (lambda conversations, what: _distances(head, features(rm, tokenizer, conversations,
                                                                   scoring["batch_size"]), what)), head


def _each_file(samples: list[str], prompt_files: list[str], out: list[str],
               distances: Callable[[list[Conversation], str], np.ndarray]) -> None:
    if len(samples) != len(out):
        raise ValueError(f"{len(samples)} samples files, {len(out)} outputs")
    for path, target in zip(samples, out):
        _write_file(path, prompt_files, target, distances)


def sample_distances(model: str, gda: str, samples: list[str], prompt_files: list[str], out: list[str],
                     scoring: dict[str, Any], dtype: str) -> None:
    """Write `{prompt_id, sample, distance}` per sample of each file of `samples` to the file of `out` at its place."""
    _each_file(samples, prompt_files, out, _feature_distances(model, gda, scoring, dtype)[0])


def training_distances(head, representations: list[str]) -> np.ndarray:
    """The distances of the training pairs' responses (their chosen.npy and rejected.npy rows), chunk by chunk."""
    parts = []
    for path in representations:
        rows = read_npy(path, mmap_mode="r")
        parts += [_distances(head, np.asarray(rows[i:i + CHUNK], dtype=np.float64), path)
                  for i in range(0, len(rows), CHUNK)]
    if not parts:
        raise DataError(f"{representations}: no training representations")
    return np.concatenate(parts)


def reference_distances(model: str, gda: str, samples: str, prompt_files: list[str], representations: list[str],
                        out: str, reference: str, quantile: float, scoring: dict[str, Any], dtype: str) -> None:
    """Write the distances of the SFT policy's samples `samples` to `out`, and `reference` (JSON): the outlier
    threshold (their `quantile`) and the mean distance of those samples and of the training responses."""
    distances, head = _feature_distances(model, gda, scoring, dtype)
    sft = _write_file(samples, prompt_files, out, distances)
    train = training_distances(head, representations)
    summary = {"quantile": quantile, "threshold": float(np.quantile(sft, quantile)),
               "sft": {"n": int(sft.size), "mean": float(sft.mean())},
               "train": {"n": int(train.size), "mean": float(train.mean())}}
    write_json(reference, summary)
    print(summary, flush=True)


def outlier_threshold(reference: str) -> float:
    """The outlier threshold of a `distance_reference.json` (`reference_distances`)."""
    threshold = read_json(reference).get("threshold")
    if not isinstance(threshold, (int, float)) or not np.isfinite(threshold):
        raise DataError(f"{reference}: no finite outlier threshold")
    return float(threshold)


# --- InfoRM's latent space --------------------------------------------------------------------------------------

LATENT_KEYS = ("location", "precision", "threshold", "quantile")  # inform/latent_reference.npz


def _latents(model: str, dtype: str, scoring: dict[str, Any]) -> Callable[[list[Conversation], str], np.ndarray]:
    """conversations, what → InfoRM's latent mean μ of each (its encoder on the last token's final state)."""
    import torch

    from rmood.mrm.representations import features
    from rmood.rm.inform import InfoRMForSequenceClassification
    from rmood.rm.score import ModelError, load_reward_model

    inform, tokenizer = load_reward_model(model, dtype)
    if not isinstance(inform, InfoRMForSequenceClassification):
        raise ModelError(f"{model}: not an InfoRM (its latent space is what the outlier share is measured in)")

    def latents(conversations: list[Conversation], what: str) -> np.ndarray:
        hidden = features(inform, tokenizer, conversations, scoring["batch_size"])
        head = inform.score.encode_head.weight
        with torch.no_grad():
            mu = inform.score.encode(torch.from_numpy(hidden).to(head.device, head.dtype))[0]
        found = mu.double().cpu().numpy()
        if not np.isfinite(found).all():
            raise DataError(f"{what}: InfoRM latents that are not finite")
        return found

    return latents


def _latent_distance(latents: np.ndarray, location: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """The Mahalanobis distance from one Gaussian: `nearest_mahalanobis` with both class means at its location."""
    from rmood.mrm.gda import nearest_mahalanobis

    return nearest_mahalanobis(latents, location, location, precision)


def latent_reference(model: str, pairs: str, samples: str, prompt_files: list[str], out: str, reference: str,
                     quantile: float, scoring: dict[str, Any], dtype: str) -> None:
    """InfoRM's latent space, after Miao et al.'s Mahalanobis Outlier Probability: a Gaussian (scikit-learn's
    Ledoit–Wolf) fitted to the latents of the responses of the training pairs `pairs` (the SFT policy's samples the RM
    learnt from, as the GDA is fitted to the rm's features of them); write the distances of the SFT policy's own eval
    samples `samples` to `out`, and `reference` (npz: `LATENT_KEYS`, the threshold their `quantile`)."""
    from sklearn.covariance import LedoitWolf

    from rmood.mrm.check import read_pairs, responses

    latents = _latents(model, dtype, scoring)
    fit = LedoitWolf().fit(latents(responses(read_pairs(pairs)), pairs))
    sft = _write_file(samples, prompt_files, out, lambda conversations, what: _latent_distance(
        latents(conversations, what), fit.location_, fit.precision_))
    write_npz(reference, {"location": fit.location_, "precision": fit.precision_,
                          "threshold": np.array(np.quantile(sft, quantile)), "quantile": np.array(quantile)})


def latent_distances(model: str, reference: str, samples: list[str], prompt_files: list[str], out: list[str],
                     scoring: dict[str, Any], dtype: str) -> None:
    """The distance of every sample in InfoRM's latent space from the training responses' Gaussian
    (`latent_reference`)."""
    fit = read_npz(reference, LATENT_KEYS, "InfoRM latent reference")
    latents = _latents(model, dtype, scoring)
    _each_file(samples, prompt_files, out,
               lambda conversations, what: _latent_distance(latents(conversations, what), fit["location"],
                                                            fit["precision"]))


def latent_threshold(reference: str) -> float:
    """The outlier threshold of an `inform/latent_reference.npz`."""
    return float(read_npz(reference, LATENT_KEYS, "InfoRM latent reference")["threshold"])
