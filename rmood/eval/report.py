"""The `mrm_eval` step: summary table, Markdown report and over-optimisation plots of every RM.

Inputs are the RM accuracy table (`reports/rm_accuracy.csv`), the best-of-n report (`bon/report.json`,
see `rmood.eval.bon`) and one PPO curve per RM that PPO could serve (`ppo/<rm>/curve.json`, see
`rmood.eval.ppo`); RMs without a PPO curve get empty PPO columns.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from rmood.eval.fit import fit_bon, fit_rl
from rmood.io import DataError, atomic_open, read_json

PLOTS = ("bon_gold", "bon_proxy", "ppo_gold", "ppo_proxy", "rm_accuracy")
ACCURACY_COLUMNS = ("rm", "test_accuracy", "ood_accuracy")
SUMMARY_COLUMNS = (
    "rm",
    "id_accuracy",
    "ood_accuracy",
    "bon_gold_at_N",
    "bon_proxy_at_N",
    "bon_peak_gold",
    "bon_peak_kl",
    "ppo_final_gold",
    "ppo_peak_gold",
    "ppo_peak_kl",
    "ppo_final_proxy_minus_gold",
    "bon_alpha",
    "bon_beta",
    "rl_alpha",
    "rl_beta",
)
COLUMN_NOTES = {
    "id_accuracy / ood_accuracy": "pairwise accuracy against gold on held-out test pairs / held-out task families",
    "bon_gold_at_N / bon_proxy_at_N": "mean gold / proxy reward of best-of-N at the largest n",
    "bon_peak_gold / bon_peak_kl": "highest best-of-n gold and its KL_BoN (nats)",
    "ppo_final_gold / ppo_peak_gold / ppo_peak_kl": "PPO gold at the last checkpoint, highest gold and its KL (nats)",
    "ppo_final_proxy_minus_gold": "proxy − gold at the last PPO checkpoint (different scales: a gap, not a loss)",
    "bon_alpha, bon_beta / rl_alpha, rl_beta": "Gao et al. fits Δgold = d(α − βd) / d(α − β log d), d = √KL",
}
NAN = float("nan")


def plots_by_stem(plots: list[str]) -> dict[str, str]:
    """Map each expected plot name to its path; refuse unknown, duplicate or missing names."""
    paths: dict[str, str] = {}
    for path in plots:
        stem = Path(path).stem
        if stem not in PLOTS or stem in paths or Path(path).suffix != ".png":
            raise DataError(
                f"unexpected or duplicate plot {path}: expected one each of {', '.join(p + '.png' for p in PLOTS)}"
            )
        paths[stem] = path
    missing = [p for p in PLOTS if p not in paths]
    if missing:
        raise DataError(f"plots missing from the outputs: {', '.join(missing)}")
    return paths


def check_names(names: list[str], reward_models: list[str], source: str, every: bool) -> None:
    """Refuse RMs not in `reward_models` (and, if `every`, RMs of `reward_models` not in `names`)."""
    unknown = [n for n in names if n not in reward_models]
    if unknown:
        raise DataError(f"{source}: RM(s) not in reward_models: {', '.join(unknown)}")
    missing = [rm for rm in reward_models if rm not in names]
    if every and missing:
        raise DataError(f"{source}: no entry for RM(s) {', '.join(missing)}")


def read_accuracy(path: str, reward_models: list[str]) -> dict[str, dict[str, float]]:
    """RM -> {test_accuracy, ood_accuracy} from `reports/rm_accuracy.csv`."""
    import pandas as pd

    table = pd.read_csv(path)
    absent = [c for c in ACCURACY_COLUMNS if c not in table.columns]
    if absent:
        raise DataError(f"{path}: missing column(s) {', '.join(absent)}")
    names = table["rm"].astype(str).tolist()
    if len(set(names)) != len(names):
        raise DataError(f"{path}: an RM appears twice")
    check_names(names, reward_models, path, every=True)
    return {str(row["rm"]): {c: float(row[c]) for c in ACCURACY_COLUMNS[1:]} for _, row in table.iterrows()}


def read_bon(path: str, reward_models: list[str]) -> dict[str, Any]:
    """`bon/report.json`, checked: n, kl, prompts and every RM's gold and proxy curves of one length."""
    report = read_json(path)
    if not isinstance(report, dict) or not {"n", "kl", "prompts", "rms"} <= report.keys():
        raise DataError(f"{path}: expected an object with n, kl, prompts and rms")
    length = len(report["n"])
    if length == 0 or len(report["kl"]) != length:
        raise DataError(f"{path}: n and kl must be non-empty lists of one length")
    check_names(list(report["rms"]), reward_models, path, every=True)
    for rm, curve in report["rms"].items():
        if len(curve.get("gold", ())) != length or len(curve.get("proxy", ())) != length:
            raise DataError(f"{path}: RM {rm}: gold and proxy must have one value per n")
    return report


def read_ppo(paths: list[str], reward_models: list[str]) -> dict[str, dict[str, Any]]:
    """RM -> PPO curve, from `ppo/<rm>/curve.json` files; RMs may be missing, none may repeat."""
    curves: dict[str, dict[str, Any]] = {}
    for path in paths:
        curve = read_json(path)
        if not isinstance(curve, dict) or not {"rm", "steps", "kl", "gold", "proxy"} <= curve.keys():
            raise DataError(f"{path}: expected an object with rm, steps, kl, gold and proxy")
        length = len(curve["steps"])
        if length == 0 or any(len(curve[k]) != length for k in ("kl", "gold", "proxy")):
            raise DataError(f"{path}: steps, kl, gold and proxy must be non-empty lists of one length")
        if curve["rm"] in curves:
            raise DataError(f"{path}: a second PPO curve for RM {curve['rm']}")
        curves[curve["rm"]] = curve
    check_names(list(curves), reward_models, "PPO curves", every=False)
    return curves


def peak(kl: list[float], gold: list[float]) -> tuple[float, float]:
    """The highest gold and its KL (the first one on ties)."""
    i = int(np.argmax(gold))
    return float(gold[i]), float(kl[i])


def sft_gold(bon: dict[str, Any], curves: dict[str, dict[str, Any]]) -> tuple[float, float]:
    """The SFT policy's mean gold: best-of-1 (the same for every RM), and PPO step 0 (mean over runs; NaN if none)."""
    bon_gold = next(iter(bon["rms"].values()))["gold"][0]
    return bon_gold, float(np.mean([c["gold"][0] for c in curves.values()])) if curves else NAN


def fitted(fit: dict[str, float | None], key: str) -> float:
    """A fitted parameter, NaN where the fit was under-determined."""
    value = fit[key]
    return NAN if value is None else value


def summary_row(
    rm: str, accuracy: dict[str, float], bon: dict[str, Any], curve: dict[str, Any] | None
) -> dict[str, Any]:
    """One row of `reports/summary.csv` (PPO columns NaN without a PPO curve)."""
    gold, proxy = bon["rms"][rm]["gold"], bon["rms"][rm]["proxy"]
    bon_peak_gold, bon_peak_kl = peak(bon["kl"], gold)
    bon_fit = fit_bon(bon["kl"], gold)
    row = {
        "rm": rm,
        "id_accuracy": accuracy["test_accuracy"],
        "ood_accuracy": accuracy["ood_accuracy"],
        "bon_gold_at_N": gold[-1],
        "bon_proxy_at_N": proxy[-1],
        "bon_peak_gold": bon_peak_gold,
        "bon_peak_kl": bon_peak_kl,
        "ppo_final_gold": NAN,
        "ppo_peak_gold": NAN,
        "ppo_peak_kl": NAN,
        "ppo_final_proxy_minus_gold": NAN,
        "bon_alpha": fitted(bon_fit, "alpha"),
        "bon_beta": fitted(bon_fit, "beta"),
        "rl_alpha": NAN,
        "rl_beta": NAN,
    }
    if curve is not None:
        row["ppo_peak_gold"], row["ppo_peak_kl"] = peak(curve["kl"], curve["gold"])
        rl_fit = fit_rl(curve["kl"], curve["gold"])
        row.update(
            ppo_final_gold=curve["gold"][-1],
            ppo_final_proxy_minus_gold=curve["proxy"][-1] - curve["gold"][-1],
            rl_alpha=fitted(rl_fit, "alpha"),
            rl_beta=fitted(rl_fit, "beta"),
        )
    return row


def verdict(points: list[str], gold: list[float]) -> str:
    """Whether gold peaked before the last point (over-optimisation), with the numbers; `points` names each point."""
    i = int(np.argmax(gold))
    if i < len(gold) - 1 and gold[-1] < gold[i]:
        return f"gold peaked at {gold[i]:.3f} at {points[i]} and fell to {gold[-1]:.3f} by {points[-1]}: over-optimised"
    return f"gold is highest at the end, {gold[-1]:.3f} at {points[-1]}: no over-optimisation in this range"


def fmt_list(values: list) -> str:
    """`a`, `b`, … (or "none")."""
    return ", ".join(f"`{v}`" for v in values) if values else "none"


def markdown_report(
    table: Any,
    bon: dict[str, Any],
    curves: dict[str, dict[str, Any]],
    plots: dict[str, str],
    markdown: str,
    reward_models: list[str],
    figures: list[str],
) -> str:
    """The human report: what was run, the summary table, one over-optimisation sentence per RM, the plots,
    and the representation figures of the distribution analysis."""
    ns, kls = bon["n"], bon["kl"]
    bon_start, ppo_start = sft_gold(bon, curves)
    with_ppo = [rm for rm in reward_models if rm in curves]
    lines = [
        "# Reward-model over-optimisation (mrm_eval)",
        "",
        "## What was run",
        "",
        f"- **Reward models** ({len(reward_models)}): {fmt_list(reward_models)}.",
        f"- **Best-of-n** for n = {', '.join(map(str, ns))} over {bon['prompts']} prompts,"
        f" KL_BoN = log n − (n−1)/n up to {kls[-1]:.3f} nats.",
        f"- **SFT baseline gold** (best-of-1, the SFT policy's mean gold): {bon_start:.4f}.",
    ]
    if with_ppo:
        steps = sorted({s for rm in with_ppo for s in curves[rm]["steps"]})
        lines.append(
            f"- **PPO** against {len(with_ppo)} RM(s) ({fmt_list(with_ppo)}),"
            f" checkpoints at steps {', '.join(map(str, steps))}; step-0 (SFT) gold {ppo_start:.4f}."
        )
    lines.append(f"- **No PPO curve** for: {fmt_list([rm for rm in reward_models if rm not in curves])}.")
    cells = table.astype(object).where(table.notna(), None)  # tabulate shows None (not NaN) as missingval
    lines += ["", "## Summary", "", cells.to_markdown(index=False, floatfmt=".3f", missingval="–"), ""]
    lines += [f"- `{k}`: {v}" for k, v in COLUMN_NOTES.items()]
    lines += ["", "## Over-optimisation", ""]
    for rm in reward_models:
        bon_points = [f"n = {n} (KL {kl:.2f})" for n, kl in zip(ns, kls)]
        sentence = f"- `{rm}`: best-of-n {verdict(bon_points, bon['rms'][rm]['gold'])}"
        if rm in curves:
            curve = curves[rm]
            ppo_points = [f"step {s} (KL {kl:.2f})" for s, kl in zip(curve["steps"], curve["kl"])]
            sentence += f"; PPO {verdict(ppo_points, curve['gold'])}."
        else:
            sentence += "; no PPO curve."
        lines.append(sentence)
    lines += ["", "## Plots", ""]
    captions = {
        "bon_gold": "Best-of-n: gold reward vs KL_BoN",
        "bon_proxy": "Best-of-n: proxy reward gain vs KL_BoN",
        "ppo_gold": "PPO: gold reward vs √KL",
        "ppo_proxy": "PPO: proxy reward gain vs √KL",
        "rm_accuracy": "RM accuracy, ID and OOD",
    }
    for stem in PLOTS:
        rel = os.path.relpath(plots[stem], Path(markdown).parent)
        lines += [f"### {captions[stem]}", "", f"![{captions[stem]}]({Path(rel).as_posix()})", ""]
    if figures:
        lines += ["## Representations", "", "The numbers behind each figure are in the JSON file beside it.", ""]
        for figure in figures:
            rel = Path(os.path.relpath(figure, Path(markdown).parent)).as_posix()
            lines += [f"### {Path(figure).parent.name}/{Path(figure).stem}", "", f"![{Path(figure).stem}]({rel})", ""]
    return "\n".join(lines)


def draw_plots(
    plots: dict[str, str],
    accuracy: dict[str, dict[str, float]],
    bon: dict[str, Any],
    curves: dict[str, dict[str, Any]],
    reward_models: list[str],
) -> None:
    """Write the five figures (see `rmood.eval.plots`); proxy curves are shown relative to the start."""
    from rmood.eval.plots import accuracy_plot, curve_plot, styles

    style = styles(reward_models)
    bon_axes = {
        "xlabel": "KL_BoN = log n − (n−1)/n (nats)",
        "style": style,
        "top_axis": (bon["kl"], [str(n) for n in bon["n"]], "n"),
    }
    rms = bon["rms"]
    bon_start, ppo_start = sft_gold(bon, curves)
    curve_plot(
        plots["bon_gold"],
        "Best-of-n: gold reward",
        ylabel="mean gold reward",
        curves={rm: (bon["kl"], rms[rm]["gold"]) for rm in reward_models},
        baseline=(bon_start, "SFT policy (n = 1)"),
        **bon_axes,
    )
    curve_plot(
        plots["bon_proxy"],
        "Best-of-n: proxy reward",
        ylabel="proxy reward − proxy at n = 1 (RM units)",
        curves={rm: (bon["kl"], relative(rms[rm]["proxy"])) for rm in reward_models},
        baseline=(0.0, "SFT policy (n = 1)"),
        **bon_axes,
    )
    ppo = [rm for rm in reward_models if rm in curves]
    sqrt_kl = {rm: [math.sqrt(max(kl, 0.0)) for kl in curves[rm]["kl"]] for rm in ppo}
    ppo_axes = {"xlabel": r"$\sqrt{\mathrm{KL}(\pi\,\|\,\pi_\mathrm{SFT})}$ (nats$^{1/2}$)", "style": style}
    curve_plot(
        plots["ppo_gold"],
        "PPO: gold reward",
        ylabel="mean gold reward",
        curves={rm: (sqrt_kl[rm], curves[rm]["gold"]) for rm in ppo},
        baseline=(ppo_start, "SFT policy (step 0)") if ppo else None,
        **ppo_axes,
    )
    curve_plot(
        plots["ppo_proxy"],
        "PPO: proxy reward",
        ylabel="proxy reward − proxy at step 0 (RM units)",
        curves={rm: (sqrt_kl[rm], relative(curves[rm]["proxy"])) for rm in ppo},
        baseline=(0.0, "SFT policy (step 0)") if ppo else None,
        **ppo_axes,
    )
    accuracy_plot(
        plots["rm_accuracy"],
        reward_models,
        [accuracy[rm]["test_accuracy"] for rm in reward_models],
        [accuracy[rm]["ood_accuracy"] for rm in reward_models],
    )


def relative(values: list[float]) -> list[float]:
    """`values` minus the first one."""
    return [v - values[0] for v in values]


def make_report(
    rm_table: str,
    bon: str,
    ppo: list[str],
    figures: list[str],
    summary: str,
    markdown: str,
    plots: list[str],
    reward_models: list[str],
) -> None:
    """Write `reports/summary.csv` (one row per RM, `SUMMARY_COLUMNS`), `reports/mrm_eval.md` and the plots;
    `figures` (PNGs made elsewhere, e.g. the distribution analysis) are linked from the Markdown."""
    import pandas as pd

    if not reward_models:
        raise DataError("reward_models is empty")
    plot_paths = plots_by_stem(plots)
    accuracy = read_accuracy(rm_table, reward_models)
    bon_report = read_bon(bon, reward_models)
    curves = read_ppo(ppo, reward_models)
    rows = [summary_row(rm, accuracy[rm], bon_report, curves.get(rm)) for rm in reward_models]
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    with atomic_open(summary) as f:
        table.to_csv(f, index=False, float_format="%.6g")
    draw_plots(plot_paths, accuracy, bon_report, curves, reward_models)
    with atomic_open(markdown) as f:
        f.write(markdown_report(table, bon_report, curves, plot_paths, markdown, reward_models, figures) + "\n")
    print(table.to_string(index=False))
