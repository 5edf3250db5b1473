"""Time from an edit to its verdict: one method's loss edited, and everything that depends on it rebuilt.

    .venv/bin/python bench/edit.py --directory .                   # a finished `make study` here (embedded)
    .venv/bin/python bench/edit.py --directory /tmp/study --experiment test --config .test/config.yaml

The edit is tests/test_code.py's: the tie term of `rrm_loss` (rmood/rm/rrm.py) halved, in a copy of the checkout
that built the study (`--checkout`, default this one).
The study is copied too, its results as hard links (every output is written under a temporary name and renamed,
so the copy never changes the original), and the copy's Snakefile rebuilds `mrm_eval` in the copied study. Printed:
the jobs the dry run lists (they must be the RRM's and what depends on it: nothing of SFT, of the other RMs or of
their PPO runs), the wall time of the rebuild, and per rule its jobs and job time (the rebuilt jobs' benchmark
files), with two bounds on the wall time: the job time divided by the cores, and the longest chain of jobs of one
replicate (train_rrm → ppo → ppo_eval → ppo_curve, then the report).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]

from study import clock, read_benchmarks  # noqa: E402
from test_code import EDITS  # noqa: E402

CHAIN = ("train_rrm", "ppo", "ppo_eval", "ppo_curve")  # one replicate's longest chain, before the pooled report
POOLED = ("report",)
UPSTREAM = {"data", "base", "sft", "sft_sampling", "train_rm", "train_inform", "train_golden"}  # never the RRM's
OUTPUTS = ("results", "logs", "benchmarks", ".snakemake")


def copy_study(study: Path, to: Path) -> None:
    """`study`'s results as hard links (replaced, never written in place), its logs, benchmarks and Snakemake's
    records (.snakemake) copied: a job opens its log and benchmark files for writing."""
    to.mkdir(parents=True)
    for name in OUTPUTS:
        if (study / name).exists():
            link = os.link if name == "results" else shutil.copy2
            shutil.copytree(study / name, to / name, copy_function=link, symlinks=True,
                            ignore=shutil.ignore_patterns("rmood", "locks", "incomplete"))


def edited_checkout(checkout: Path, to: Path) -> Path:
    """A copy of `checkout` with the RRM's loss edited."""
    shutil.copytree(checkout, to, ignore=shutil.ignore_patterns(".git", ".venv*", *OUTPUTS, "__pycache__",
                                                                "*.egg-info"))
    source = to / "rmood" / "rm" / "rrm.py"
    old, new = EDITS["loss"]
    text = source.read_text(encoding="utf-8")
    if text.count(old) != 1:
        raise SystemExit(f"{source}: the edit's line is gone: {old!r}")
    source.write_text(text.replace(old, new), encoding="utf-8")
    return to


def snakemake(checkout: Path, study: Path, configs: list[str], cores: int, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(checkout / "Snakefile"), "--directory",
               str(study), "--profile", str(checkout / "profiles" / "default"), "--cores", str(cores), *extra,
               "--configfile", *configs, "--", "mrm_eval"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, capture_output=True, text=True, env=env)


def planned(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> jobs, from a dry run's job stats."""
    lines = (result.stdout + result.stderr).split("Job stats:")[-1].splitlines()
    rows = [line.split() for line in lines[3:]]
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit() and row[0] != "total"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--directory", type=Path, default=ROOT, help="the folder of a finished study")
    parser.add_argument("--checkout", type=Path, default=ROOT,
                        help="the checkout that built it (default this one): any other code change reruns more")
    parser.add_argument("--experiment", default="embedded")
    parser.add_argument("--config", nargs="+", default=[str(ROOT / "config" / "config.yaml")],
                        help="the study's config files (default: the embedded default)")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    args = parser.parse_args()
    configs = [str(Path(c).resolve()) for c in args.config]
    with tempfile.TemporaryDirectory(prefix="rmood-edit-") as scratch:
        study, checkout = Path(scratch) / "study", edited_checkout(args.checkout, Path(scratch) / "checkout")
        copy_study(args.directory.resolve(), study)
        dry = snakemake(checkout, study, configs, args.cores, "-n")
        if dry.returncode:
            raise SystemExit(dry.stderr[-3000:])
        jobs = planned(dry)
        print("the dry run after the edit: " + ", ".join(f"{rule} {n}" for rule, n in jobs.items()))
        if UPSTREAM & jobs.keys() or "train_rrm" not in jobs:
            raise SystemExit("the dry run does not rebuild just the RRM and what depends on it: was the study built "
                             "by this checkout (--checkout) and with these configs (--config), and is it finished?")
        start = time.time()
        run = snakemake(checkout, study, configs, args.cores)
        wall = time.time() - start
        if run.returncode:
            raise SystemExit(run.stderr[-3000:])
        rules = {name: [job for job in found if job["mtime"] >= start] for name, found in
                 read_benchmarks(study / "benchmarks" / args.experiment).items()}
    rules = {name: found for name, found in rules.items() if found}
    total = sum(job["s"] for found in rules.values() for job in found)
    chain = max((sum(max((job["s"] for job in rules.get(name, []) if job["replicate"] == rep), default=0.0)
                     for name in CHAIN) for rep in {job["replicate"] for found in rules.values() for job in found}),
                default=0.0) + sum(job["s"] for name in POOLED for job in rules.get(name, []))
    rows = sorted(([name, len(found), f"{sum(j['s'] for j in found):.1f}"] for name, found in rules.items()),
                  key=lambda row: -float(row[2]))
    print(tabulate(rows, headers=["rule", "jobs", "job s"], disable_numparse=True))
    print(f"edit to verdict: {clock(wall)} wall ({wall:.0f} s) for {sum(len(f) for f in rules.values())} jobs on "
          f"{args.cores} cores; job time {total:.0f} s, so at least {total / args.cores:.0f} s on {args.cores} cores; "
          f"the longest chain of one replicate ({' → '.join(CHAIN)}, then the report) {chain:.0f} s")


if __name__ == "__main__":
    main()
