"""The PPO learning rate, chosen on a tuning seed that no reported replicate uses (`rl.learning_rate: tuned`).

The rule (docs/ppo.md, "How PPO is set up"): PPO against `rl.tuning.reward_model` runs on the tuning seed's own policy
and RM once per candidate in `rl.tuning.learning_rates`, on the study's schedule; the chosen learning rate is the
smallest whose run reaches the largest KL budget of the report (`max(report.kl_budgets)`, the mean KL over the eval
prompts) at a checkpoint before its first degenerate one (`report.degenerate`, as the report marks them), so every
budget can be compared; if no candidate reaches it, the largest. The rule reads KL, finish rate and response length
only: no gold reward, so it cannot be steered toward a verdict.

The early-stopping share is chosen on the same tuning runs (`rmood.rl.stopping`).

Light on purpose (JSON only): verl's environment imports it too.
"""

from __future__ import annotations

from typing import Any

from rmood.io import DataError, read_json, write_json

TUNED = "tuned"


def tuning_run(learning_rate: float) -> str:
    """The name of a tuning PPO run (its folder under rep<tuning seed>/ppo/)."""
    return f"tune_lr{learning_rate:g}"


def degenerate(finished: Any, start: Any, kl_per_token: Any, finish_rate: float, max_kl_per_token: float) -> Any:
    """Whether a PPO checkpoint is degenerate (floats or NumPy arrays): its answers that end fall below `finish_rate`
    × its run's share at update 0 (`start`), or its KL per response token exceeds `max_kl_per_token` (the report's
    `report.degenerate`, also used by the tuning rule)."""
    return (finished < finish_rate * start) | (kl_per_token > max_kl_per_token)


def usable_kl(curve: dict[str, Any], finish_rate: float, kl_per_token: float) -> tuple[float, int | None]:
    """The largest mean KL a run's curve (`ppo/<run>/curve.json`) reaches before its first degenerate checkpoint
    (answers that end below `finish_rate` × update 0's share, or mean KL over mean response tokens above
    `kl_per_token`), and the update of that checkpoint (None: none degenerate)."""
    reached = 0.0
    for step, kl, finished, tokens in zip(curve["steps"], curve["kl"], curve["finished"], curve["tokens"]):
        if degenerate(finished, curve["finished"][0], kl / tokens if tokens > 0 else 0.0, finish_rate, kl_per_token):
            return reached, step
        reached = max(reached, kl)
    return reached, None


def choose_learning_rate(curves: list[str], out: str, tuning: dict[str, Any], report: dict[str, Any]) -> None:
    """Write `tuning/ppo.json`: every candidate's usable KL and first degenerate update, the target and the chosen
    learning rate (see the module docstring for the rule)."""
    target = max(report["kl_budgets"])
    degenerate = report["degenerate"]
    runs = {}
    for path in curves:
        curve = read_json(path)
        runs[curve["rm"]] = (path, curve)
    candidates = []
    for rate in sorted(tuning["learning_rates"]):
        if tuning_run(rate) not in runs:
            raise DataError(f"no tuning curve of learning rate {rate:g} ({tuning_run(rate)}) among {curves}")
        path, curve = runs[tuning_run(rate)]
        reached, step = usable_kl(curve, degenerate["finish_rate"], degenerate["kl_per_token"])
        candidates.append({"learning_rate": rate, "curve": path, "usable_kl": reached, "degenerate_from": step,
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


def resolve(rl: dict[str, Any], tuning: str | None) -> dict[str, Any]:
    """`rl` with `learning_rate: tuned` replaced by the rate chosen in the `tuning` file (`choose_learning_rate`)."""
    if rl["learning_rate"] != TUNED:
        return rl
    if tuning is None:
        raise ValueError("rl.learning_rate is 'tuned' but no tuning file (tuning/ppo.json) was given")
    return {**rl, "learning_rate": float(read_json(tuning)["learning_rate"])}
