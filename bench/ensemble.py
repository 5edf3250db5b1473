"""An ensemble's Best-of-N scores and check: running its members again against reducing their own outputs.

    .venv/bin/python bench/ensemble.py                          # on results/embedded/rep0 of this checkout
    .venv/bin/python bench/ensemble.py --directory /tmp/study --replicate 1 --repeat 3

What one replicate of the workflow computes for its ensembles (`ens_mean`, `ens_wco`, `ens_uwo` of the members
`warm.seeds`), both ways, on the finished replicate's artifacts:

- **members again** (before `bon_ensemble_score` / `rm_check_ensemble`): each ensemble scores the Best-of-N
  samples and checks its pairs with its own model, i.e. runs every member on them;
- **reduced**: the members other than `rm` (whose own jobs run anyway) score the samples and check the pairs once,
  and each ensemble reduces the members' rewards.

Each way runs in a fresh process with one thread (as a workflow job computes) and reports its wall time, imports
excluded; the two take turns `--repeat` times and the table gives the median of each and the ratio. Both write
the same files bit for bit; the script checks that too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from rmood.config import member_names  # noqa: E402
from rmood.job import thread_environment  # noqa: E402

ENSEMBLES = [f"ens_{reduction}" for reduction in ("mean", "wco", "uwo")]

RUN = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
from rmood.rm.check import check_ensemble, check_rm
from rmood.rm.ensemble import combine_scores
from rmood.rm.score import score_samples
STEPS = {"score": score_samples, "check": check_rm, "combine": combine_scores, "check_ensemble": check_ensemble}
calls = json.loads(sys.argv[1])
start = time.perf_counter()
for name, args in calls:
    STEPS[name](**args)
print("SECONDS", time.perf_counter() - start)
"""


def plans(rep: Path, data: Path, config: dict, out: Path) -> dict[str, list]:
    """The two ways as lists of (step, keyword arguments), writing under `out/<way>/`, with `config`'s scoring."""
    scoring, dtype, members = config["scoring"], config["model"]["dtype"], member_names(config["warm"]["seeds"])
    pairs = {"train": str(rep / "pairs/train.explicit.jsonl"), "test": str(rep / "pairs/test.explicit.jsonl"),
             "ood": str(rep / "pairs/ood.explicit.jsonl")}

    def score(model: str, target: Path) -> tuple:
        return ("score", {"model": model, "samples": str(rep / "bon/samples.jsonl"),
                          "prompt_files": [str(data / "eval.jsonl")], "out": str(target),
                          "scoring": scoring, "dtype": dtype})

    def check(model: str, target: Path, rewards: Path) -> tuple:
        return ("check", {"model": model, **pairs, "out": str(target), "rewards": str(rewards), "scoring": scoring,
                          "dtype": dtype})

    again = [call for name in ENSEMBLES for call in (
        score(str(rep / f"rm/{name}/model"), out / "again" / f"{name}.jsonl"),
        check(str(rep / f"rm/{name}/model"), out / "again" / f"{name}.check.json", out / "again" / f"{name}.npz"))]
    reduced = [call for name in members[1:] for call in (
        score(str(rep / f"rm/{name}/model"), out / "reduced" / f"{name}.jsonl"),
        check(str(rep / f"rm/{name}/model"), out / "reduced" / f"{name}.check.json", out / "reduced" / f"{name}.npz"))]
    # rm's own outputs exist anyway (its bon_score and rm_check jobs); the other members' are written above
    scores = {members[0]: rep / f"bon/scores/{members[0]}.jsonl",
              **{name: out / "reduced" / f"{name}.jsonl" for name in members[1:]}}
    rewards = {members[0]: rep / f"rm/{members[0]}/check_rewards.npz",
               **{name: out / "reduced" / f"{name}.npz" for name in members[1:]}}
    for name in ENSEMBLES:
        model = str(rep / f"rm/{name}/model")
        reduced.append(("combine", {"model": model, "scores": [str(scores[m]) for m in members],
                                    "out": str(out / "reduced" / f"{name}.jsonl")}))
        reduced.append(("check_ensemble", {"model": model, "rewards": [str(rewards[m]) for m in members],
                                           "out": str(out / "reduced" / f"{name}.check.json")}))
    return {"members again": again, "reduced": reduced}


def measure(calls: list) -> float:
    result = subprocess.run([sys.executable, "-c", RUN, json.dumps(calls)], cwd=ROOT, capture_output=True, text=True,
                            env={**thread_environment(1), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    if result.returncode:
        sys.exit(result.stderr[-3000:])
    return float(result.stdout.split("SECONDS")[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, default=ROOT, help="the study's working directory")
    parser.add_argument("--experiment", default="embedded")
    parser.add_argument("--replicate", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    results = args.directory / "results" / args.experiment
    rep = results / f"rep{args.replicate}"
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as scratch:
        ways = plans(rep, results / "data", config, Path(scratch))
        times: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.repeat):
            for way, calls in ways.items():
                times[way].append(measure(calls))
        same = all((Path(scratch) / "again" / file).read_bytes() == (Path(scratch) / "reduced" / file).read_bytes()
                   for name in ENSEMBLES for file in (f"{name}.jsonl", f"{name}.check.json"))
    again, reduced = (statistics.median(times[way]) for way in ways)
    print(f"{rep}: the three ensembles' Best-of-N scores and checks, median of {args.repeat}, one thread")
    for way, seconds in times.items():
        print(f"  {way:14s} {statistics.median(seconds):6.2f} s  ({', '.join(f'{s:.2f}' for s in seconds)})")
    print(f"  speed-up {again / reduced:.2f}×; the same files bit for bit: {same}")


if __name__ == "__main__":
    main()
