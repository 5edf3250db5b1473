"""The same study built twice — on two machines, or on one with another CPU capability — compared verdict by verdict.

    .venv/bin/python bench/machines.py --directory /tmp/a/main --against /tmp/b/main
    .venv/bin/python bench/machines.py --directory /tmp/a/main --against /tmp/b/main --readme docs/results.md

Another CPU's kernels give other numbers (on one machine, `ATEN_CPU_CAPABILITY=avx2` instead of its AVX-512 already
changes the SFT weights bit for bit, and so everything after them); a conclusion of the study must not depend on
that. For every RM and verdict of the report — Best-of-N's and PPO's trend (over-optimised, rises, declines from the
start, no significant change) and the paired differences from the baseline RM (ID and OOD accuracy, Best-of-N gold at
n = N, PPO gold at every KL budget: better, worse, no significant difference) — it prints the
verdict of each build with its interval, whether they agree and, where they do not, whether the two intervals
overlap (the conclusion is not settled) or not (a contradiction). With the wall and job time of each build
(`bench/study.py`'s reading of .snakemake/log and benchmarks/). `--readme` writes the result between the page's
`<!-- machines:begin -->` and `<!-- machines:end -->`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import ROOT, Study, clock, experiment_of, replicate_costs  # noqa: E402

sys.path.insert(0, str(ROOT))
from rmood.eval.markdown import table, update_readme  # noqa: E402
from rmood.eval.verdicts import difference  # noqa: E402

COMPARISONS = {"id_delta": "Δ ID accuracy", "ood_delta": "Δ OOD accuracy", "bon_delta_at_N": "Δ best-of-N gold"}
TRENDS = {"bon": "Best-of-N trend", "ppo": "PPO trend"}


def pooled(directory: Path, experiment: str, table: str) -> pd.DataFrame:
    path = directory / "results" / experiment / "reports" / f"{table}.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (build the study there first)")
    frame = pd.read_csv(path)
    return frame[frame["replicate"] == "pooled"]


def verdicts(directory: Path, experiment: str, baseline: str) -> dict[tuple[str, str], tuple[str, float, float]]:
    """(RM, what) -> (verdict, lo, hi): the interval it rests on (a trend: its fall from the peak, else its rise)."""
    found = {}
    for rm, row in pooled(directory, experiment, "summary").set_index("rm").iterrows():
        for prefix, what in TRENDS.items():
            if isinstance(row[f"{prefix}_verdict"], str):
                part = "fall" if pd.notna(row[f"{prefix}_fall"]) else "rise"
                found[rm, what] = (row[f"{prefix}_verdict"], row[f"{prefix}_{part}_lo"], row[f"{prefix}_{part}_hi"])
        for name, what in COMPARISONS.items():
            if rm != baseline and pd.notna(row[name]):
                found[rm, what] = (difference(row[f"{name}_lo"], row[f"{name}_hi"]), row[f"{name}_lo"],
                                   row[f"{name}_hi"])
    for _, row in pooled(directory, experiment, "budgets").iterrows():
        for name, versus in (("delta_gold", ""), ("delta_penalised", " vs the KL-penalised run")):
            if pd.notna(row[name]):
                found[row["rm"], f"Δ PPO gold at {row['kl']:g} nats{versus}"] = (
                    difference(row[f"{name}_lo"], row[f"{name}_hi"]), row[f"{name}_lo"], row[f"{name}_hi"])
    return found


def compare(a: Path, b: Path, experiment: str, baseline: str, names: tuple[str, str]) -> str:
    first, second = verdicts(a, experiment, baseline), verdicts(b, experiment, baseline)
    only = sorted(first.keys() ^ second.keys())  # e.g. a KL budget reached by enough replicates in one build only
    rows, settled = [], 0
    for key in (key for key in first if key in second):  # in the report's order
        (v1, lo1, hi1), (v2, lo2, hi2) = first[key], second[key]
        if v1 == v2:
            continue
        overlap = max(lo1, lo2) <= min(hi1, hi2)
        settled += not overlap
        rows.append([f"`{key[0]}`", key[1], f"{v1} [{lo1:+.3f}, {hi1:+.3f}]", f"{v2} [{lo2:+.3f}, {hi2:+.3f}]",
                     "yes: not settled" if overlap else "no: a contradiction"])
    studies = [Study(path, experiment) for path in (a, b)]
    times = "; ".join(f"{name}: {clock(s.wall)} of Snakemake, {len(s.jobs)} jobs, {s.total:.0f} s of job time"
                      for name, s in zip(names, studies))
    compared = len(first.keys() & second.keys())
    agree = compared - len(rows)
    # the reported replicates have a Best-of-N stage; the tuning seed (rl.tuning.seed) only what tuning needs
    reported = {path.name for path in (a / "results" / experiment).glob("rep*") if (path / "bon").is_dir()}
    costs = replicate_costs(studies[0])
    job, policy = (sum(costs[group][i] for group in reported) / len(reported) for i in (1, 2))
    tuning = [f"{group} {cost[0]} jobs, {cost[1]:.0f} s" for group, cost in costs.items()
              if group not in reported | {"shared"}]
    lines = [f"**{agree} of {compared} verdicts agree** between the two builds ({times}); "
             f"{len(rows)} differ, {settled} of them with intervals that do not overlap. One replicate took "
             f"{job:.0f} s of job time on average ({names[0]}), {policy:.0f} s of it re-drawing the policy: its "
             f"own base model, SFT, sampling and gold labels (`python bench/study.py`)"
             + (f"; the tuning seed's jobs ({'; '.join(tuning)}) choose the PPO learning rate." if tuning else ".")]
    if rows:
        lines += ["", *table(["RM", "verdict on", names[0], names[1], "intervals overlap?"], rows)]
    if only:
        lines += ["", "Reported by one build only (a KL budget that fewer than two replicates reached in the other): "
                  + "; ".join(f"`{rm}` {what}" for rm, what in only) + "."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, required=True, help="the first build's working directory")
    parser.add_argument("--against", type=Path, required=True, help="the second build's working directory")
    parser.add_argument("--names", nargs=2, default=("first build", "second build"), help="what to call the builds")
    parser.add_argument("--experiment", default=None, help="the experiment (default: config/config.yaml's)")
    parser.add_argument("--baseline", default="rm", help="the report's baseline RM (report.baseline)")
    parser.add_argument("--readme", type=Path, help="write the result into this README's machines block")
    args = parser.parse_args()
    block = compare(args.directory, args.against, args.experiment or experiment_of(None), args.baseline,
                    tuple(args.names))
    if args.readme is None:
        print(block)
    else:
        update_readme(args.readme, block, "machines")


if __name__ == "__main__":
    main()
