"""`python -m rmood power`: how many replicates (and prompts) would detect a difference, from a finished study.

Every comparison with the baseline RM (`reports/variance.csv`: paired accuracy, best-of-N and PPO gold
differences) has its variance components estimated from the study (`rmood.eval.stats.Estimate.components`); a study of R
replicates × P prompts then has Var(θ̂) = σ²_A/R + σ²_B/P + σ²_E/(RP), and `predicted_power` gives the power of the
report's own test to find a true difference of the given size, averaged over the uncertainty of σ²_A (estimated
from three replicates, it rests on two degrees of freedom; `rmood.eval.simulate` measures how far such
predictions land from the simulated power).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from rmood.eval.stats import predicted_power
from rmood.io import DataError

MOST = 100  # replicates searched
PROMPT_FACTORS = (1, 2, 4)  # the study's prompts, doubled, quadrupled


def replicates_needed(difference: float, components: dict[str, float], prompts: float, crossed: bool, level: float,
                      power: float, measured: tuple[int, float]) -> int | None:
    """The fewest replicates (2 … MOST) whose study finds `difference` with chance `power`, predicted from
    components `measured` in a study of (R, P); None if none does (e.g. when the shared prompts alone leave too
    much variance)."""
    if predicted_power(difference, components, MOST, prompts, crossed, level, measured) < power:
        return None
    lo, hi = 1, MOST  # power(lo) < target (or lo = 1), power(hi) >= target; power grows with R
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if predicted_power(difference, components, mid, prompts, crossed, level, measured) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def power_table(variance: str | os.PathLike, difference: float, level: float, power: float) -> str:
    """A Markdown table: per comparison, its power now and the replicates it needs at 1×, 2× and 4× the prompts."""
    import pandas as pd

    from rmood.eval.markdown import table as markdown_table

    if not math.isfinite(difference) or difference <= 0:
        raise DataError(f"--difference must be a positive number, got {difference}")
    if not 0 < power < 1:
        raise DataError(f"--power must lie in (0, 1), got {power}")
    if not Path(variance).is_file():
        raise DataError(f"{variance}: no such file (a finished study writes it: snakemake mrm_eval)")
    table = pd.read_csv(variance)
    table = table[table["replicate"] == "pooled"]
    if table.empty:
        raise DataError(f"{variance}: no comparison with the baseline RM (the study has one reward model?)")
    if (table["replicates"] < 2).any():
        raise DataError(f"{variance}: a study of one replicate cannot tell the replicates' variance from the prompts': "
                        "run at least two (config `replicates`)")
    header = ["comparison", "RM", "now: estimate ± SE (R × P)", f"power now for {difference:g}",
              *(f"replicates for {power:.0%} at {f}× prompts" for f in PROMPT_FACTORS)]
    rows = []
    for _, r in table.iterrows():
        components = {k: float(r[f"var_{k}"]) for k in ("replicate", "prompt", "residual")}
        crossed, measured = bool(r["crossed"]), (int(r["replicates"]), float(r["prompts"]))
        now = predicted_power(difference, components, *measured, crossed, level, measured)
        needed = [replicates_needed(difference, components, f * measured[1], crossed, level, power, measured)
                  for f in PROMPT_FACTORS]
        rows.append([r["comparison"], f"`{r['rm']}`",
                     f"{r['estimate']:+.3f} ± {r['se']:.3f} ({r['replicates']} × {r['prompts']:.0f})", f"{now:.0%}",
                     *(f"> {MOST}" if n is None else str(n) for n in needed)])
    return "\n".join(markdown_table(header, rows))
