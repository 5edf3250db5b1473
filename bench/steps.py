"""The compute-heavy steps, this checkout's code against an earlier revision's, side by side on the same inputs.

    .venv/bin/python bench/steps.py                                  # against 57761ac, on results/embedded
    .venv/bin/python bench/steps.py --baseline 57761ac --experiment embedded --repeat 3

The baseline revision is extracted with `git archive` into a temporary folder. Each measurement is a fresh
process with one thread (as a workflow job computes) that imports the revision's `rmood`, runs one step with the
same settings and inputs, and reports the step's own wall time (imports excluded). The two revisions take turns,
`--repeat` times, so a change of load on the machine hits both alike; the table gives the median of each and the
ratio baseline ÷ this checkout. The steps, on the finished experiment's artifacts:

- `train_rm`: the Bradley–Terry RM on the first 2,000 training pairs, one epoch (the `rm` settings of the
  config; the baseline gets them without `group_by_length`, which it does not know, and the checkout runs both);
- `sft`: SFT of the base model on the first 1,600 demonstrations, one epoch;
- `ppo`: 20 PPO updates against the `rm` (the `rl` settings, saving every 10);
- `score`: the `rm`'s reward of the first 8,192 Best-of-N samples.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from tabulate import tabulate

from rmood.job import thread_environment

ROOT = Path(__file__).resolve().parents[1]

RUN = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
step, args = sys.argv[2], json.loads(sys.argv[3])
if step == "train_rm":
    from rmood.rm.train import train_reward_model as run
elif step == "sft":
    from rmood.sft.train import train_sft as run
elif step == "ppo":
    from rmood.rl.ppo import train_ppo as run
else:
    from rmood.rm.score import score_samples as run
start = time.perf_counter()
run(**args)
print("SECONDS", time.perf_counter() - start)
"""


def first_lines(source: Path, target: Path, n: int) -> str:
    with source.open(encoding="utf-8") as f, target.open("w", encoding="utf-8") as g:
        for i, line in enumerate(f):
            if i >= n:
                break
            g.write(line)
    return str(target)


def cases(results: Path, config: dict, scratch: Path) -> dict[str, dict]:
    """Step name -> keyword arguments (outputs under `scratch/<code>/`, filled in per run)."""
    rm = {**config["rm"], "epochs": 1, "save_steps": 100000}
    sft = {**config["sft"], "epochs": 1, "save_steps": 100000}
    rl = {**config["rl"], "steps": 20, "checkpoints": [10]}
    return {
        "train_rm": dict(policy=str(results / "sft/model"), seed=0, dtype="float32", rm=rm,
                         pairs=first_lines(results / "pairs/train.implicit.jsonl", scratch / "pairs.jsonl", 2000)),
        "sft": dict(base=str(results / "base"), seed=0, dtype="float32", sft=sft,
                    train=first_lines(results / "data/sft.jsonl", scratch / "sft.jsonl", 1600)),
        "ppo": dict(policy=str(results / "sft/model"), reward_model=str(results / "rm/rm/model"), seed=0,
                    prompts=str(results / "data/unlabeled.jsonl"), rl=rl, sampling=config["sampling"], dtype="float32"),
        "score": dict(model=str(results / "rm/rm/model"), prompt_files=[str(results / "data/eval.jsonl")],
                      samples=first_lines(results / "bon/samples.jsonl", scratch / "bon.jsonl", 8192),
                      scoring=config["scoring"], dtype="float32"),
    }


def outputs(step: str, args: dict, folder: Path) -> dict:
    """`args` with this run's output paths in `folder` (fresh)."""
    if step == "train_rm":
        return {**args, "model": str(folder / "model"), "work_dir": str(folder / "work")}
    if step == "sft":
        return {**args, "model": str(folder / "model"), "work_dir": str(folder / "work")}
    if step == "ppo":
        steps = (10, 20)
        return {**args, "out": [str(folder / f"step_{k}" / "model") for k in steps], "work_dir": str(folder / "work")}
    return {**args, "out": str(folder / "scores.jsonl")}


def measure(code: Path, step: str, args: dict) -> float:
    env = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           **thread_environment(1)}
    done = subprocess.run([sys.executable, "-c", RUN, str(code), step, json.dumps(args)], capture_output=True,
                          text=True, env=env)
    seconds = [float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("SECONDS")]
    if done.returncode or not seconds:
        raise SystemExit(f"{step} with the code in {code} failed:\n{done.stderr[-3000:]}")
    return seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="57761ac", help="git revision to compare with (default 57761ac)")
    parser.add_argument("--experiment", default="embedded", help="finished experiment whose artifacts are the inputs")
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml", help="settings of the steps")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--steps", nargs="+", default=["train_rm", "sft", "ppo", "score"])
    args = parser.parse_args()

    results = ROOT / "results" / args.experiment
    config = yaml.safe_load(args.config.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        baseline = tmp / "baseline"
        baseline.mkdir()
        archive = subprocess.run(["git", "archive", args.baseline], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
        inputs = cases(results, config, tmp)
        variants = {"train_rm": [(args.baseline, baseline, {"group_by_length": False}), ("this, random batches", ROOT,
                                 {"group_by_length": False}), ("this", ROOT, {})]}
        rows = []
        for step in args.steps:
            runs = variants.get(step, [(args.baseline, baseline, {}), ("this", ROOT, {})])
            times: dict[str, list[float]] = {name: [] for name, _, _ in runs}
            for r in range(args.repeat):
                for name, code, change in runs:
                    call = dict(inputs[step])
                    if change and step == "train_rm":
                        call["rm"] = {k: v for k, v in call["rm"].items() if k != "group_by_length"} | change
                    folder = tmp / "out" / f"{step}-{len(times[name])}-{name.replace(' ', '_').replace(',', '')}"
                    times[name].append(measure(code, step, outputs(step, call, folder)))
                    print(f"{step:9s} {name:22s} {times[name][-1]:6.1f} s", flush=True)
            base = statistics.median(times[args.baseline])
            for name, _, _ in runs:
                median = statistics.median(times[name])
                rows.append([step, name, f"{median:.1f}", " ".join(f"{t:.1f}" for t in times[name]), f"{base / median:.2f}"])
    print()
    print(tabulate(rows, headers=["step", "code", "median s", "runs", "speed-up"], disable_numparse=True))


if __name__ == "__main__":
    main()
