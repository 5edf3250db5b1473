"""The distribution figures: each step writes a PNG and, as JSON, the numbers the PNG shows.

Inputs are float32 .npy arrays: `chosen`, `rejected`, `message` [N, d] (rows aligned with the training
pairs; message = the prompt alone), the reward direction `weight` [d] (the .npy of an RM's score weight,
or a GDA .npz whose `weight` is taken), and per prompt a representation file [M, d] with a rewards
JSONL `{prompt_id, sample, reward}` aligned with it by row. Figures follow `rmood.eval.plots`: default
style, fixed size and dpi, no timestamp in the metadata, so the PNG bytes depend only on the data.
Principal axes are oriented so that w projects non-negatively on each of them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from rmood.distribution import analysis  # noqa: E402
from rmood.eval.plots import DPI, FIGSIZE  # noqa: E402
from rmood.io import DataError, atomic_path, read_jsonl, read_npy, write_json  # noqa: E402

COLORS = {"chosen": "tab:blue", "rejected": "tab:red"}
MODES = ("pair", "prompt_subtract", "w_projection", "residualize", "regression")
MODE_TITLES = {  # the PCA modes
    "pair": "pair-centred: f − (f(x,y₊) + f(x,y₋))/2",
    "prompt_subtract": "prompt-subtracted: f(x,y) − f(x)",
    "residualize": "top-{k} prompt subspace projected out",
    "regression": "residual of regressing f(x,y) on [f(x), 1]",
}
RESIDUAL_RANK = 10  # prompt singular directions removed by mode "residualize"
PCA_COMPONENTS = 10  # explained-variance ratios reported
LINKED_PAIRS = 30  # pairs joined by a line in the t-SNE plot
MAX_PANELS = 6  # prompts drawn by prompt_pca_plot (all are in its JSON)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
BINS = 40


# --- inputs ---------------------------------------------------------------------------------------


def load_matrix(path: str | os.PathLike) -> np.ndarray:
    """A finite 2-d .npy array as float64; anything else is a DataError naming the file."""
    array = read_npy(path)
    if array.ndim != 2 or array.shape[0] == 0:
        raise DataError(f"{path}: expected a non-empty [rows, dim] array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise DataError(f"{path}: non-finite values")
    return array.astype(np.float64)


def load_weight(path: str | os.PathLike, dim: int) -> np.ndarray:
    """The reward direction w [dim] from a .npy ([dim] or [1, dim]) or a GDA .npz (its `weight`)."""
    if str(path).endswith(".npz"):
        from rmood.mrm.gda import load_gda

        weight = load_gda(path)["weight"]
    else:
        weight = read_npy(path)
    weight = np.asarray(weight, dtype=np.float64).reshape(-1)
    if weight.shape != (dim,):
        raise DataError(f"{path}: expected a reward direction of {dim} values, got {weight.size}")
    if not np.isfinite(weight).all() or not np.any(weight):
        raise DataError(f"{path}: the reward direction must be finite and non-zero")
    return weight


def load_pairs(*paths: str) -> list[np.ndarray]:
    """Row-aligned representation arrays of the same shape."""
    arrays = [load_matrix(path) for path in paths]
    for path, array in zip(paths[1:], arrays[1:]):
        if array.shape != arrays[0].shape:
            raise DataError(f"{path}: shape {array.shape} does not match {paths[0]}'s {arrays[0].shape}")
    return arrays


def load_prompt(representation: str, rewards: str) -> tuple[str, np.ndarray, np.ndarray]:
    """(prompt_id, representations [M, d], rewards [M]) of one prompt's samples, checked to align."""
    features = load_matrix(representation)
    records = read_jsonl(rewards, required=("prompt_id", "sample", "reward"))
    ids = {r["prompt_id"] for r in records}
    if len(ids) != 1:
        raise DataError(f"{rewards}: expected the samples of one prompt, got prompt ids {sorted(map(str, ids))}")
    prompt_id = str(ids.pop())
    stem = Path(representation).stem
    if stem.startswith("representation_") and stem != f"representation_{prompt_id}":
        raise DataError(f"{representation}: file name does not match the prompt {prompt_id!r} of {rewards}")
    if len(records) != features.shape[0]:
        raise DataError(f"{rewards}: {len(records)} rewards for {features.shape[0]} rows of {representation}")
    return prompt_id, features, np.array([float(r["reward"]) for r in records])


# --- output helpers -------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars and arrays to Python, non-finite floats to null."""
    if isinstance(value, dict):
        return {key: _clean(v) for key, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _write_json(path: str, summary: dict[str, Any]) -> None:
    write_json(path, _clean(summary))


@contextmanager
def _figure(path: str, title: str, ncols: int = 1, nrows: int = 1) -> Iterator[tuple[Figure, np.ndarray]]:
    """A titled figure of nrows × ncols axes in the house style, written atomically as a reproducible PNG."""
    with plt.style.context("default"):
        fig, axes = plt.subplots(nrows, ncols, figsize=FIGSIZE, dpi=DPI, layout="constrained", squeeze=False)
        try:
            fig.suptitle(title)
            yield fig, axes.ravel()
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
        finally:
            plt.close(fig)


def _subsample(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of `size` of n rows drawn without replacement (all rows when n ≤ size)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _oriented_pca(X: np.ndarray, w: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of X with 2 to PCA_COMPONENTS axes, each oriented along w."""
    if min(X.shape) < 2:
        raise DataError(f"a PCA picture needs at least 2 rows and 2 dimensions, got shape {X.shape}")
    projected, components, ratio = analysis.pca(X, min(PCA_COMPONENTS, *X.shape), seed)
    projected, components = analysis.orient(projected, components, w)
    return projected, components, ratio


def _pc_labels(ax: Axes, ratio: np.ndarray) -> None:
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}% of variance)")


def _draw_w(ax: Axes, points: np.ndarray, arrow: np.ndarray) -> None:
    """w's unit direction in PC1–PC2 from the centre of `points`; its length shows how much of w lies there."""
    centre = points.mean(axis=0)
    tip = centre + 2.5 * float(points.std(axis=0).max()) * arrow
    ax.annotate("", xy=tuple(tip), xytext=tuple(centre), arrowprops={"arrowstyle": "-|>", "color": "black",
                                                                     "linewidth": 2})
    ax.plot([], [], color="black", linewidth=2, label=f"w (cos to the PC1–PC2 plane: {np.hypot(*arrow):.2f})")


# --- steps ----------------------------------------------------------------------------------------


def tsne_plot(
    chosen: str, rejected: str, weight: str, out_png: str, out_json: str, seed: int, pair_centre: bool,
    max_points: int,
) -> None:
    """t-SNE of chosen vs rejected representations (at most `max_points` pairs), coloured by projection on w.

    JSON: n_pairs, n_points, pair_centre, perplexity, kl_divergence (sklearn's after optimisation, to 1e-4),
    mean_pair_distance (chosen ↔ its rejected in the embedding) and, for scale, mean_random_distance
    (chosen ↔ the next pair's rejected).
    """
    from sklearn.manifold import TSNE

    C, R = load_pairs(chosen, rejected)
    w = load_weight(weight, C.shape[1])
    rows = _subsample(C.shape[0], max_points, seed)
    C, R = C[rows], R[rows]
    if pair_centre:
        C, R = analysis.pair_centred(C, R)
    n = len(rows)
    if n < 3:
        raise DataError(f"{chosen}: t-SNE needs at least 3 pairs, got {n}")
    X = np.vstack([C, R])
    perplexity = min(30.0, (2 * n - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    Y = tsne.fit_transform(X)
    Yc, Yr = Y[:n], Y[n:]
    pair_distance = np.linalg.norm(Yc - Yr, axis=1)
    random_distance = np.linalg.norm(Yc - Yr[np.roll(np.arange(n), 1)], axis=1)
    colour = analysis.w_projection(X, w)

    title = (f"t-SNE of {'pair-centred ' if pair_centre else ''}chosen vs rejected ({n} pairs)\n"
             "colour = projection on w (t-SNE has no linear map, so w cannot be drawn as an arrow)")
    with _figure(out_png, title) as (fig, (ax,)):
        for i in range(min(LINKED_PAIRS, n)):
            ax.plot([Yc[i, 0], Yr[i, 0]], [Yc[i, 1], Yr[i, 1]], color="gray", linewidth=0.6, alpha=0.7, zorder=1)
        vmin, vmax = np.quantile(colour, [0.01, 0.99])
        kw = {"cmap": "viridis", "vmin": vmin, "vmax": vmax, "s": 14, "zorder": 2}
        points = ax.scatter(Yc[:, 0], Yc[:, 1], c=colour[:n], marker="o", **kw)
        ax.scatter(Yr[:, 0], Yr[:, 1], c=colour[n:], marker="^", **kw)
        fig.colorbar(points, ax=ax, label="projection on w: x·w/‖w‖")
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.legend(handles=[
            Line2D([], [], marker="o", linestyle="", color="dimgray", label="chosen"),
            Line2D([], [], marker="^", linestyle="", color="dimgray", label="rejected"),
            Line2D([], [], color="gray", linewidth=0.6, label=f"a pair (first {min(LINKED_PAIRS, n)} joined)"),
        ], loc="best", fontsize="small")
    _write_json(out_json, {
        "n_pairs": n,
        "n_points": 2 * n,
        "pair_centre": pair_centre,
        "perplexity": perplexity,
        "kl_divergence": round(float(tsne.kl_divergence_), 4),  # its last digits vary with the thread count
        "mean_pair_distance": pair_distance.mean(),
        "mean_random_distance": random_distance.mean(),
    })


def _prompt_transform(mode: str, C: np.ndarray, R: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chosen and rejected after the prompt-removal `mode`.

    "regression" fits one regression to chosen and rejected together, so the difference between
    them (what the reward separates) is kept.
    """
    if mode == "pair":
        return analysis.pair_centred(C, R)
    if mode == "prompt_subtract":
        return analysis.prompt_subtracted(C, P), analysis.prompt_subtracted(R, P)
    if mode == "residualize":
        return analysis.residualized(C, P, RESIDUAL_RANK), analysis.residualized(R, P, RESIDUAL_RANK)
    X = analysis.regressed(np.vstack([C, R]), np.vstack([P, P]))
    return X[: len(C)], X[len(C):]


def pca_plot(
    chosen: str, rejected: str, message: str, weight: str, out_png: str, out_json: str, mode: str, seed: int
) -> None:
    """Chosen vs rejected after a prompt-removal `mode`: a PCA scatter with w's direction, or for
    mode "w_projection" a histogram of both projections on w.

    JSON: mode, n_pairs, dim, explained_variance_ratio and w_arrow (w/‖w‖ on PC1 and PC2) of the
    transformed chosen+rejected rows (of the untransformed rows for "w_projection"), prompt_r2_before /
    prompt_r2_after (share of the variance explained by regressing on the prompt representation, for
    "w_projection" after = of the projection on w) and prompt_r2_chance (what unrelated data reach);
    "residualize" adds residual_rank; "w_projection" adds d_prime, mean_chosen, mean_rejected,
    pooled_std and accuracy (share of pairs whose chosen projects higher).
    """
    if mode not in MODES:
        raise ValueError(f"pca_plot: mode must be one of {', '.join(MODES)}, got {mode!r}")
    C, R, P = load_pairs(chosen, rejected, message)
    w = load_weight(weight, C.shape[1])
    n, d = C.shape
    summary: dict[str, Any] = {"mode": mode, "n_pairs": n, "dim": d, "prompt_r2_before": analysis.prompt_r2(P, C, R),
                               "prompt_r2_chance": analysis.chance_r2(n, d)}

    if mode == "w_projection":
        _, components, ratio = _oriented_pca(np.vstack([C, R]), w, seed)
        pc, pr = analysis.w_projection(C, w), analysis.w_projection(R, w)
        sep = analysis.d_prime(pc, pr)
        summary |= {"prompt_r2_after": analysis.prompt_r2(P, pc, pr), "d_prime": sep,
                    "mean_chosen": pc.mean(), "mean_rejected": pr.mean(), "pooled_std": analysis.pooled_std(pc, pr),
                    "accuracy": float(np.mean(pc > pr))}
        title = f"Chosen vs rejected projected on w: d′ = {sep:.2f}, accuracy {summary['accuracy']:.1%} ({n} pairs)"
        with _figure(out_png, title) as (fig, (ax,)):
            bins = np.histogram_bin_edges(np.concatenate([pc, pr]), bins=BINS)
            for name, values in (("chosen", pc), ("rejected", pr)):
                ax.hist(values, bins=bins, alpha=0.5, color=COLORS[name], label=name)
                ax.axvline(values.mean(), color=COLORS[name], linestyle="--", linewidth=1.5,
                           label=f"mean {name} = {values.mean():.3g}")
            ax.set_xlabel("projection on w: f·w/‖w‖")
            ax.set_ylabel("pairs")
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize="small")
    else:
        Ct, Rt = _prompt_transform(mode, C, R, P)
        projected, components, ratio = _oriented_pca(np.vstack([Ct, Rt]), w, seed)
        summary["prompt_r2_after"] = analysis.prompt_r2(P, Ct, Rt)
        if mode == "residualize":
            summary["residual_rank"] = RESIDUAL_RANK
        title = (f"PCA, {MODE_TITLES[mode].format(k=RESIDUAL_RANK)}\nprompt R² {summary['prompt_r2_before']:.2f}"
                 f" → {summary['prompt_r2_after']:.2f} (chance {summary['prompt_r2_chance']:.2f}), {n} pairs")
        plane = projected[:, :2]
        with _figure(out_png, title) as (fig, (ax,)):
            for name, rows in (("chosen", plane[:n]), ("rejected", plane[n:])):
                ax.scatter(rows[:, 0], rows[:, 1], s=6, alpha=0.35, color=COLORS[name], label=name, linewidths=0)
            _draw_w(ax, plane, analysis.w_arrow(components[:2], w))
            _pc_labels(ax, ratio)
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize="small", markerscale=2)
    summary |= {"explained_variance_ratio": ratio, "w_arrow": analysis.w_arrow(components[:2], w)}
    _write_json(out_json, summary)


def difference_plot(chosen: str, rejected: str, weight: str, out_png: str, out_json: str, seed: int) -> None:
    """PCA of the differences chosen − rejected with w's direction, the reward margins (c − r)·w, and
    a Gaussianity test of the differences (`analysis.difference_gaussian_test`).

    JSON: n_pairs, explained_variance_ratio, w_arrow (w/‖w‖ on the top-2 PCs of the differences),
    margin_mean, margin_std, margin_quantiles, accuracy (share of positive margins) and gaussian_test.
    """
    C, R = load_pairs(chosen, rejected)
    w = load_weight(weight, C.shape[1])
    D = C - R
    test = analysis.difference_gaussian_test(D)
    projected, components, ratio = _oriented_pca(D, w, seed)
    arrow = analysis.w_arrow(components[:2], w)
    margin = D @ w
    plane = projected[:, :2]
    verdict = "Gaussian" if test["gaussian"] else "not Gaussian"
    title = (f"Chosen − rejected ({D.shape[0]} pairs): {verdict} at α = {test['alpha']} (Bonferroni, "
             f"{test['k'] + 2} tests)\nMardia p(skew) = {test['skewness_p']:.2g}, p(kurt) = {test['kurtosis_p']:.2g};"
             f" smallest per-PC normaltest p = {min(test['component_normaltest_p']):.2g}")
    with _figure(out_png, title, ncols=2) as (fig, (left, right)):
        limit = float(np.quantile(np.abs(margin), 0.99)) or 1.0
        points = left.scatter(plane[:, 0], plane[:, 1], c=margin, cmap="coolwarm", vmin=-limit, vmax=limit, s=6,
                              linewidths=0)
        _draw_w(left, plane, arrow)
        fig.colorbar(points, ax=left, label="margin (c − r)·w", location="bottom", shrink=0.8)
        _pc_labels(left, ratio)
        left.set_title(f"PCA of c − r (top {test['k']} PCs tested)", fontsize="medium")
        left.grid(alpha=0.3)
        left.legend(loc="upper left", fontsize="small")
        right.hist(margin, bins=BINS, color="tab:purple", alpha=0.7)
        right.axvline(0.0, color="black", linewidth=1)
        right.axvline(margin.mean(), color="tab:purple", linestyle="--", linewidth=1.5,
                      label=f"mean = {margin.mean():.3g}")
        right.set_title(f"reward margin: {np.mean(margin > 0):.1%} of pairs > 0", fontsize="medium")
        right.set_xlabel("(c − r)·w")
        right.set_ylabel("pairs")
        right.grid(alpha=0.3)
        right.legend(loc="upper left", fontsize="small")
    _write_json(out_json, {
        "n_pairs": D.shape[0],
        "explained_variance_ratio": ratio,
        "w_arrow": arrow,
        "margin_mean": margin.mean(),
        "margin_std": margin.std(ddof=1) if len(margin) > 1 else 0.0,
        "margin_quantiles": dict(zip(map(str, QUANTILES), np.quantile(margin, QUANTILES))),
        "accuracy": float(np.mean(margin > 0)),
        "gaussian_test": test,
    })


def center_plot(chosen: str, rejected: str, weight: str, out_png: str, out_json: str) -> None:
    """Histogram of the pair centres' inner products ⟨(c + r)/2, w⟩.

    JSON: n_pairs, mean, std, min, max, quantiles ({"0.05": …, "0.25", "0.5", "0.75", "0.95"}).
    """
    C, R = load_pairs(chosen, rejected)
    w = load_weight(weight, C.shape[1])
    values = analysis.center_inner_products(C, R, w)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    with _figure(out_png, f"Pair centres on the reward direction ({len(values)} pairs)") as (fig, (ax,)):
        ax.hist(values, bins=BINS, color="tab:green", alpha=0.7)
        ax.axvline(values.mean(), color="black", linestyle="--", linewidth=1.5,
                   label=f"mean = {values.mean():.3g}, std = {std:.3g}")
        ax.set_xlabel("⟨(c + r)/2, w⟩")
        ax.set_ylabel("pairs")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    _write_json(out_json, {
        "n_pairs": len(values),
        "mean": values.mean(),
        "std": std,
        "min": values.min(),
        "max": values.max(),
        "quantiles": dict(zip(map(str, QUANTILES), np.quantile(values, QUANTILES))),
    })


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def prompt_pca_plot(
    representations: list[str], rewards: list[str], weight: str, out_png: str, out_json: str, seed: int
) -> None:
    """One PCA panel per prompt (the first MAX_PANELS) of its samples' representations, coloured by
    reward, with w's direction; `rewards[i]` is the rewards JSONL of `representations[i]`, row by row.

    JSON: prompts, a list in input order of {prompt_id, n_samples, explained_variance_ratio, w_arrow,
    corr_pc1_reward, corr_w_reward, reward_mean, reward_std}; the correlations are Pearson's (null when
    a side is constant), PC1 oriented along w; corr_w_reward ≈ 1 when the reward is linear in f.
    """
    if len(representations) != len(rewards) or not representations:
        raise ValueError(f"prompt_pca_plot: one rewards file per representation file, got "
                         f"{len(representations)} and {len(rewards)}")
    prompts = [load_prompt(rep, rew) for rep, rew in zip(representations, rewards)]
    dims = {features.shape[1] for _, features, _ in prompts}
    if len(dims) != 1:
        raise DataError(f"{', '.join(representations)}: representations of different widths {sorted(dims)}")
    w = load_weight(weight, dims.pop())
    summaries, planes = [], []
    for prompt_id, features, reward in prompts:
        projected, components, ratio = _oriented_pca(features, w, seed)
        summaries.append({
            "prompt_id": prompt_id,
            "n_samples": len(reward),
            "explained_variance_ratio": ratio,
            "w_arrow": analysis.w_arrow(components[:2], w),
            "corr_pc1_reward": _correlation(projected[:, 0], reward),
            "corr_w_reward": _correlation(analysis.w_projection(features, w), reward),
            "reward_mean": reward.mean(),
            "reward_std": reward.std(ddof=1) if len(reward) > 1 else 0.0,
        })
        planes.append((projected[:, :2], reward, ratio))

    shown = min(MAX_PANELS, len(prompts))
    ncols = min(3, shown)
    nrows = math.ceil(shown / ncols)
    title = ("Samples per prompt: PCA coloured by reward (standardised within the prompt), arrow = w"
             + (f"\nfirst {shown} of {len(prompts)} prompts" if shown < len(prompts) else ""))
    with _figure(out_png, title, ncols=ncols, nrows=nrows) as (fig, axes):
        for ax, summary, (plane, reward, ratio) in zip(axes, summaries, planes):
            z = (reward - reward.mean()) / (reward.std() or 1.0)
            points = ax.scatter(plane[:, 0], plane[:, 1], c=z, cmap="viridis", vmin=-2.5, vmax=2.5, s=14)
            _draw_w(ax, plane, summary["w_arrow"])
            ax.set_title(f"{summary['prompt_id']} (reward {summary['reward_mean']:.3g} ± {summary['reward_std']:.2g})\n"
                         f"corr with reward: PC1 {summary['corr_pc1_reward']:.2f}, w {summary['corr_w_reward']:.2f}",
                         fontsize="small")
            _pc_labels(ax, ratio)
            ax.xaxis.label.set_fontsize("small")
            ax.yaxis.label.set_fontsize("small")
            ax.tick_params(labelsize="x-small")
            ax.grid(alpha=0.3)
        for ax in axes[shown:]:
            ax.set_axis_off()
        fig.colorbar(points, ax=axes[:shown].tolist(), label="reward z-score within the prompt", shrink=0.8)
    _write_json(out_json, {"n_prompts": len(prompts), "prompts": summaries})
