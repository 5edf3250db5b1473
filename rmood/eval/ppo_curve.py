"""The `ppo_curve` step: one RM's PPO run as gold, proxy, KL, finish rate, response length, distance from the RM's
training distribution and share of outliers per checkpoint and prompt."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rmood.io import DataError, write_json, write_npz
from rmood.mrm.distance import latent_threshold, outlier_threshold
from rmood.rl.checkpoints import Key, by_step, prompt_means, sample_values

# (steps, prompts) arrays: each a mean over the prompt's samples at the checkpoint; "error" to "outlier_error" and
# "outlier_gold" are the moments from which the report computes how the proxy's error and gold go with the distance
# (`rmood.eval.estimates.distance_statistics`) and the gold of the responses inside the SFT policy's distance range
# (`rmood.eval.estimates.inlier_mean`)
CHANNELS = ("kl", "gold", "proxy", "finished", "tokens", "distance", "outlier",
            "error", "error_sq", "distance_sq", "distance_error", "outlier_error", "latent_outlier", "outlier_gold")
PPO_ARRAYS = ("rm", "steps", "prompts", *CHANNELS)  # ppo/<rm>/per_prompt.npz


def standardise(values: dict[Key, float]) -> Callable[[float], float]:
    """z = (x − mean) / SD of `values` (SD 1 when they are constant)."""
    array = np.fromiter(values.values(), dtype=float)
    mean, sd = float(array.mean()), float(array.std())
    return lambda x: (x - mean) / (sd if sd > 0 else 1.0)


def ppo_curve(rm: str, samples_files: list[str], kl_files: list[str], gold_files: list[str], proxy_files: list[str],
              distance_files: list[str], reference: str, out: str, per_prompt: str,
              latent_files: list[str] | None = None, latent_reference: str | None = None) -> None:
    """Gather a PPO run's checkpoints, per prompt (`ppo/<rm>/per_prompt.npz`) and on average (`curve.json`).

    Files are matched by the step of their `step_<k>` parent folder, not by list position. Samples (`{prompt_id,
    sample, finished, tokens}`: whether a response ended with the end-of-turn token, and its sampled token ids), gold
    (`{prompt_id, sample, gold}`), proxy (`{prompt_id, sample, reward}`), distance (`{prompt_id, sample, distance}`,
    `rmood.mrm.distance`) and KL (`{prompt_id, sample, kl}`, the per-sequence KL(actor ‖ SFT) in nats of each sample)
    files must cover the same steps, step 0 (the SFT policy) among them, and the same samples per step, and every step
    the same prompts. Step 0 may have no KL file (its KL is 0 by definition). The npz holds `PPO_ARRAYS`: `steps`,
    `prompts`, and `CHANNELS` of shape (steps, prompts), each a mean over the prompt's samples (`finished`: the share
    that ended, `tokens`: response length in tokens, `outlier`: the share farther than the `threshold` of `reference`;
    `error` the proxy's error e = z(proxy) − z(gold), each standardised by the mean and SD of the SFT policy's
    samples (step 0), > 0 where the proxy overrates a response; `error_sq`, `distance_sq`, `distance_error` and
    `outlier_error` e², d², d·e and e on outliers, 0 elsewhere; `latent_outlier` the share beyond the threshold of
    `latent_reference` in InfoRM's latent space, from `latent_files`, NaN without them; `outlier_gold` gold on
    outliers, 0 elsewhere); `curve.json` their means over prompts.
    """
    paths = {what: by_step(files, what) for what, files in (("samples", samples_files), ("gold", gold_files),
                                                             ("proxy", proxy_files), ("distance", distance_files),
                                                             ("latent", latent_files or []), ("KL", kl_files))}
    threshold = outlier_threshold(reference)
    latent = latent_threshold(latent_reference) if latent_files else None
    gold_paths, kl_paths = paths["gold"], paths["KL"]
    steps = sorted(gold_paths)
    if 0 not in gold_paths:
        raise DataError(f"{rm}: no gold file for step 0 (the SFT policy) among {gold_files}")
    for what in ("samples", "proxy", "distance", *(("latent",) if latent_files else ())):
        if paths[what].keys() != gold_paths.keys():
            raise DataError(f"{rm}: gold files cover steps {steps}, {what} files {sorted(paths[what])}")
    missing = sorted(set(steps) - kl_paths.keys() - {0})
    extra = sorted(kl_paths.keys() - set(steps))
    if missing or extra:
        raise DataError(f"{rm}: KL files missing for steps {missing} / for steps without samples {extra}")
    prompts: list[str] = []
    scale: dict[str, Callable[[float], float]] = {}
    table: dict[str, list[list[float]]] = {name: [] for name in CHANNELS}
    for step in steps:
        gold = sample_values(gold_paths[step], "gold")
        values = {"gold": gold}
        for name, path, field, value in (("proxy", paths["proxy"][step], "reward", float),
                                         ("finished", paths["samples"][step], "finished", float),
                                         ("tokens", paths["samples"][step], "tokens", len),
                                         ("distance", paths["distance"][step], "distance", float),
                                         ("kl", kl_paths.get(step), "kl", float)):
            if path is None:  # step 0 without a KL file
                values[name] = dict.fromkeys(gold, 0.0)
                continue
            values[name] = sample_values(path, field, value)
            if values[name].keys() != gold.keys():
                raise DataError(f"{path} and {gold_paths[step]} hold different samples")
        scale = scale or {name: standardise(values[name]) for name in ("proxy", "gold")}  # step 0, the SFT policy
        distance = values["distance"]
        outlier = {k: float(d > threshold) for k, d in distance.items()}
        error = {k: scale["proxy"](values["proxy"][k]) - scale["gold"](gold[k]) for k in gold}
        values |= {"outlier": outlier, "error": error, "error_sq": {k: e * e for k, e in error.items()},
                   "distance_sq": {k: d * d for k, d in distance.items()},
                   "distance_error": {k: distance[k] * e for k, e in error.items()},
                   "outlier_error": {k: outlier[k] * e for k, e in error.items()},
                   "outlier_gold": {k: outlier[k] * g for k, g in gold.items()},
                   "latent_outlier": dict.fromkeys(gold, float("nan"))}
        if latent is not None:
            far = sample_values(paths["latent"][step], "distance", lambda d: float(d > latent))
            if far.keys() != gold.keys():
                raise DataError(f"{paths['latent'][step]} and {gold_paths[step]} hold different samples")
            values["latent_outlier"] = far
        order = list(dict.fromkeys(prompt for prompt, _ in gold))
        prompts = prompts or order
        if set(order) != set(prompts):
            raise DataError(f"{gold_paths[step]}: other prompts than step {steps[0]}'s")
        for name in CHANNELS:
            table[name].append(prompt_means(values[name], prompts))
    arrays = {name: np.array(values) for name, values in table.items()}
    write_npz(per_prompt, {"rm": np.array(rm), "steps": np.array(steps), "prompts": np.array(prompts), **arrays})
    write_json(out, {"rm": rm, "steps": steps, **{name: a.mean(axis=1).tolist() for name, a in arrays.items()}})
