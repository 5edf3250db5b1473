"""The `bon_report` step: gold and proxy reward of best-of-n sampling against KL_BoN (Gao et al. 2022).

For each prompt with N scored samples, the expected reward of the best of n samples (n ≤ N) is
estimated without bias by averaging over all n-subsets of the N samples. The sample ranked best by
the proxy is the one with the highest proxy reward; ties go to the later sample (stable sort of the
samples in `sample` order), so the estimate is deterministic.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from scipy.special import gammaln

from rmood.io import DataError, read_jsonl, write_json

Scores = dict[str, dict[int, float]]  # prompt id -> sample id -> score


def bon_weights(N: int, n: int) -> np.ndarray:
    """P(the k-th smallest of N is the maximum of a uniformly random n-subset) = C(k−1, n−1)/C(N, n), k = 1…N."""
    if not 1 <= n <= N:
        raise ValueError(f"best-of-n needs 1 <= n <= N, got n={n}, N={N}")
    k = np.arange(n, N + 1)
    log_w = (gammaln(k) - gammaln(n) - gammaln(k - n + 1)) - (gammaln(N + 1) - gammaln(n + 1) - gammaln(N - n + 1))
    weights = np.zeros(N)
    weights[n - 1 :] = np.exp(log_w)
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


def bon_curves(proxy_by_rm: dict[str, str | os.PathLike], gold: str | os.PathLike, n_max: int) -> dict:
    """Best-of-n for n in `n_values(n_max)`: per RM the mean over prompts of the expected gold and proxy reward.

    Returns `{"n": [...], "kl": [KL_BoN(n)...], "prompts": int, "rms": {rm: {"gold": [...], "proxy": [...]}}}`.
    Every file must hold the same prompts with the same sample ids.
    """
    gold_scores = read_scores(gold, "gold")
    if not gold_scores:
        raise DataError(f"{gold}: no gold labels")
    smallest = min(len(samples) for samples in gold_scores.values())
    if n_max > smallest:
        raise DataError(f"{gold}: best-of-{n_max} needs {n_max} samples per prompt, some prompt has {smallest}")
    ns = n_values(n_max)
    rms = {}
    for rm, path in proxy_by_rm.items():
        proxy_scores = read_scores(path, "reward")
        check_same_samples(gold_scores, gold, proxy_scores, path)
        per_prompt = []
        for prompt_id, golds in gold_scores.items():
            ids = sorted(golds)
            g = np.array([golds[i] for i in ids])
            p = np.array([proxy_scores[prompt_id][i] for i in ids])
            per_prompt.append([(bon_expectation(p, g, n), bon_expectation(p, p, n)) for n in ns])
        means = np.mean(per_prompt, axis=0)  # (len(ns), 2)
        rms[rm] = {"gold": means[:, 0].tolist(), "proxy": means[:, 1].tolist()}
    return {"n": ns, "kl": [kl_bon(n) for n in ns], "prompts": len(gold_scores), "rms": rms}


def bon_report(scores: list[str], gold: str, out: str, n: int) -> None:
    """Write `bon/report.json` (see `bon_curves`) from proxy score files named `<rm>.jsonl` and the gold labels."""
    proxy_by_rm: dict[str, str] = {}
    for path in scores:
        rm = Path(path).stem
        if rm in proxy_by_rm:
            raise DataError(f"two score files for RM {rm!r}: {proxy_by_rm[rm]} and {path}")
        proxy_by_rm[rm] = path
    report = bon_curves(proxy_by_rm, gold, n)
    write_json(out, report)
    for rm, curve in report["rms"].items():
        print(f"{rm}: gold {curve['gold'][0]:.4f} (n=1) -> {curve['gold'][-1]:.4f} (n={report['n'][-1]})")
