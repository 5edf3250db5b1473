"""Where the time of a study goes, per rule: job time against compute time, and the speed-up over a baseline config.

    .venv/bin/python bench/study.py                              # benchmarks/embedded/ and .snakemake/log/ here
    .venv/bin/python bench/study.py --experiment test --directory /tmp/study --top 15
    .venv/bin/python bench/study.py --against head               # per rule side by side with results of `head`
    .venv/bin/python bench/study.py --run bench/head.yaml        # build HEAD's config and the default from scratch,
                                                                 # one after the other, then compare them
    .venv/bin/python bench/study.py --run bench/head.yaml --replicates 0    # the same, one replicate of each

**Job time** is the `s` column of Snakemake's benchmark file of each job (`benchmarks/<experiment>/**/*.tsv`, written
by the `benchmark:` directive; a rule's benchmark name is the first path component, e.g. `rl_proxy/rm/10.tsv` is a
job of `rl_proxy`): the wall seconds Snakemake measures around the job, i.e. the job's script process starting,
handing the step to the warm worker (rmood/worker.py), the forked child computing, and the exit.

**Compute time** is what the step itself took. Where a job's log ends with the worker's
`rmood: <step> computed in <s> s` line it is read from there; otherwise it is estimated as job time minus the
**per-job overhead floor**: the job time of the cheapest job of the run, one that computes almost nothing (an
ensemble folder, a gather), so whatever any job spends on starting, handing over and exiting. Overhead = job −
compute: what merging small jobs would save. (Snakemake's `cpu_time` and `max_rss` columns describe the thin client
process, not the forked child, so they say nothing about the step.)

The wall time of a build is not in the benchmark files. Two estimates:
- runs: each Snakemake invocation writes `.snakemake/log/<start>.snakemake.log` with its job stats and, at
  the end, `Elapsed time`; the runs that wrote into `results/<experiment>/` are listed, and the one with
  the most jobs that completed (`N of N steps (100%) done`) is the full build;
- span: from the benchmark files' modification times, last job end − first job start (a file is written
  when its job ends, so start = mtime − s). It equals the build's wall time only when one run built everything.
Total job time ÷ wall time is the average number of jobs running at once (at most the cores given).

**Per replicate**: the jobs and job time of each `rep<seed>/` folder, with its policy side (base model, SFT, its
sampling and gold labels: what a replicate adds when it re-draws the policy, `replicate_scope: full`), and of the
jobs all replicates share: what one more replicate costs.

**Arithmetic**: per training and scoring rule, the FLOPs its jobs did (the tokens they put through how many
parameters, logged by rmood/arithmetic.py: 2 FLOPs per parameter and token forward, 6 training) and the floor they
set at the machine's float32 matmul rate, measured in the same run on the model's MLP shape: how far each rule's
compute time is from what its arithmetic needs (PPO is not counted).

**Per PPO run**: the job time of each PPO run's training, checkpoint evaluation and curve, summed over the
replicates: what a KL-penalised baseline run (`rm_kl0.05`) and the tuning seed's runs (`tune_lr<rate>`) cost.

**Against a baseline** (`--against NAME`): the same table for `benchmarks/NAME/` beside this experiment's, with the
ratio baseline ÷ this per rule and in total (job time, and wall time of the two full builds). `--run CONFIG` makes
such a comparison from scratch in one go, on the same machine at the same moment: it deletes `results/`, `logs/` and
`benchmarks/` of both experiments, builds the target with CONFIG merged over the default (the baseline, e.g.
`bench/head.yaml`, the embedded default as it was at HEAD) and then with the default, and prints the comparison.
Timings on a shared machine are noisy: compare builds made in the same period.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import yaml
from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
ELAPSED = re.compile(r"^Elapsed time: (\d+):(\d\d):(\d\d(?:\.\d+)?)$", re.M)
STEPS = re.compile(r"^(\d+) of (\d+) steps \(100%\) done$", re.M)
DATE = re.compile(r"^\s*Date: (.+)$", re.M)
REPLICATE = re.compile(r"rep\d+")
COMPUTED = re.compile(r"^rmood: \S+ computed in ([0-9.]+) s", re.M)
ARITHMETIC = re.compile(r"^rmood: arithmetic (forward|training) (\d+) tokens through (\d+) parameters$", re.M)
FLOPS_PER = {"forward": 2, "training": 6}  # per parameter and token: a multiply-add forward; backward twice that


def read_benchmarks(folder: Path, logs: Path | None = None) -> dict[str, list[dict[str, float]]]:
    """Rule (benchmark) name -> its jobs: `s`, file `mtime`, `replicate` (its rep<seed> folder, None when shared) and,
    when the job's log says it, `compute`."""
    rules: dict[str, list[dict[str, float]]] = defaultdict(list)
    for path in sorted(folder.rglob("*.tsv")):
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        for row in rows[-1:]:  # `repeat(...)` benchmarks have several rows; a job's last one is its latest
            parts = path.relative_to(folder).parts
            replicate = parts[0] if REPLICATE.fullmatch(parts[0]) else None
            job = {"s": float(row["s"]), "mtime": path.stat().st_mtime, "compute": None, "replicate": replicate,
                   "flops": None}
            log = logs / path.relative_to(folder).with_suffix(".log") if logs else None
            if log is not None and log.is_file():
                tail = log.read_text(errors="replace")[-2000:]
                found = COMPUTED.findall(tail)
                job["compute"] = float(found[-1]) if found else None
                counted = ARITHMETIC.findall(tail)
                job["flops"] = sum(FLOPS_PER[kind] * int(tokens) * int(parameters)
                                   for kind, tokens, parameters in counted) if counted else None
            parts = parts[1:] if replicate else parts  # rep<seed>/<rule>…: one rule, all replicates
            job["name"] = parts[1].removesuffix(".tsv") if len(parts) > 1 else None  # <rule>/<name>…: e.g. a PPO run
            rules[parts[0].removesuffix(".tsv")].append(job)
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


class Study:
    """The benchmark files and Snakemake runs of one experiment, with per-rule job and compute time."""

    def __init__(self, directory: Path, experiment: str):
        self.experiment = experiment
        folder = directory / "benchmarks" / experiment
        self.rules = read_benchmarks(folder, directory / "logs" / experiment)
        if not self.rules:
            raise SystemExit(f"no benchmark files under {folder}")
        self.jobs = [job for rows in self.rules.values() for job in rows]
        self.floor = min(job["s"] for job in self.jobs)  # the per-job overhead floor
        self.total = sum(job["s"] for job in self.jobs)
        self.start = min(job["mtime"] - job["s"] for job in self.jobs)
        self.end = max(job["mtime"] for job in self.jobs)
        self.runs = runs(directory, experiment)
        full = max(self.runs, key=lambda r: (r["jobs"], r["log"])) if self.runs else None
        self.wall = full["elapsed"] if full else None
        self.full = full

    def compute(self, job: dict) -> float:
        return job["compute"] if job["compute"] is not None else max(job["s"] - self.floor, 0.0)

    def rule(self, name: str) -> tuple[int, float, float]:
        """Jobs, job time and compute time of one rule (0s when the experiment has no such rule)."""
        jobs = self.rules.get(name, [])
        return len(jobs), sum(j["s"] for j in jobs), sum(self.compute(j) for j in jobs)

    @property
    def measured(self) -> str:
        logged = sum(job["compute"] is not None for job in self.jobs)
        if logged == len(self.jobs):
            return "compute time from the jobs' logs"
        return (f"compute time = job time − {self.floor:.2f} s (per-job overhead floor: the cheapest job) for "
                f"{len(self.jobs) - logged} of {len(self.jobs)} jobs, from the logs for the rest")


def table(study: Study, top: int) -> None:
    compute = sum(study.compute(j) for j in study.jobs)
    ranked = sorted(study.rules, key=lambda name: -study.rule(name)[1])
    rows = []
    for name in ranked[:top]:
        n, s, c = study.rule(name)
        rows.append([name, n, f"{s:.1f}", f"{c:.1f}", f"{s - c:.1f}", f"{s / study.total:.1%}", f"{s / n:.2f}"])
    rest = ranked[top:]
    if rest:
        n = sum(study.rule(name)[0] for name in rest)
        s = sum(study.rule(name)[1] for name in rest)
        c = sum(study.rule(name)[2] for name in rest)
        rows.append([f"({len(rest)} other rules)", n, f"{s:.1f}", f"{c:.1f}", f"{s - c:.1f}", f"{s / study.total:.1%}", ""])
    rows.append(["total", len(study.jobs), f"{study.total:.1f}", f"{compute:.1f}", f"{study.total - compute:.1f}", "", ""])
    print(f"benchmarks/{study.experiment}: {len(study.jobs)} jobs of {len(study.rules)} rules; total job time "
          f"{study.total:.1f} s ({clock(study.total)}), compute {compute:.1f} s, overhead {study.total - compute:.1f} s "
          f"({study.measured})")
    print(tabulate(rows, headers=["rule", "jobs", "job s", "compute s", "overhead s", "share", "s/job"],
                   disable_numparse=True))


POLICY_SIDE = {"base", "sft", "sft_sampling", "gather_samples", "gold_labeling", "gather_labels", "dist_sampling",
               "dist_gold"}  # the jobs a replicate adds when it re-draws the policy (replicate_scope: full)


def replicate_costs(study: Study) -> dict[str, tuple[int, float, float]]:
    """Per rep<seed> folder (and "shared"): its jobs, their job time and the job time of its policy side."""
    groups: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for name, jobs in study.rules.items():
        for job in jobs:
            groups[job["replicate"] or "shared"].append((name, job))
    return {group: (len(jobs), sum(job["s"] for _, job in jobs),
                    sum(job["s"] for name, job in jobs if name in POLICY_SIDE))
            for group, jobs in sorted(groups.items(), key=lambda item: (item[0] != "shared", item[0]))}


def per_replicate(study: Study) -> None:
    """What one replicate costs: the jobs and job time of each rep<seed>/ folder (and of its policy side), and of
    the shared jobs."""
    rows = [[group, n, f"{s:.1f}", f"{policy:.1f}"] for group, (n, s, policy) in replicate_costs(study).items()]
    print(tabulate(rows, headers=["jobs of", "jobs", "job s", "of which the policy side (base … gold labels) s"],
                   disable_numparse=True))


PPO_RULES = ("ppo", "ppo_eval", "ppo_curve", "rl_sampling", "rl_gold", "rl_proxy", "rl_kl")  # a run's jobs


def per_ppo_run(study: Study) -> None:
    """What each PPO run costs (training, its checkpoints' evaluation, its curve), summed over the replicates: the
    KL-penalised runs (`<rm>_kl<β>`) and the tuning seed's (`tune_lr<rate>`, plus `ppo_tuning`) among them."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for rule in PPO_RULES:
        for job in study.rules.get(rule, []):
            groups[job["name"]].append(job)
    groups["(ppo_tuning)"] = study.rules.get("ppo_tuning", [])
    rows = [[name, len(jobs), f"{sum(j['s'] for j in jobs):.1f}", f"{sum(j['s'] for j in jobs) / study.total:.1%}"]
            for name, jobs in groups.items() if jobs]
    print(tabulate(rows, headers=["PPO run (all replicates)", "jobs", "job s", "share of all job time"],
                   disable_numparse=True))


def gemm_rate(hidden: int, intermediate: int, threads: int, tokens: int = 512) -> float:
    """FLOP/s of a float32 torch matmul of a batch of `tokens` through the model's MLP shape, on `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(tokens, hidden), torch.randn(hidden, intermediate)
    for _ in range(3):
        a @ b
    repeats, start = 20, time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * tokens * hidden * intermediate * repeats / (time.perf_counter() - start)


def arithmetic(study: Study, directory: Path, cores: int) -> None:
    """Per rule that logs its arithmetic (training, and reward-model forward passes: rmood/arithmetic.py): its FLOPs,
    and the floor they set at the machine's matmul rate measured now, against the compute time the jobs took."""
    configs = sorted((directory / "results" / study.experiment).glob("**/sft/model/config.json"))
    if not configs:
        print("no SFT model under results/: no matmul shape to measure the machine's rate with")
        return
    shape = yaml.safe_load(configs[0].read_text())
    hidden, intermediate = shape["hidden_size"], shape["intermediate_size"]
    rates = {threads: gemm_rate(hidden, intermediate, threads) for threads in sorted({1, cores})}
    rate = rates[cores]
    rows = []
    for name in sorted(study.rules, key=lambda n: -sum(j["flops"] or 0 for j in study.rules[n])):
        counted = [job for job in study.rules[name] if job["flops"] is not None]
        if not counted:
            continue
        flops, compute = sum(j["flops"] for j in counted), sum(study.compute(j) for j in counted)
        rows.append([name, len(counted), f"{flops / 1e9:.1f}", f"{flops / rate:.2f}", f"{compute:.1f}",
                     f"{compute / max(flops / rate, 1e-9):.0f}×"])
    print(f"matmul rate ({hidden}×{intermediate}, float32): " + ", ".join(
        f"{r / 1e9:.1f} GFLOP/s on {t} thread(s)" for t, r in rates.items()) + f"; floor = FLOPs at {cores} thread(s)")
    print(tabulate(rows, headers=["rule", "jobs", "GFLOP", "floor s", "compute s", "compute ÷ floor"],
                   disable_numparse=True))


def wall(study: Study) -> None:
    if study.runs:
        print(tabulate([[r["log"], r["date"], r["jobs"], clock(r["elapsed"])] for r in study.runs],
                       headers=["snakemake run (.snakemake/log)", "started", "jobs done", "elapsed"]))
        if study.wall:
            print(f"full build: {study.full['log']}, {study.full['jobs']} jobs in {clock(study.wall)} wall; "
                  f"total job time / wall = {study.total / study.wall:.2f} jobs at once on average "
                  f"(if its jobs are the benchmarked ones)")
    else:
        print(f"no .snakemake/log run mentions results/{study.experiment}/")
    span = study.end - study.start
    print(f"span of the benchmark files: {datetime.fromtimestamp(study.start):%H:%M:%S} → "
          f"{datetime.fromtimestamp(study.end):%H:%M:%S} = {clock(span)} (first job start to last job end, idle time "
          f"between runs included); total job time / span = {study.total / span:.2f}")


def compare(study: Study, baseline: Study, top: int) -> None:
    """Per rule: the baseline's and this study's jobs, job and compute time, and baseline ÷ this."""
    names = sorted(set(study.rules) | set(baseline.rules), key=lambda n: -max(study.rule(n)[1], baseline.rule(n)[1]))

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b > 0 else "—"

    rows = []
    for name in names[:top]:
        bn, bs, bc = baseline.rule(name)
        n, s, c = study.rule(name)
        rows.append([name, bn, f"{bs:.1f}", f"{bc:.1f}", n, f"{s:.1f}", f"{c:.1f}", ratio(bs, s)])
    rest = names[top:]
    if rest:
        b = [sum(baseline.rule(x)[i] for x in rest) for i in range(3)]
        t = [sum(study.rule(x)[i] for x in rest) for i in range(3)]
        rows.append([f"({len(rest)} other rules)", b[0], f"{b[1]:.1f}", f"{b[2]:.1f}", t[0], f"{t[1]:.1f}",
                     f"{t[2]:.1f}", ratio(b[1], t[1])])
    bc = sum(baseline.compute(j) for j in baseline.jobs)
    c = sum(study.compute(j) for j in study.jobs)
    rows.append(["total", len(baseline.jobs), f"{baseline.total:.1f}", f"{bc:.1f}", len(study.jobs),
                 f"{study.total:.1f}", f"{c:.1f}", ratio(baseline.total, study.total)])
    b, t = baseline.experiment, study.experiment
    print(f"{b} (baseline) against {t}: job time per rule; speed-up = {b} ÷ {t}")
    print(tabulate(rows, headers=["rule", f"{b} jobs", f"{b} job s", f"{b} compute s", f"{t} jobs", f"{t} job s",
                                  f"{t} compute s", "speed-up"], disable_numparse=True))
    if baseline.wall and study.wall:
        print(f"wall time of the full builds: {b} {clock(baseline.wall)}, {t} {clock(study.wall)}: "
              f"speed-up {baseline.wall / study.wall:.2f}×; total compute time {bc / max(c, 1e-9):.2f}× less")


def experiment_of(config: Path | None) -> str:
    """The experiment a config file (merged over config/config.yaml) writes to."""
    default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["experiment"]
    if config is None:
        return default
    return (yaml.safe_load(config.read_text()) or {}).get("experiment", default)


def build(directory: Path, config: Path | None, target: str, cores: str, overlay: Path | None = None) -> None:
    """Build `target` from scratch: drop the experiment's results, logs and benchmarks, then run Snakemake with
    `config` and then `overlay` (e.g. the replicates of --replicates) merged over the default."""
    experiment = experiment_of(config)
    for part in ("results", "logs", "benchmarks"):
        shutil.rmtree(directory / part / experiment, ignore_errors=True)
    command = [str(Path(sys.executable).parent / "snakemake"), "--profile", "profiles/default", "--cores", cores, target]
    configs = [path for path in (config, overlay) if path is not None]
    if configs:
        command += ["--configfile", *(str(path.resolve()) for path in configs)]
    print(f"building {target} of experiment {experiment} from scratch: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=directory, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"  done in {clock(time.perf_counter() - start)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=None, help="the experiment (default: config/config.yaml's)")
    parser.add_argument("--against", default=None, help="a baseline experiment to compare with, rule by rule")
    parser.add_argument("--run", type=Path, default=None, metavar="CONFIG",
                        help="first build the baseline CONFIG (merged over the default) and the default from scratch")
    parser.add_argument("--target", default="mrm_eval", help="what --run builds (default mrm_eval)")
    parser.add_argument("--cores", default="all", help="Snakemake --cores for --run (default all)")
    parser.add_argument("--replicates", type=int, nargs="+", default=None, metavar="SEED",
                        help="--run builds these replicates of both configs (default: each config's own)")
    parser.add_argument("--directory", default=str(ROOT), help="the study's working directory (default: the project)")
    parser.add_argument("--top", type=int, default=12, help="rules shown (default 12)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads of the matmul rate the FLOP floor is taken at (default: the CPUs)")
    args = parser.parse_args()

    directory = Path(args.directory)
    experiment = args.experiment or experiment_of(None)
    against = args.against
    if args.run is not None:
        against = experiment_of(args.run)
        if against == experiment:
            parser.error(f"{args.run} writes to experiment {experiment!r}, like the default: give it its own")
        with tempfile.TemporaryDirectory() as scratch:
            overlay = None
            if args.replicates is not None:
                overlay = Path(scratch) / "replicates.yaml"
                overlay.write_text(yaml.safe_dump({"replicates": args.replicates}))
            build(directory, args.run, args.target, args.cores, overlay)
            build(directory, None, args.target, args.cores, overlay)
    study = Study(directory, experiment)
    table(study, args.top)
    print()
    per_replicate(study)
    print()
    per_ppo_run(study)
    print()
    arithmetic(study, directory, args.threads)
    print()
    wall(study)
    if against:
        baseline = Study(directory, against)
        print()
        compare(study, baseline, args.top)


if __name__ == "__main__":
    main()
