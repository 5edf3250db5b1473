"""What a no-op costs: parsing the workflow and a dry run of `mrm_eval`, against importing torch and transformers.

    .venv/bin/python bench/noop.py                 # this checkout (its results/, if any) and a fresh empty folder
    .venv/bin/python bench/noop.py --repeat 5
    .venv/bin/python bench/noop.py --directory /tmp/study --configfile .test/config.yaml   # a test-sized study
    .venv/bin/python bench/noop.py --rerun-triggers mtime   # a study finished before the code last changed

Each command runs in a fresh process, `--repeat` times, and the best and median wall times are shown:
- parse only: `snakemake --list-rules` reads the Snakefile, validates the config and defines the rules,
  without building the DAG;
- dry run, here: `snakemake -n mrm_eval` in the study folder (--directory); with a finished, up-to-date study
  it builds the DAG, checks every output against its inputs, code and params and finds nothing to do (the
  last column says what it found: after code changes a finished study is rescheduled);
- dry run, fresh: the same in an empty folder, where every job of the study is scheduled;
- `python -c "import torch, transformers"`: what any step pays before it computes (the goal for a no-op
  is ≤ 2 s, and the workflow must not import torch to parse).
Nothing is written: dry runs only (Snakemake keeps its metadata under .snakemake/, which -n does not touch).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GOAL = 2.0


def run_all(commands: dict[str, tuple[list[str], Path]], repeat: int) -> dict[str, tuple[float, float, str]]:
    """Best and median wall seconds of each command over `repeat` fresh processes, and its last output; the
    commands take turns (round robin), so a change of load hits them alike."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    outputs: dict[str, str] = {}
    for _ in range(repeat):
        for name, (command, cwd) in commands.items():
            start = time.perf_counter()
            result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
            seconds[name].append(time.perf_counter() - start)
            outputs[name] = result.stdout + result.stderr
            if result.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed:\n{outputs[name][-2000:]}")
    return {name: (min(times), statistics.median(times), outputs[name]) for name, times in seconds.items()}


def scheduled_jobs(output: str) -> str:
    """'nothing to do', or the job count of a dry run's 'total' row."""
    if "Nothing to be done" in output:
        return "nothing to do"
    for line in output.splitlines():
        if line.startswith("total"):
            return f"{line.split()[-1]} jobs"
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (default 3)")
    parser.add_argument("--directory", default=str(ROOT), help="the study folder to dry-run (default: this checkout)")
    parser.add_argument("--snakefile", default=str(ROOT / "Snakefile"))
    parser.add_argument("--configfile", nargs="*", default=[], help="config files for every snakemake command")
    parser.add_argument("--rerun-triggers", nargs="*", default=[],
                        help="for the dry runs, e.g. `mtime` to ignore code and params changes made since the study ran")
    args = parser.parse_args()

    snakemake = [str(BIN / "snakemake"), "--snakefile", args.snakefile]
    if args.configfile:
        snakemake += ["--configfile", *map(str, map(Path.resolve, map(Path, args.configfile)))]
    dry_run = [*snakemake, "-n", "mrm_eval", *(["--rerun-triggers", *args.rerun_triggers] if args.rerun_triggers else [])]
    with tempfile.TemporaryDirectory() as fresh:
        commands = {
            "parse only (--list-rules)": ([*snakemake, "--list-rules"], Path(fresh)),
            f"dry run -n mrm_eval, {args.directory}": (dry_run, Path(args.directory)),
            "dry run -n mrm_eval, fresh folder": (dry_run, Path(fresh)),
            'python -c "import torch, transformers"': ([sys.executable, "-c", "import torch, transformers"], ROOT),
        }
        results = run_all(commands, args.repeat)
    torch_best = results['python -c "import torch, transformers"'][0]
    rows = []
    for name, (best, median, output) in results.items():
        outcome = scheduled_jobs(output) if "dry run" in name else ""
        rows.append([name, f"{best:.2f}", f"{median:.2f}", f"{best / torch_best:.2f}", outcome,
                     "" if "import" in name else ("yes" if best <= GOAL else "NO")])
    print(f"best and median of {args.repeat} fresh processes each; ratio = best / best import of torch+transformers")
    print(tabulate(rows, headers=["command", "best s", "median s", "× import", "dry run finds", f"≤ {GOAL:g} s"],
                   disable_numparse=True))


if __name__ == "__main__":
    main()
