"""The `bon_report` step: gold and proxy reward of best-of-n sampling against KL_BoN (Gao et al. 2022), and how
far the selected responses lie from the reward model's training distribution (`rmood.mrm.distance`).

For each prompt with N scored samples, the expected reward of the best of n samples (n ≤ N) is
estimated without bias by averaging over all n-subsets of the N samples. The sample ranked best by
the proxy is the one with the highest proxy reward; ties go to the later sample (stable sort of the
samples in `sample` order), so the estimate is deterministic.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import gammaln

from rmood.io import DataError, read_jsonl, write_json, write_npz
from rmood.mrm.distance import outlier_threshold

Scores = dict[str, dict[int, float]]  # prompt id -> sample id -> score


@functools.lru_cache(maxsize=1024)
def bon_weights(N: int, n: int) -> np.ndarray:
    """P(the k-th smallest of N is the maximum of a uniformly random n-subset) = C(k−1, n−1)/C(N, n), k = 1…N
    (read-only: the array is cached)."""
    if not 1 <= n <= N:
        raise ValueError(f"best-of-n needs 1 <= n <= N, got n={n}, N={N}")
    k = np.arange(n, N + 1)
    log_w = (gammaln(k) - gammaln(n) - gammaln(k - n + 1)) - (gammaln(N + 1) - gammaln(n + 1) - gammaln(N - n + 1))
    weights = np.zeros(N)
    weights[n - 1 :] = np.exp(log_w)
    weights.setflags(write=False)
    return weights


def bon_expectation(proxy: np.ndarray, values: np.ndarray, n: int) -> float:
    """Expected `values` of the proxy-best of n samples, averaged over all n-subsets of one prompt's N samples.

    Ties in `proxy` are broken by position: of equal proxy scores, the later sample counts as the better.
    """
    proxy, values = np.asarray(proxy, dtype=float), np.asarray(values, dtype=float)
    if proxy.ndim != 1 or proxy.shape != values.shape:
        raise ValueError(f"proxy and values must be 1-d arrays of one length, got {proxy.shape} and {values.shape}")
    order = np.argsort(proxy, kind="stable")
    return float(bon_weights(len(proxy), n) @ values[order])


def kl_bon(n: int) -> float:
    """The KL divergence of best-of-n sampling from the sampling policy: log n − (n − 1)/n."""
    return math.log(n) - (n - 1) / n


def n_values(n_max: int) -> list[int]:
    """1, 2, 4, … up to `n_max`, and `n_max` itself if it is not a power of two."""
    if n_max < 1:
        raise ValueError(f"n_max must be >= 1, got {n_max}")
    ns = [2**i for i in range(n_max.bit_length()) if 2**i <= n_max]
    return ns if ns[-1] == n_max else [*ns, n_max]


def read_scores(path: str | os.PathLike, field: str) -> Scores:
    """`{prompt_id: {sample: score}}` from a JSONL file of `{prompt_id, sample, <field>}` records."""
    scores: Scores = {}
    for record in read_jsonl(path, required=("prompt_id", "sample", field)):
        samples = scores.setdefault(record["prompt_id"], {})
        if record["sample"] in samples:
            raise DataError(f"{path}: duplicate sample {record['sample']} of prompt {record['prompt_id']}")
        samples[record["sample"]] = float(record[field])
    return scores


def check_same_samples(
    reference: Scores, reference_path: str | os.PathLike, other: Scores, path: str | os.PathLike
) -> None:
    """Fail unless `other` holds exactly the prompts and sample ids of `reference`."""
    if other.keys() != reference.keys():
        diff = sorted(map(str, reference.keys() ^ other.keys()))
        raise DataError(f"{path} and {reference_path} hold different prompts, e.g. {diff[0]} ({len(diff)} differ)")
    for prompt_id, samples in reference.items():
        if samples.keys() != other[prompt_id].keys():
            raise DataError(f"{path} and {reference_path} hold different samples of prompt {prompt_id}")


VALUES = ("gold", "proxy", "distance", "outlier")  # the (RMs, prompts, n values) arrays of a best-of-n table
BON_ARRAYS = ("rms", "prompts", "n", "kl", *VALUES)  # bon/per_prompt.npz


def bon_curves(proxy_by_rm: dict[str, str | os.PathLike], gold: str | os.PathLike, n_max: int,
               distance: str | os.PathLike, threshold: float) -> dict[str, Any]:
    """Best-of-n for n in `n_values(n_max)`, per prompt: the expected gold and proxy reward, Mahalanobis distance and
    outlier indicator (distance > `threshold`) of the proxy-best of n.

    Returns the arrays of `bon/per_prompt.npz` (`BON_ARRAYS`): `rms` and `prompts` (names, in file and gold-file
    order), `n`, `kl` (KL_BoN of each n), and `VALUES` of shape (RMs, prompts, n values). Every file must hold the
    same prompts with the same sample ids.
    """
    gold_scores = read_scores(gold, "gold")
    if not gold_scores:
        raise DataError(f"{gold}: no gold labels")
    distances = read_scores(distance, "distance")
    check_same_samples(gold_scores, gold, distances, distance)
    smallest = min(len(samples) for samples in gold_scores.values())
    if n_max > smallest:
        raise DataError(f"{gold}: best-of-{n_max} needs {n_max} samples per prompt, some prompt has {smallest}")
    ns = n_values(n_max)
    tables = {name: np.empty((len(proxy_by_rm), len(gold_scores), len(ns))) for name in VALUES}
    for r, (rm, path) in enumerate(proxy_by_rm.items()):
        proxy_scores = read_scores(path, "reward")
        check_same_samples(gold_scores, gold, proxy_scores, path)
        for p, (prompt_id, golds) in enumerate(gold_scores.items()):
            ids = sorted(golds)
            x = np.array([proxy_scores[prompt_id][i] for i in ids])
            d = np.array([distances[prompt_id][i] for i in ids])
            values = {"gold": np.array([golds[i] for i in ids]), "proxy": x, "distance": d,
                      "outlier": (d > threshold).astype(float)}
            for name, value in values.items():
                tables[name][r, p] = [bon_expectation(x, value, n) for n in ns]
    return {
        "rms": np.array(list(proxy_by_rm)),
        "prompts": np.array(list(gold_scores)),
        "n": np.array(ns),
        "kl": np.array([kl_bon(n) for n in ns]),
        **tables,
    }


def bon_report(scores: list[str], gold: str, distance: str, reference: str, out: str, per_prompt: str, n: int) -> None:
    """Write `bon/per_prompt.npz` (see `bon_curves`) from proxy score files named `<rm>.jsonl`, the gold labels and the
    samples' distances (outliers beyond the threshold of `reference`, `rmood.mrm.distance`), and `bon/report.json`:
    n, KL_BoN, the prompt count and every RM's mean of each of `VALUES` per n."""
    proxy_by_rm: dict[str, str] = {}
    for path in scores:
        rm = Path(path).stem
        if rm in proxy_by_rm:
            raise DataError(f"two score files for RM {rm!r}: {proxy_by_rm[rm]} and {path}")
        proxy_by_rm[rm] = path
    table = bon_curves(proxy_by_rm, gold, n, distance, outlier_threshold(reference))
    write_npz(per_prompt, table)
    means = {rm: {name: table[name][r].mean(axis=0).tolist() for name in VALUES} for r, rm in enumerate(proxy_by_rm)}
    write_json(out, {"n": table["n"].tolist(), "kl": table["kl"].tolist(), "prompts": len(table["prompts"]),
                     "rms": means})
    for rm, curve in means.items():
        print(f"{rm}: gold {curve['gold'][0]:.4f} (n=1) -> {curve['gold'][-1]:.4f} (n={n})")
