"""The Markdown of the `mrm_eval` report, written from `reports/summary.csv` and `reports/curves.csv` alone.

Every number is printed with its interval; a verdict is a test (`rmood.eval.verdicts`), and every "no significant
difference" stands beside the smallest difference the comparison could have detected. The README's results block is
`results_block` of the same table (`python -m rmood results`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from rmood.eval.estimates import BUDGET_VALUES, POOLED
from rmood.eval.verdicts import MOVES_AWAY, difference, difference_verdict, distance_verdict

Row = Any  # a pandas row (Series) of the summary table
SCOPES = {
    "full": "each replicate re-draws everything random — base-model initialisation, SFT and its samples, the "
            "annotator's labels, every reward model, Best-of-N sampling and PPO; the prompts are shared by every "
            "replicate (the task is fixed) and counted as a second random factor. The intervals are about the "
            "methods on this task: a study with other seeds would land inside them",
    "after_sft": "the replicates share the data, base model, SFT policy and its samples; the annotator's labels, every "
                 "reward model, Best-of-N sampling and PPO repeat per replicate. The intervals are about this SFT "
                 "policy: they leave out what another `seed` (another SFT policy, another machine's kernels) changes",
}


def cell(row: Row, name: str, sign: str = "") -> str:
    """`value [lo, hi]` of an estimate, or – when the RM has none."""
    value = row.get(name)
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:{sign}.3f} [{row[name + '_lo']:{sign}.3f}, {row[name + '_hi']:{sign}.3f}]"


def has(row: Row, name: str) -> bool:
    value = row.get(name)
    return value is not None and math.isfinite(value)


def verdict(row: Row, prefix: str) -> str:
    """The `bon` or `ppo` verdict, or – when the row has none."""
    value = row.get(f"{prefix}_verdict")
    return value if isinstance(value, str) else "–"


def detectable(row: Row, name: str) -> str:
    """`cell` of a paired difference with its minimum detectable difference."""
    return f"{cell(row, name, '+')} (±{row[name + '_mdd']:.3f})" if has(row, name) else "–"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def peak(row: Row, prefix: str, point: str) -> str:
    """`4 (2–8)`: the point estimate's peak and the points that may be the highest."""
    lo, hi = row[f"{prefix}_peak_{point}_lo"], row[f"{prefix}_peak_{point}_hi"]
    return f"{row[f'{prefix}_peak_{point}']:.0f} ({lo:.0f}–{hi:.0f})"


def reward_models(pooled: Any) -> Any:
    """The rows of the reward models (a KL-penalised PPO run's row has its PPO columns only)."""
    return pooled[pooled["id_accuracy"].notna()]


def accuracy_table(pooled: Any, baseline: str, gold_gap: float) -> list[str]:
    header = ["RM", "ID accuracy (pairs)", f"ID, gold gap < {gold_gap:g}", f"ID, gap ≥ {gold_gap:g}",
              f"Δ ID vs `{baseline}` (detectable)", "OOD accuracy (pairs)", f"Δ OOD vs `{baseline}` (detectable)"]
    rows = [[f"`{r['rm']}`", f"{cell(r, 'id_accuracy')} ({r['id_pairs']:.0f})", cell(r, "id_accuracy_close"),
             cell(r, "id_accuracy_clear"), detectable(r, "id_delta"),
             f"{cell(r, 'ood_accuracy')} ({r['ood_pairs']:.0f})", detectable(r, "ood_delta")]
            for _, r in reward_models(pooled).iterrows()]
    return table(header, rows)


def bon_table(pooled: Any, n_max: int, baseline: str) -> list[str]:
    header = ["RM", f"gold, n = {n_max}", "peak n (may be highest)", "gold at peak", "rise to peak", "fall from peak",
              "verdict", f"Δ gold vs `{baseline}`, n = {n_max} (detectable)"]
    rows = [[f"`{r['rm']}`", cell(r, "bon_gold_at_N"), peak(r, "bon", "n"), cell(r, "bon_peak_gold"),
             cell(r, "bon_rise"), cell(r, "bon_fall"), r["bon_verdict"], detectable(r, "bon_delta_at_N")]
            for _, r in reward_models(pooled).iterrows()]
    return table(header, rows)


def degenerate(row: Row, replicates: int) -> str:
    """`2 of 3 replicates, from update 60`, or `none`."""
    count = row["ppo_degenerate_replicates"]
    if not count:
        return "none"
    return f"{count:.0f} of {replicates} replicates, from update {row['ppo_degenerate_step']:.0f}"


def ppo_table(pooled: Any, replicates: int) -> list[str]:
    ppo = pooled[pooled["ppo_final_gold"].notna()]
    if ppo.empty:
        return ["No PPO runs."]
    header = ["RM", "KL, last", "gold, last", "answers that end, last", "KL per token, last", "degenerate",
              "peak update (may be highest)", "gold at peak", "rise to peak", "fall from peak", "verdict"]
    rows = [[f"`{r['rm']}`", cell(r, "ppo_final_kl"), cell(r, "ppo_final_gold"), cell(r, "ppo_final_finished"),
             cell(r, "ppo_final_kl_per_token"), degenerate(r, replicates),
             peak(r, "ppo", "step") if has(r, "ppo_peak_step") else "–", cell(r, "ppo_peak_gold"), cell(r, "ppo_rise"),
             cell(r, "ppo_fall"), r["ppo_verdict"]] for _, r in ppo.iterrows()]
    return table(header, rows)


def budget_baselines(value: str, baseline: str, penalised: str | None) -> dict[str, str]:
    """The columns of `value`'s paired differences at the KL budgets, each with the run it is taken from: the
    baseline RM's and, when there is one, its KL-penalised run (`rmood.eval.estimates.BUDGET_VALUES`)."""
    return dict(zip(BUDGET_VALUES[value].deltas, (baseline, penalised)[:2 if penalised else 1]))


BUDGET_LABELS = {"gold_inlier": "inlier gold"}  # a value's name in the budget table's header


def budget_table(budgets: Any, value: str, baselines: dict[str, str], replicates: int | None = None) -> list[str]:
    """Per PPO run, `value` at every KL budget (with the replicates that reached it, given `replicates`) and its
    paired differences from the baselines' runs there (`baselines`: column -> run, `budget_baselines`)."""
    pooled = budgets[budgets["replicate"] == POOLED]
    if pooled.empty:
        return ["No PPO runs."]
    kls = sorted(pooled["kl"].unique())
    reached = " (replicates)" if replicates else ""
    header = ["PPO run", *(f"{BUDGET_LABELS.get(value, value)} at {kl:g} nats{reached}" for kl in kls),
              *(f"Δ vs `{run}` at {kl:g} nats (detectable)" for run in baselines.values() for kl in kls)]
    rows = []
    for rm, run in pooled.groupby("rm", sort=False):
        at = {r["kl"]: r for _, r in run.iterrows()}
        rows.append([f"`{rm}`", *(cell(at[kl], value) + (f" ({at[kl]['reached']:.0f} of {replicates})" if replicates
                                                         else "") for kl in kls),
                     *(detectable(at[kl], name) for name in baselines for kl in kls)])
    return table(header, rows)


def drift_table(pooled: Any) -> list[str]:
    """Per RM or PPO run: how far its responses moved from the RM's training distribution (Mahalanobis distance,
    later point minus the first) and its share of outliers, under best-of-n and PPO."""
    header = ["RM", "BoN: Δ distance, n = 1 → N (detectable)", "verdict", "BoN outliers, n = N", "PPO: to update",
              "Δ distance from update 0 (detectable)", "verdict", "outliers there", "InfoRM-latent outliers there",
              "PPO outliers, last", "corr(distance, proxy error)", "outliers overrated by", "outliers' gold gap",
              "its change from update 0"]
    rows = [[f"`{r['rm']}`", detectable(r, "bon_distance_shift"), verdict(r, "bon_distance_shift"),
             cell(r, "bon_outlier_at_N"),
             f"{r['ppo_distance_step']:.0f}" if has(r, "ppo_distance_step") else "–",
             detectable(r, "ppo_distance_shift"), verdict(r, "ppo_distance_shift"), cell(r, "ppo_outlier_usable"),
             cell(r, "ppo_latent_outlier_usable"), cell(r, "ppo_final_outlier"), cell(r, "ppo_error_corr", "+"),
             cell(r, "ppo_outlier_overrating", "+"), cell(r, "ppo_outlier_gold_gap", "+"),
             cell(r, "ppo_outlier_gold_shift", "+")]
            for _, r in pooled.iterrows()]
    return table(header, rows)


def drift_answer(pooled: Any, budgets: Any, baseline: str) -> str:
    """The one-line answer: in how many best-of-n curves and PPO runs the responses moved away significantly, in how
    many PPO runs the distance predicts the proxy's error and the outliers lost more gold than the SFT policy's, and
    which runs' gold at equal distance differs from the baseline's at some KL budget."""
    def of(names: list[str], total: int, what: str = "") -> str:  # "2 of 8 PPO runs (`rm`, `warm`)"
        return f"{len(names)} of {total}{what}" + (f" ({', '.join(f'`{n}`' for n in names)})" if names else "")

    def away(prefix: str, what: str) -> str:
        verdicts = pooled[f"{prefix}_distance_shift_verdict"]
        return of([rm for rm, v in zip(pooled["rm"], verdicts) if v == MOVES_AWAY],
                  sum(isinstance(v, str) for v in verdicts), what)

    def significant(name: str, sign: int) -> str:  # the runs whose `name` lies above (1) or below (-1) zero
        runs = pooled[pooled[name].notna()]
        return of([r["rm"] for _, r in runs.iterrows() if sign * r[f"{name}_{'lo' if sign > 0 else 'hi'}"] > 0],
                  len(runs), " runs")

    compared = budgets[(budgets["replicate"] == POOLED) & budgets["delta_gold_inlier"].notna()]
    differs = {word: sorted({r["rm"] for _, r in compared.iterrows()
                             if difference(r["delta_gold_inlier_lo"], r["delta_gold_inlier_hi"]) == word})
               for word in ("better", "worse")}
    return (f"**Does over-optimisation leave the training distribution?** The responses move significantly away from "
            f"the `rm`'s training distribution (Mahalanobis distance of its features under the replicate's GDA fit) "
            f"in {away('bon', ' best-of-n curves')} from n = 1 to N, and in {away('ppo', ' PPO runs')} from update 0 "
            f"to the last checkpoint before any replicate degenerated; the farther a PPO response, the more its proxy "
            f"overrates it (a correlation above zero) in {significant('ppo_error_corr', 1)}"
            + ("" if pooled["ppo_outlier_gold_shift"].isna().all() else
               f", and its outliers lose more gold against the other responses than the SFT policy's own outliers did "
               f"in {significant('ppo_outlier_gold_shift', -1)}")
            + ("" if compared.empty else
               f"; at equal distance (the responses inside the SFT policy's range) and KL, gold is significantly "
               f"better than `{baseline}`'s at some budget in {of(differs['better'], compared['rm'].nunique(), ' runs')}"
               f" and worse in {of(differs['worse'], compared['rm'].nunique())}") + ".")


def fit_table(pooled: Any) -> list[str]:
    header = ["RM", "BoN α", "BoN β", "BoN R²", "RL α", "RL β", "RL R²"]

    def r2(value: float) -> str:
        return f"{value:.2f}" if math.isfinite(value) else "–"

    rows = [[f"`{r['rm']}`", cell(r, "bon_alpha"), cell(r, "bon_beta"), r2(r["bon_r2"]), cell(r, "rl_alpha"),
             cell(r, "rl_beta"), r2(r["rl_r2"])] for _, r in pooled.iterrows()]
    return table(header, rows)


def trend_sentence(row: Row, prefix: str, point: str) -> str:
    """`over-optimised: rises by … to n = 4, then falls by …` with what the tests could detect."""
    if not has(row, f"{prefix}_peak_{point}"):
        return f"{row[f'{prefix}_verdict']}: fewer than two checkpoints before a replicate degenerated"
    where = f"{'n = ' if point == 'n' else 'update '}{row[f'{prefix}_peak_{point}']:.0f}"
    parts = []
    if has(row, f"{prefix}_rise"):
        parts.append(f"rises by {cell(row, f'{prefix}_rise')} to {where} (detectable: {row[f'{prefix}_rise_mdd']:.3f})")
    if has(row, f"{prefix}_fall"):
        parts.append(f"{'then ' if parts else f'from {where} '}falls by {cell(row, f'{prefix}_fall')} "
                     f"(detectable: {row[f'{prefix}_fall_mdd']:.3f})")
    sentence = f"{row[f'{prefix}_verdict']}: " + ", ".join(parts)
    if prefix == "ppo" and row["ppo_degenerate_replicates"]:
        sentence += (f" — read before update {row['ppo_degenerate_step']:.0f}, from which "
                     f"{row['ppo_degenerate_replicates']:.0f} replicate(s) degenerated")
    return sentence


def verdicts(pooled: Any) -> list[str]:
    """One sentence per RM: has its gold risen and then fallen significantly, under best-of-n and PPO?"""
    lines = []
    for _, r in pooled.iterrows():
        parts = [f"best-of-n {trend_sentence(r, 'bon', 'n')}"] if isinstance(r.get("bon_verdict"), str) else []
        if isinstance(r.get("ppo_verdict"), str):
            parts.append(f"PPO {trend_sentence(r, 'ppo', 'step')}")
        sentence = f"- `{r['rm']}`: " + "; ".join(parts)
        lines.append(sentence + ".")
    return lines


def comparisons(pooled: Any, budgets: Any, n_max: int, baselines: dict[str, str], level: float) -> list[str]:
    """One sentence per RM or PPO run: its paired differences from the baseline RM (and at the KL budgets from the
    baseline's KL-penalised run), each a test beside what it could detect."""
    lines = []
    for _, r in pooled.iterrows():
        named = [(f"{what}: ", r, name, "delta_gold") for what, name in (
            ("ID accuracy", "id_delta"), ("OOD accuracy", "ood_delta"), (f"best-of-{n_max} gold", "bon_delta_at_N"))]
        named += [(f"PPO gold at {b['kl']:g} nats: ", b, name, name) for name in baselines
                  for _, b in budgets[(budgets["replicate"] == POOLED) & (budgets["rm"] == r["rm"])].iterrows()]
        parts = [what + difference_verdict(row[name], row[f"{name}_lo"], row[f"{name}_hi"], row[f"{name}_mdd"],
                                           baselines[versus], level) for what, row, name, versus in named
                 if has(row, name)]
        if parts:
            lines.append(f"- `{r['rm']}`: " + "; ".join(parts) + ".")
    return lines


def tuning_line(tuning: dict[str, Any] | None) -> list[str]:
    """How the PPO learning rate was chosen (`tuning/ppo.json`), when it was tuned."""
    if tuning is None:
        return []
    runs = "; ".join(f"{c['learning_rate']:g}: {c['usable_kl']:.1f} nats"
                     + (f", degenerate from update {c['degenerate_from']}" if c["degenerate_from"] is not None else "")
                     for c in tuning["candidates"])
    return [f"**PPO learning rate** {tuning['learning_rate']:g}, chosen on seed {tuning['seed']} (no reported "
            f"replicate) against `{tuning['reward_model']}`: {tuning['why']} (the largest KL each candidate reached "
            f"before degenerating — {runs}).", ""]


def results_block(summary: Any, budgets: Any, level: float, baseline: str, penalised: str | None, n_max: int,
                  gold_gap: float, tuning: dict[str, Any] | None = None) -> str:
    """The pooled results: the tables and the verdict sentences (also the README's results block)."""
    pooled = summary[summary["replicate"] == POOLED]
    baselines = budget_baselines("gold", baseline, penalised)
    replicates = max(summary["replicate"].nunique() - 1, 1)
    lines = ["**Reward models** (agreement with gold on held-out pairs; pairs clustered by prompt):", "",
             *accuracy_table(pooled, baseline, gold_gap), "",
             "**Best-of-N** (gold, mean over eval prompts and replicates; the peak's n with the range of n that may "
             "be highest):", "", *bon_table(pooled, n_max, baseline), "", *tuning_line(tuning),
             "**PPO** (a checkpoint is degenerate when its answers no longer end or it drifts more than a nat per "
             "token; the trend is read on the checkpoints before any replicate degenerated):", "",
             *ppo_table(pooled, replicates), "",
             "**PPO at KL budgets** (each replicate's own curve, up to its first degenerate checkpoint, read on √KL "
             "inside its range; in brackets the replicates that reached the budget, two needed):", "",
             *budget_table(budgets, "gold", baselines, replicates), "",
             "**Over-optimisation** (a significant rise from the start to the peak and a significant fall from "
             "the peak to the end, each simultaneous over the points that could be the peak):", "",
             *verdicts(pooled), "",
             f"**Compared with `{baseline}`**{f' and, at the KL budgets, with `{penalised}`' if penalised else ''} "
             "(paired: the same prompts and replicates and, for Best-of-N, the same samples; in brackets the interval, "
             "then the smallest difference the comparison detects with 80% power):", "",
             *comparisons(pooled, budgets, n_max, baselines, level), "", drift_answer(pooled, budgets, baseline)]
    return "\n".join(lines)


def replicate_table(summary: Any) -> list[str]:
    """Every replicate's main numbers, one row per replicate and RM (intervals over that replicate's prompts)."""
    rows = summary[summary["replicate"] != POOLED]
    header = ["replicate", "RM", "ID accuracy", "BoN gold, n = N", "BoN fall from peak", "BoN verdict",
              "PPO gold, last", "PPO fall from peak", "PPO verdict"]
    return table(header, [[str(r["replicate"]), f"`{r['rm']}`", cell(r, "id_accuracy"), cell(r, "bon_gold_at_N"),
                           cell(r, "bon_fall"), verdict(r, "bon"), cell(r, "ppo_final_gold"), cell(r, "ppo_fall"),
                           verdict(r, "ppo")]
                          for _, r in rows.iterrows()])


def baseline_line(curves: Any, level: float) -> str:
    """The SFT policy's gold with its interval: best-of-1, and PPO step 0 (when there are PPO runs)."""
    pooled = curves[curves["replicate"] == POOLED]
    bon = pooled[(pooled["method"] == "bon") & (pooled["point"] == 1)].iloc[0]
    line = f"- **SFT policy's gold** (best-of-1): {cell(bon, 'gold')}"
    step0 = pooled[(pooled["method"] == "ppo") & (pooled["point"] == 0)]
    if not step0.empty:
        line += f"; its PPO evaluation samples (update 0): {cell(step0.iloc[0], 'gold')}"
    return line + f" ({level:.0%} intervals)."


def checkpoint_table(curves: Any, replicates: int) -> list[str]:
    """Every PPO checkpoint of every run: KL, gold, the share of answers that end, KL per token, and in how many
    replicates it is degenerate."""
    ppo = curves[(curves["replicate"] == POOLED) & (curves["method"] == "ppo")]
    header = ["RM", "update", "KL", "gold", "answers that end", "KL per token", "distance", "outliers",
              "InfoRM-latent outliers", "degenerate in"]
    return table(header, [[f"`{r['rm']}`", f"{r['point']:.0f}", cell(r, "kl"), cell(r, "gold"), cell(r, "finished"),
                           cell(r, "kl_per_token"), cell(r, "distance"), cell(r, "outlier"), cell(r, "latent_outlier"),
                           f"{r['degenerate']:.0f} of {replicates}"]
                          for _, r in ppo.iterrows()])


def stop_lines(pooled: Any, stop: dict[str, Any] | None, level: float) -> list[str]:
    """The early-stopping rule on the outlier share, scored against gold per PPO run (when it was tuned)."""
    runs = pooled[pooled["ppo_stop_gold"].notna()] if "ppo_stop_gold" in pooled else pooled.iloc[:0]
    if stop is None or runs.empty:
        return []
    near = [f"`{r['rm']}`" for _, r in runs.iterrows() if r["ppo_stop_loss_lo"] <= 0 <= r["ppo_stop_loss_hi"]]
    header = ["PPO run", "stopped at update (per replicate)", "gold peak at", "gold at the stop",
              "gold lost against the peak (detectable)"]
    rows = [[f"`{r['rm']}`", r["ppo_stop_steps"], r["ppo_peak_steps"], cell(r, "ppo_stop_gold"),
             detectable(r, "ppo_stop_loss")] for _, r in runs.iterrows()]
    return [f"**Early stopping on the outlier share**: stop PPO at the first checkpoint with more than "
            f"{stop['stop_share']:g} outliers (else at the last before the run degenerated), the share chosen on the "
            f"tuning seed {stop['seed']} against gold (its runs lost {stop['mean_gold_lost']:.3f} against their peaks "
            f"on average). Scored on the reported replicates, each at its own stop and peak (the peak picked on the "
            f"same samples, so the loss leans negative): the stop loses no significant gold ({level:.0%} interval "
            f"covers 0) in {len(near)} of {len(runs)} runs" + (f" ({', '.join(near)})." if near else "."), "",
            *table(header, rows), ""]


def budget_comparisons(budgets: Any, value: str, baseline: str, penalised: str | None, level: float) -> list[str]:
    """One sentence per PPO run: at every KL budget, how its `value` differs from the baselines' runs' (paired, with
    what the comparison could detect): closer to the training distribution for the distance, better or worse for
    gold."""
    pooled = budgets[budgets["replicate"] == POOLED]
    words = distance_verdict if value == "distance" else difference_verdict
    lines = []
    for rm, group in pooled.groupby("rm", sort=False):
        parts = [f"at {r['kl']:g} nats " + words(r[name], r[f"{name}_lo"], r[f"{name}_hi"], r[f"{name}_mdd"], run,
                                                 level)
                 for name, run in budget_baselines(value, baseline, penalised).items() for _, r in group.iterrows()
                 if has(r, name)]
        if parts:
            lines.append(f"- `{rm}`: " + "; ".join(parts) + ".")
    return lines


def drift_section(summary: Any, budgets: Any, run: dict[str, Any]) -> list[str]:
    """"Does over-optimisation leave the training distribution?": the reference levels, the drift of every best-of-n
    curve and PPO run, and the PPO runs' distances and gold at equal distance at the KL budgets."""
    level, baseline, penalised = run["level"], run["baseline"], run["penalised"]
    pooled = summary[summary["replicate"] == POOLED]
    ref = run["references"]
    lines = ["## Does over-optimisation leave the training distribution?", "",
             drift_answer(pooled, budgets, baseline), "",
             f"Distance: the Mahalanobis distance of the `rm`'s features of prompt + response under the replicate's "
             f"GDA fit (the distance `mrm_pen` subtracts). Reference levels (mean over replicates): the SFT policy's "
             f"own eval samples {ref['sft']:.3f}, the training pairs' responses {ref['train']:.3f}. An outlier lies "
             f"beyond the {ref['quantile']:.0%} quantile of the SFT policy's eval samples' distances in its replicate "
             f"(so about {1 - ref['quantile']:.0%} of them). Δ distance: a later point minus the first, "
             f"\"moves away\" when its {level:.0%} interval lies above zero. The proxy's error: z(proxy) − z(gold) "
             "of a response, each standardised on the SFT policy's samples (> 0: the proxy overrates it); its "
             "correlation with the distance is pooled over a PPO run's responses at every checkpoint before its "
             "replicate degenerated, and \"outliers overrated by\" is their mean error minus the other responses' "
             "(in SFT standard deviations); \"outliers' gold gap\" is their mean gold minus the other responses', over "
             "the same checkpoints, and \"its change from update 0\" that gap over the checkpoints after update 0 "
             "minus the SFT policy's own (< 0: the optimised policy's outliers lost more gold than the SFT policy's "
             "did). InfoRM-latent outliers: the same share in InfoRM's latent space (a "
             "Gaussian fitted to the latents of the training responses, after Miao et al.'s Mahalanobis Outlier "
             "Probability), where the study has an InfoRM.", "",
             *drift_table(pooled), "", *stop_lines(pooled, run["stop"], level)]
    if budgets[budgets["replicate"] == POOLED].empty:
        return lines
    for value, title in (("distance", "**Distance at the KL budgets** (read like gold at the budgets; Δ < 0: closer "
                                      "to the training distribution than the other run at the same KL):"),
                         ("gold_inlier", "**Gold at equal distance** (gold of the responses inside the SFT policy's "
                                         "distance range, i.e. all but the outliers, at the KL budgets: two runs "
                                         "compared on their responses in the same range of distance, at the same KL; "
                                         "Δ > 0: better gold than the other run's there):")):
        lines += [title, "", *budget_table(budgets, value, budget_baselines(value, baseline, penalised)), "",
                  *budget_comparisons(budgets, value, baseline, penalised, level), ""]
    return lines


def markdown_report(summary: Any, curves: Any, budgets: Any, run: dict[str, Any], plots: dict[str, str],
                    markdown: str, figures: list[str]) -> str:
    """The human report: what was run and how the intervals are made, the pooled results, the PPO checkpoints, every
    replicate, the plots, and the representation figures of the distribution analysis."""
    level, baseline = run["level"], run["baseline"]
    bon_points = sorted(curves[curves["method"] == "bon"]["point"].unique())
    ppo_points = sorted(curves[curves["method"] == "ppo"]["point"].unique())
    n_max = int(bon_points[-1])
    replicates = run["replicates"]
    lines = [
        "# Reward-model over-optimisation (mrm_eval)", "", "## What was run", "",
        f"- **Reward models** ({summary['rm'].nunique()}): {', '.join(f'`{rm}`' for rm in summary['rm'].unique())}.",
        f"- **Replicates** ({len(replicates)}, seeds {', '.join(map(str, replicates))}; `replicate_scope: "
        f"{run['replicate_scope']}`): {SCOPES[run['replicate_scope']]}.",
        f"- **Best-of-n** for n = {', '.join(str(int(n)) for n in bon_points)} over {run['prompts']} eval prompts.",
        f"- **PPO** checkpoints at updates {', '.join(str(int(s)) for s in ppo_points)}." if ppo_points else
        "- **PPO**: none.",
        baseline_line(curves, level),
        f"- **Intervals** ({level:.0%}): an estimate is the mean over replicates of each replicate's statistic; its "
        "variance has a replicate part (R − 1 degrees of freedom) and, where the replicates share the prompts, a "
        "shared-prompt part (from jackknife pseudo-values over prompts: a prompt's samples and pairs move "
        "together), and the interval comes from their generalized pivot — a t interval with R − 1 degrees of "
        "freedom when the replicates' spread dominates (±4.3 standard errors with three). Differences between "
        "reward models are paired. A verdict states a difference only when its interval excludes zero; "
        "rises and falls use intervals simultaneous over a curve's points (`rmood/eval/stats.py`, "
        "`rmood/eval/verdicts.py`).",
        "", "## Results (pooled over the replicates)", "",
        results_block(summary, budgets, level, baseline, run["penalised"], n_max, run["gold_gap"], run["tuning"]), "",
        "## Over-optimisation fits (Gao et al. 2022)", "",
        "Δgold = d(α − βd) for Best-of-N and d(α − β log d) for PPO, d = √KL, gold relative to the SFT policy: "
        "fitted to each replicate's curve, α and β their mean over replicates, R² the replicates' mean.", "",
        *fit_table(summary[summary["replicate"] == POOLED]), "",
    ]
    lines += drift_section(summary, budgets, run)
    if ppo_points:
        lines += ["## PPO checkpoints", "", f"Degenerate: fewer answers that end than {run['finish_rate']:g} × the "
                  f"run's update-0 share, or more than {run['kl_per_token']:g} nat of KL per response token.", "",
                  *checkpoint_table(curves, len(replicates)), ""]
    if len(replicates) > 1:
        lines += ["## Every replicate", "", *replicate_table(summary), ""]
    lines += ["## Plots", ""]
    captions = {
        "bon_gold": "Best-of-n: gold reward vs KL_BoN",
        "bon_proxy": "Best-of-n: proxy reward gain vs KL_BoN",
        "ppo_gold": "PPO: gold reward vs √KL",
        "ppo_proxy": "PPO: proxy reward gain vs √KL",
        "ppo_collapse": "PPO: answers that end and KL per token",
        "rm_accuracy": "RM accuracy, ID and OOD",
        "forest": f"Paired gold differences from `{baseline}`",
        "ood_distance": "Distance from the RM's training distribution and share of outliers vs KL",
    }
    for stem, path in plots.items():
        rel = Path(os.path.relpath(path, Path(markdown).parent)).as_posix()
        lines += [f"### {captions[stem]}", "", f"![{captions[stem]}]({rel})", ""]
    if figures:
        lines += ["## Representations", "", "The numbers behind each figure are in the JSON file beside it.", ""]
        for figure in figures:
            rel = Path(os.path.relpath(figure, Path(markdown).parent)).as_posix()
            lines += [f"### {Path(figure).parent.name}/{Path(figure).stem}", "", f"![{Path(figure).stem}]({rel})", ""]
    return "\n".join(lines)


def readme_markers(name: str) -> tuple[str, str]:
    """The comments around a generated block of the README: `<!-- <name>:begin -->` … `<!-- <name>:end -->`."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def results_markdown(reports: str | os.PathLike, config: dict[str, Any]) -> str:
    """The results block of an experiment's `reports/` (summary.csv, budgets.csv), with the config's level, baseline
    and N."""
    import pandas as pd

    from rmood.config import penalised_baseline
    from rmood.io import DataError, read_json
    from rmood.rl import TUNED

    tuned = config["rl"]["learning_rate"] == TUNED  # then tuning/ppo.json says how
    paths = [Path(reports) / name for name in ("summary.csv", "budgets.csv")] + (
        [Path(reports).parent / "tuning" / "ppo.json"] if tuned else [])
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: no such file (run the study first: snakemake mrm_eval)")
    report = config["report"]
    return results_block(*(pd.read_csv(path) for path in paths[:2]), report["level"], report["baseline"],
                         penalised_baseline(config["rl"], report["baseline"]), config["bon"]["n"], report["gold_gap"],
                         read_json(paths[2]) if tuned else None)


def update_readme(readme: str | os.PathLike, block: str, name: str = "results") -> None:
    """Replace the text between the README's markers of block `name` with `block` (atomically)."""
    from rmood.io import DataError, atomic_open

    text = Path(readme).read_text(encoding="utf-8")
    begin, end = readme_markers(name)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise DataError(f"{readme}: expected one {begin} ... {end} block")
    head, rest = text.split(begin)
    tail = rest.split(end)[1]
    with atomic_open(readme) as f:
        f.write(f"{head}{begin}\n{block}\n{end}{tail}")
