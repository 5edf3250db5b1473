"""The PPO learning rate, chosen on a tuning seed that no reported replicate uses (`rl.learning_rate: tuned`).

The rule (docs/ppo.md, "How PPO is set up"): PPO against `rl.tuning.reward_model` runs on the tuning seed's own policy
and RM once per candidate in `rl.tuning.learning_rates`, on the study's schedule; the chosen learning rate is the
smallest whose run reaches the largest KL budget of the report (`max(report.kl_budgets)`, the mean KL over the eval
prompts) at a checkpoint before its first degenerate one (`report.degenerate`, as the report marks them), so every
budget can be compared; if no candidate reaches it, the largest. The rule reads KL, finish rate and response length
only: no gold reward, so it cannot be steered toward a verdict.

The rule reads the runs' checkpoint files (samples and KL), not their curves: a change to how the report gathers a
curve (`rmood.eval.ppo_curve`) then reruns no PPO job. The early-stopping share is chosen on the same tuning runs
(`rmood.rl.stopping`); a run takes the chosen rate with `rmood.rl.resolve`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rmood.io import DataError, write_json
from rmood.rl import tuning_run
from rmood.rl.checkpoints import by_step, prompt_means, sample_values


def degenerate(finished: Any, start: Any, kl_per_token: Any, finish_rate: float, max_kl_per_token: float) -> Any:
    """Whether a PPO checkpoint is degenerate (floats or NumPy arrays): its answers that end fall below `finish_rate`
    × its run's share at update 0 (`start`), or its KL per response token exceeds `max_kl_per_token` (the report's
    `report.degenerate`, also used by the tuning rule)."""
    return (finished < finish_rate * start) | (kl_per_token > max_kl_per_token)


def usable_kl(curve: dict[str, Any], finish_rate: float, kl_per_token: float) -> tuple[float, int | None]:
    """The largest mean KL a run's curve (`run_curve`, or the report's `ppo/<run>/curve.json`) reaches before its
    first degenerate checkpoint (answers that end below `finish_rate` × update 0's share, or mean KL over mean
    response tokens above `kl_per_token`), and the update of that checkpoint (None: none degenerate)."""
    reached = 0.0
    for step, kl, finished, tokens in zip(curve["steps"], curve["kl"], curve["finished"], curve["tokens"]):
        if degenerate(finished, curve["finished"][0], kl / tokens if tokens > 0 else 0.0, finish_rate, kl_per_token):
            return reached, step
        reached = max(reached, kl)
    return reached, None


def run_curve(step0: str, samples_files: list[str], kl_files: list[str]) -> dict[str, list[float]]:
    """What the tuning rule reads of one run: per checkpoint (`steps`: 0, the SFT policy's `step0` samples, then the
    run's `step_<k>` files) its mean KL, share of answers that ended and response length in tokens, each a mean
    over prompts of the prompt's mean, as in the run's curve (`rmood.eval.ppo_curve`)."""
    samples, kl = by_step([step0, *samples_files], "samples"), by_step(kl_files, "KL")
    if samples.keys() - {0} != kl.keys() or step0 != samples.get(0):
        raise DataError(f"the samples files {sorted(samples)} and KL files {sorted(kl)} are not of the same "
                        f"checkpoints after step 0 ({step0})")
    curve: dict[str, list[float]] = {"steps": sorted(samples), "kl": [], "finished": [], "tokens": []}
    for step in curve["steps"]:
        values = {"finished": sample_values(samples[step], "finished"),
                  "tokens": sample_values(samples[step], "tokens", len)}
        values["kl"] = sample_values(kl[step], "kl") if step else dict.fromkeys(values["finished"], 0.0)
        if values["kl"].keys() != values["finished"].keys():
            raise DataError(f"{kl[step]} and {samples[step]} hold different samples")
        prompts = list(dict.fromkeys(prompt for prompt, _ in values["finished"]))
        for name, value in values.items():
            curve[name].append(float(np.mean(prompt_means(value, prompts))))
    return curve


def choose_learning_rate(step0: str, samples_files: list[str], kl_files: list[str], out: str,
                         tuning: dict[str, Any], report: dict[str, Any]) -> None:
    """Write `tuning/ppo.json`: every candidate's usable KL and first degenerate update, the target and the chosen
    learning rate (see the module docstring for the rule), from the tuning runs' checkpoint files
    (`ppo/tune_lr<rate>/step_<k>/samples.jsonl` and `kl.jsonl`) and the SFT policy's samples (`step0`)."""
    target = max(report["kl_budgets"])
    degenerate = report["degenerate"]

    def of(files: list[str], run: str) -> list[str]:
        return [f for f in files if Path(f).parent.parent.name == run]

    candidates = []
    for rate in sorted(tuning["learning_rates"]):
        run = tuning_run(rate)
        if not of(samples_files, run):
            raise DataError(f"no checkpoint of the tuning run of learning rate {rate:g} ({run}) among {samples_files}")
        curve = run_curve(step0, of(samples_files, run), of(kl_files, run))
        reached, step = usable_kl(curve, degenerate["finish_rate"], degenerate["kl_per_token"])
        candidates.append({"learning_rate": rate, "run": run, "usable_kl": reached, "degenerate_from": step,
                           "final_kl": curve["kl"][-1], "final_finished": curve["finished"][-1]})
    reaching = [c for c in candidates if c["usable_kl"] >= target]
    chosen = reaching[0] if reaching else candidates[-1]
    why = (f"the smallest learning rate whose run reached {target:g} nats before degenerating" if reaching else
           f"no candidate reached {target:g} nats before degenerating: the largest")
    write_json(out, {"seed": tuning["seed"], "reward_model": tuning["reward_model"], "target_kl": target,
                     "candidates": candidates, "learning_rate": chosen["learning_rate"], "why": why})
    print(f"PPO learning rate {chosen['learning_rate']:g}: {why}", flush=True)
    for c in candidates:
        print(f"  {c['learning_rate']:g}: usable KL {c['usable_kl']:.2f} nats, degenerate from "
              f"{c['degenerate_from'] if c['degenerate_from'] is not None else 'never'}", flush=True)

