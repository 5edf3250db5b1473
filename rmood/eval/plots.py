"""The `mrm_eval` figures: gold and proxy reward against KL (best-of-n and PPO) with interval bands, RM accuracies,
the forest plot of paired differences and the distance from the RM's training distribution.

Every figure has a fixed size and dpi, uses matplotlib's default style (not the user's rc file) and is
saved without a timestamp or version in its metadata, so the PNG bytes depend only on the data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from rmood.io import atomic_path  # noqa: E402

FIGSIZE = (8.0, 5.0)
DPI = 120
MARKERS = "osD^vPX*<>"
Curves = dict[str, tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float]]]  # rm -> (x, y, lo, hi)
Bars = tuple[np.ndarray, np.ndarray, np.ndarray]  # value, lo, hi per RM


def styles(rms: Sequence[str]) -> dict[str, dict[str, str]]:
    """A fixed colour and marker per RM (by position), so an RM looks the same in every figure."""
    cmap = plt.get_cmap("tab10" if len(rms) <= 10 else "tab20")
    return {rm: {"color": cmap(i % cmap.N), "marker": MARKERS[i % len(MARKERS)]} for i, rm in enumerate(rms)}


@contextmanager
def panels(path: str | os.PathLike, title: str, n: int = 1, rows: int = 1) -> Iterator[list[Axes]]:
    """A titled figure of `rows` × `n` panels (the panels of a row share y; listed row by row), default style,
    written atomically to `path` as a reproducible PNG."""
    with plt.style.context("default"):
        fig, axes = plt.subplots(rows, n, figsize=FIGSIZE, dpi=DPI, layout="constrained", sharey="row", squeeze=False)
        try:
            if n * rows == 1:
                axes[0][0].set_title(title)
            else:
                fig.suptitle(title)
            yield list(axes.flat)
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
        finally:
            plt.close(fig)


@contextmanager
def figure(path: str | os.PathLike, title: str) -> Iterator[Axes]:
    """One titled figure (see `panels`)."""
    with panels(path, title) as (ax,):
        yield ax


def banded_line(ax: Axes, x: Any, y: Any, lo: Any, hi: Any, rm: str, style: dict[str, dict[str, str]]) -> None:
    """One RM's line with its interval as a band."""
    ax.plot(x, y, label=rm, linewidth=1.5, markersize=5, **style[rm])
    ax.fill_between(x, lo, hi, color=style[rm]["color"], alpha=0.15, linewidth=0)


def curve_plot(
    path: str | os.PathLike,
    title: str,
    xlabel: str,
    ylabel: str,
    curves: Curves,
    style: dict[str, dict[str, str]],
    baseline: tuple[float, str] | None,
    top_axis: tuple[Sequence[float], Sequence[str], str] | None = None,
    marked: dict[str, Sequence[bool]] | None = None,
    budgets: Sequence[float] = (),
) -> None:
    """One line per RM with its interval as a band; `baseline` (value, label) is dashed; `top_axis` (positions,
    labels, name) adds top ticks; `marked` points (per RM) get a black cross (degenerate checkpoints); `budgets`
    are dotted vertical lines."""
    with figure(path, title) as ax:
        for rm, (x, y, lo, hi) in curves.items():
            banded_line(ax, x, y, lo, hi, rm, style)
        crossed = [(np.asarray(curves[rm][0])[np.asarray(m, bool)], np.asarray(curves[rm][1])[np.asarray(m, bool)])
                   for rm, m in (marked or {}).items() if rm in curves]
        if any(len(x) for x, _ in crossed):
            ax.scatter(np.concatenate([x for x, _ in crossed]), np.concatenate([y for _, y in crossed]), marker="x",
                       color="black", s=40, zorder=5, label="degenerate checkpoint")
        for x in budgets:
            ax.axvline(x, color="gray", linestyle=":", linewidth=1)
        if baseline is not None:
            ax.axhline(baseline[0], color="black", linestyle="--", linewidth=1, label=baseline[1])
        if not curves:
            ax.text(0.5, 0.5, "no curves to show", transform=ax.transAxes, ha="center", va="center", color="gray")
        if top_axis is not None:
            top = ax.secondary_xaxis("top")
            top.set_xticks(top_axis[0], labels=top_axis[1])
            top.set_xlabel(top_axis[2])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)


def accuracy_plot(path: str | os.PathLike, rms: Sequence[str], id_acc: Bars, ood_acc: Bars, level: float) -> None:
    """Grouped bars of in-distribution and OOD pairwise accuracy per RM with their intervals, and the chance line."""
    width = 0.38
    with figure(path, f"Reward-model accuracy against gold ({level:.0%} intervals)") as ax:
        x = np.arange(len(rms))
        for offset, (value, lo, hi), label, color in ((-width / 2, id_acc, "ID (test pairs)", "tab:blue"),
                                                      (width / 2, ood_acc, "OOD (held-out task families)",
                                                       "tab:orange")):
            ax.bar(x + offset, value, width, yerr=[value - lo, hi - value], capsize=3, label=label, color=color)
        ax.axhline(0.5, color="black", linestyle="--", linewidth=1, label="chance")
        ax.set_xticks(list(x), labels=list(rms), rotation=30, ha="right")
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("reward model")
        ax.set_ylabel("pairwise accuracy vs gold")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)


def forest_plot(path: str | os.PathLike, title: str, rms: Sequence[str],
                comparisons: dict[str, dict[str, tuple[float, float, float]]], style: dict[str, dict[str, str]]) -> None:
    """One panel per comparison: the paired difference (value, lo, hi) of each RM in it as a point with its interval,
    one row per RM of `rms` in every panel, and the zero line."""
    with panels(path, title, max(len(comparisons), 1)) as axes:
        for ax, (name, estimates) in zip(axes, comparisons.items()):
            for rm, (value, lo, hi) in estimates.items():
                ax.errorbar(value, rms.index(rm), xerr=[[value - lo], [hi - value]], fmt=style[rm]["marker"],
                            color=style[rm]["color"], capsize=3)
            ax.axvline(0.0, color="black", linestyle="--", linewidth=1)
            ax.set_title(name, fontsize="medium")
            ax.set_xlabel("Δ gold")
            ax.grid(axis="x", alpha=0.3)
        axes[0].set_yticks(range(len(rms)), labels=list(rms))
        axes[0].set_ylim(len(rms) - 0.5, -0.5)
        if not comparisons:
            axes[0].text(0.5, 0.5, "no comparisons to show", transform=axes[0].transAxes, ha="center", va="center",
                         color="gray")


def collapse_plot(path: str | os.PathLike, runs: dict[str, Any], style: dict[str, dict[str, str]], finish_rate: float,
                  kl_per_token: float, level: float) -> None:
    """Two panels against PPO updates: the share of answers that end, and KL per response token, one line per run
    with its band; crosses on degenerate checkpoints, the KL-per-token threshold dashed."""
    with panels(path, f"PPO: do the policies still answer? ({level:.0%} intervals)", 2) as (finish, per_token):
        for ax, name, ylabel in ((finish, "finished", "share of answers that end"),
                                 (per_token, "kl_per_token", "KL per response token (nats)")):
            for rm, c in runs.items():
                banded_line(ax, c["point"], c[name], c[f"{name}_lo"], c[f"{name}_hi"], rm, style)
                bad = c["degenerate"].to_numpy() > 0
                ax.scatter(c["point"][bad], c[name][bad], marker="x", color="black", s=40, zorder=5)
            ax.set_xlabel("PPO update")
            ax.set_title(ylabel, fontsize="medium")
            ax.grid(alpha=0.3)
        per_token.axhline(kl_per_token, color="black", linestyle="--", linewidth=1, label="degenerate above")
        finish.text(0.02, 0.02, f"× degenerate: below {finish_rate:.0%} of the run's update-0 rate, or above "
                    f"{kl_per_token:g} nat per token", transform=finish.transAxes, fontsize="small")
        if runs:
            per_token.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)


def drift_plot(path: str | os.PathLike, bon: dict[str, Any], runs: dict[str, Any], sqrt_kl: dict[str, np.ndarray],
               references: dict[str, float], style: dict[str, dict[str, str]], level: float) -> None:
    """Four panels: the distance from the RM's training distribution (top) and the share of outliers (bottom) against
    KL, best-of-n (left) and PPO (right), one banded line per RM or run; the reference levels dashed (the SFT
    policy's eval samples, the training responses) and the outlier share expected of the SFT policy dotted;
    degenerate PPO checkpoints crossed."""
    with panels(path, f"Does optimisation leave the training distribution? ({level:.0%} intervals)", 2, 2) as axes:
        for ax, name, curves, x_of, xlabel in (
                (axes[0], "distance", bon, lambda rm, c: c["kl"], "KL_BoN (nats)"),
                (axes[1], "distance", runs, lambda rm, c: sqrt_kl[rm], "√KL (nats$^{1/2}$)"),
                (axes[2], "outlier", bon, lambda rm, c: c["kl"], "KL_BoN (nats)"),
                (axes[3], "outlier", runs, lambda rm, c: sqrt_kl[rm], "√KL (nats$^{1/2}$)")):
            for rm, c in curves.items():
                banded_line(ax, x_of(rm, c), c[name], c[f"{name}_lo"], c[f"{name}_hi"], rm, style)
                if "degenerate" in c:
                    bad = c["degenerate"].to_numpy() > 0
                    ax.scatter(np.asarray(x_of(rm, c))[bad], c[name].to_numpy()[bad], marker="x", color="black",
                               s=40, zorder=5)
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
        for ax in axes[:2]:
            ax.axhline(references["sft"], color="black", linestyle="--", linewidth=1, label="SFT eval samples")
            ax.axhline(references["train"], color="gray", linestyle="--", linewidth=1, label="training responses")
        for ax in axes[2:]:
            ax.axhline(1 - references["quantile"], color="black", linestyle=":", linewidth=1,
                       label="SFT policy (by construction)")
        axes[0].set_ylabel("Mahalanobis distance")
        axes[2].set_ylabel("share of outliers")
        axes[0].set_title("best-of-n", fontsize="medium")
        axes[1].set_title("PPO", fontsize="medium")
        handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
        axes[1].legend(handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       fontsize="small", frameon=False)


def estimate(row: Any, name: str) -> tuple[float, float, float]:
    """(value, lo, hi) of a table row's estimate `name`."""
    return row[name], row[f"{name}_lo"], row[f"{name}_hi"]


def relative(values: Any, start: float) -> np.ndarray:
    return np.asarray(values, dtype=float) - start


def draw_plots(plots: dict[str, str], summary: Any, curves: Any, budgets: Any, settings: Any,
               references: dict[str, float]) -> None:
    """The figures of the report from the pooled summary, curve and budget tables (`rmood.eval.estimates`): gold and
    proxy against KL with interval bands (best-of-n and PPO, degenerate checkpoints crossed, KL budgets dotted),
    whether the PPO policies still answer, accuracies, the forest plot of paired differences from the baseline RM
    (best-of-N at N, PPO at every KL budget), and the distance from the RM's training distribution with the share of
    outliers (`references`: the SFT samples' and training responses' mean distance, the outlier quantile). Proxy
    curves are shown relative to their start (the band is that of the proxy itself)."""
    runs_and_rms = list(summary["rm"])  # the RMs, then the KL-penalised PPO runs (PPO columns only)
    rms = list(summary[summary["id_accuracy"].notna()]["rm"])
    style = styles(runs_and_rms)
    level, baseline = settings.level, settings.baseline
    bon = curves[curves["method"] == "bon"]
    ppo = curves[curves["method"] == "ppo"]
    ns = sorted(bon["point"].unique())
    bon_kl = bon[bon["rm"] == rms[0]]["kl"].to_numpy()
    bon_axes = {"xlabel": "KL_BoN = log n − (n−1)/n (nats)", "style": style,
                "top_axis": (bon_kl, [str(int(n)) for n in ns], "n")}
    by_rm = {rm: bon[bon["rm"] == rm] for rm in rms}
    start = float(by_rm[rms[0]]["gold"].iloc[0])
    curve_plot(plots["bon_gold"], f"Best-of-n: gold reward ({level:.0%} intervals)", ylabel="mean gold reward",
               curves={rm: (c["kl"], c["gold"], c["gold_lo"], c["gold_hi"]) for rm, c in by_rm.items()},
               baseline=(start, "SFT policy (n = 1)"), **bon_axes)
    curve_plot(plots["bon_proxy"], f"Best-of-n: proxy reward ({level:.0%} intervals)",
               ylabel="proxy reward − proxy at n = 1 (RM units)",
               curves={rm: (c["kl"], *(relative(c[k], c["proxy"].iloc[0]) for k in ("proxy", "proxy_lo", "proxy_hi")))
                       for rm, c in by_rm.items()},
               baseline=(0.0, "SFT policy (n = 1)"), **bon_axes)
    runs = {rm: ppo[ppo["rm"] == rm] for rm in runs_and_rms if (ppo["rm"] == rm).any()}
    sqrt_kl = {rm: np.sqrt(np.clip(c["kl"].to_numpy(), 0.0, None)) for rm, c in runs.items()}
    ppo_start = float(np.mean([c["gold"].iloc[0] for c in runs.values()])) if runs else 0.0
    ppo_axes = {"xlabel": r"$\sqrt{\mathrm{KL}(\pi\,\|\,\pi_\mathrm{SFT})}$ (nats$^{1/2}$)", "style": style,
                "marked": {rm: c["degenerate"].to_numpy() > 0 for rm, c in runs.items()},
                "budgets": np.sqrt(settings.kl_budgets) if runs else ()}
    curve_plot(plots["ppo_gold"], f"PPO: gold reward ({level:.0%} intervals)", ylabel="mean gold reward",
               curves={rm: (sqrt_kl[rm], c["gold"], c["gold_lo"], c["gold_hi"]) for rm, c in runs.items()},
               baseline=(ppo_start, "SFT policy (update 0)") if runs else None, **ppo_axes)
    curve_plot(plots["ppo_proxy"], f"PPO: proxy reward ({level:.0%} intervals)",
               ylabel="proxy reward − proxy at update 0 (RM units)",
               curves={rm: (sqrt_kl[rm], *(relative(c[k], c["proxy"].iloc[0]) for k in ("proxy", "proxy_lo",
                                                                                         "proxy_hi")))
                       for rm, c in runs.items()},
               baseline=(0.0, "SFT policy (update 0)") if runs else None, **ppo_axes)
    rows = {rm: summary[summary["rm"] == rm].iloc[0] for rm in runs_and_rms}
    accuracy_plot(plots["rm_accuracy"], rms,
                  *(tuple(np.array([estimate(rows[rm], f"{kind}_accuracy")[i] for rm in rms]) for i in range(3))
                    for kind in ("id", "ood")), level)
    n_max = int(ns[-1])
    collapse_plot(plots["ppo_collapse"], runs, style, settings.finish_rate, settings.kl_per_token, level)
    drift_plot(plots["ood_distance"], by_rm, runs, sqrt_kl, references, style, level)
    comparisons = {f"Best-of-{n_max}": {rm: estimate(rows[rm], "bon_delta_at_N") for rm in rms if rm != baseline}}
    for budget in settings.kl_budgets:
        at_budget = budgets[(budgets["kl"] == budget) & budgets["delta_gold"].notna()]
        comparisons[f"PPO, {budget:g} nats"] = {r["rm"]: estimate(r, "delta_gold") for _, r in at_budget.iterrows()}
    forest_plot(plots["forest"], f"Gold minus {baseline}'s gold, paired ({level:.0%} intervals)",
                [rm for rm in runs_and_rms if rm != baseline], {name: panel for name, panel in comparisons.items() if panel},
                style)
