"""The `mrm_eval` figures: gold and proxy reward against KL (best-of-n and PPO), and RM accuracies.

Every figure has a fixed size and dpi, uses matplotlib's default style (not the user's rc file) and is
saved without a timestamp or version in its metadata, so the PNG bytes depend only on the data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from rmood.io import atomic_path  # noqa: E402

FIGSIZE = (8.0, 5.0)
DPI = 120
MARKERS = "osD^vPX*<>"
Curves = dict[str, tuple[Sequence[float], Sequence[float]]]  # rm -> (x, y)


def styles(rms: Sequence[str]) -> dict[str, dict[str, str]]:
    """A fixed colour and marker per RM (by position), so an RM looks the same in every figure."""
    cmap = plt.get_cmap("tab10" if len(rms) <= 10 else "tab20")
    return {rm: {"color": cmap(i % cmap.N), "marker": MARKERS[i % len(MARKERS)]} for i, rm in enumerate(rms)}


@contextmanager
def figure(path: str | os.PathLike, title: str) -> Iterator[Axes]:
    """One titled figure with default style, written atomically to `path` as a reproducible PNG."""
    with plt.style.context("default"):
        fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI, layout="constrained")
        try:
            ax.set_title(title)
            yield ax
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
        finally:
            plt.close(fig)


def curve_plot(
    path: str | os.PathLike,
    title: str,
    xlabel: str,
    ylabel: str,
    curves: Curves,
    style: dict[str, dict[str, str]],
    baseline: tuple[float, str] | None,
    top_axis: tuple[Sequence[float], Sequence[str], str] | None = None,
) -> None:
    """One line per RM; `baseline` (value, label) is dashed; `top_axis` (positions, labels, name) adds top ticks."""
    with figure(path, title) as ax:
        for rm, (x, y) in curves.items():
            ax.plot(x, y, label=rm, linewidth=1.5, markersize=5, **style[rm])
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


def accuracy_plot(
    path: str | os.PathLike, rms: Sequence[str], id_acc: Sequence[float], ood_acc: Sequence[float]
) -> None:
    """Grouped bars of in-distribution and OOD pairwise accuracy per RM, with the 0.5 chance line."""
    width = 0.38
    with figure(path, "Reward-model accuracy against gold") as ax:
        x = range(len(rms))
        ax.bar([i - width / 2 for i in x], id_acc, width, label="ID (test pairs)", color="tab:blue")
        ax.bar([i + width / 2 for i in x], ood_acc, width, label="OOD (held-out task families)", color="tab:orange")
        ax.axhline(0.5, color="black", linestyle="--", linewidth=1, label="chance")
        ax.set_xticks(list(x), labels=list(rms), rotation=30, ha="right")
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("reward model")
        ax.set_ylabel("pairwise accuracy vs gold")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
