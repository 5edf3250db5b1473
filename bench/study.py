"""Where the time of a finished study goes: Snakemake's benchmark files, per rule, against the wall time.

    .venv/bin/python bench/study.py                  # benchmarks/embedded/ and .snakemake/log/ of this checkout
    .venv/bin/python bench/study.py --experiment test --directory /tmp/study --top 15

Reads `benchmarks/<experiment>/**/*.tsv` (one file per job, written by the `benchmark:` directive; the rule's
benchmark name is the first path component, e.g. `rl_proxy/rm/10.tsv` is a job of `rl_proxy`) and prints the
total job time (sum of the `s` column: wall seconds of each job, measured around the job by Snakemake) and
the rules that take the most, aggregated over their jobs. A file holds the latest execution of its job, so
after a partial rerun the total mixes runs.

The wall time of the study is not in the benchmark files. Two estimates:
- runs: each Snakemake invocation writes `.snakemake/log/<start>.snakemake.log` with its job stats and, at
  the end, `Elapsed time`; the runs that wrote into `results/<experiment>/` are listed, and the one with
  the most jobs that completed (`N of N steps (100%) done`) is the full build;
- span: from the benchmark files' modification times, last job end − first job start (a file is written
  when its job ends, so start = mtime − s). This covers every job whose file is there, including idle
  time between runs, so it equals the build's wall time only when one run built everything.
Total job time ÷ wall time is the average number of jobs running at once (at most the cores given).

Only `s` is meaningful in a local run: there a job's process is a thin client of the warm worker
(rmood/worker.py) and the step runs in a forked child that Snakemake does not measure, so the files'
`cpu_time` and `max_rss` are the client's (printed as such; shown per rule they would mislead).
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from tabulate import tabulate

ELAPSED = re.compile(r"^Elapsed time: (\d+):(\d\d):(\d\d(?:\.\d+)?)$", re.M)
STEPS = re.compile(r"^(\d+) of (\d+) steps \(100%\) done$", re.M)
DATE = re.compile(r"^\s*Date: (.+)$", re.M)


def read_benchmarks(folder: Path) -> dict[str, list[dict[str, float]]]:
    """Rule (benchmark) name -> the rows of its jobs' .tsv files, each with its `path` and file `mtime`."""
    rules: dict[str, list[dict[str, float]]] = defaultdict(list)
    for path in sorted(folder.rglob("*.tsv")):
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        for row in rows[-1:]:  # `repeat(...)` benchmarks have several rows; a job's last one is its latest
            rules[path.relative_to(folder).parts[0].removesuffix(".tsv")].append(
                {"s": float(row["s"]), "cpu_time": float(row.get("cpu_time") or 0.0), "mtime": path.stat().st_mtime}
            )
    return rules


def runs(directory: Path, experiment: str) -> list[dict]:
    """The Snakemake runs (logs in .snakemake/log/) that wrote into results/<experiment>/."""
    found = []
    for log in sorted((directory / ".snakemake" / "log").glob("*.snakemake.log")):
        text = log.read_text(errors="replace")
        if f"results/{experiment}/" not in text:
            continue
        elapsed, steps, date = ELAPSED.search(text), STEPS.findall(text), DATE.search(text)
        seconds = None
        if elapsed:
            h, m, s = elapsed.groups()
            seconds = int(h) * 3600 + int(m) * 60 + float(s)
        done = max((int(n) for n, total in steps if n == total), default=0)
        found.append({"log": log.name, "date": date.group(1) if date else "?", "jobs": done, "elapsed": seconds})
    return found


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}" if minutes >= 60 else f"{minutes}:{s:02d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="embedded")
    parser.add_argument("--directory", default=".", help="the study's working directory (default: here)")
    parser.add_argument("--top", type=int, default=10, help="rules shown (default 10)")
    args = parser.parse_args()

    directory = Path(args.directory)
    folder = directory / "benchmarks" / args.experiment
    rules = read_benchmarks(folder)
    if not rules:
        parser.error(f"no benchmark files under {folder}")
    jobs = [job for rows in rules.values() for job in rows]
    total = sum(job["s"] for job in jobs)
    cpu = sum(job["cpu_time"] for job in jobs)
    start = min(job["mtime"] - job["s"] for job in jobs)
    end = max(job["mtime"] for job in jobs)
    span = end - start

    ranked = sorted(rules.items(), key=lambda item: -sum(job["s"] for job in item[1]))
    rows = []
    for name, rule_jobs in ranked[: args.top]:
        seconds = sum(job["s"] for job in rule_jobs)
        rows.append([name, len(rule_jobs), f"{seconds:.1f}", f"{seconds / total:.1%}", f"{seconds / len(rule_jobs):.1f}"])
    rest = ranked[args.top :]
    if rest:
        seconds = sum(job["s"] for _, rule_jobs in rest for job in rule_jobs)
        rows.append([f"({len(rest)} other rules)", sum(len(r) for _, r in rest), f"{seconds:.1f}",
                     f"{seconds / total:.1%}", ""])
    print(f"{folder}: {len(jobs)} jobs of {len(rules)} rules; total job time {total:.1f} s ({clock(total)}); "
          f"CPU time of the job processes {cpu:.1f} s")
    print(tabulate(rows, headers=["rule", "jobs", "job s", "share", "s/job"], disable_numparse=True))

    print()
    found = runs(directory, args.experiment)
    if found:
        print(tabulate([[r["log"], r["date"], r["jobs"], clock(r["elapsed"])] for r in found],
                       headers=["snakemake run (.snakemake/log)", "started", "jobs done", "elapsed"]))
        full = max(found, key=lambda r: (r["jobs"], r["log"]))
        if full["elapsed"]:
            print(f"full build: {full['log']}, {full['jobs']} jobs in {clock(full['elapsed'])} wall; "
                  f"total job time / wall = {total / full['elapsed']:.2f} jobs at once on average "
                  f"(if its jobs are the benchmarked ones)")
    else:
        print(f"no .snakemake/log run mentions results/{args.experiment}/")
    print(f"span of the benchmark files: {datetime.fromtimestamp(start):%H:%M:%S} → {datetime.fromtimestamp(end):%H:%M:%S} "
          f"= {clock(span)} (first job start to last job end, idle time between runs included); "
          f"total job time / span = {total / span:.2f}")


if __name__ == "__main__":
    main()
