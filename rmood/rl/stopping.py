"""Early stopping on the share of outliers (after Miao et al.'s use of the Mahalanobis Outlier Probability): stop a
PPO run at its first checkpoint whose share of responses beyond the outlier threshold (`rmood.mrm.distance`) exceeds
a share, chosen among `rl.tuning.stop_shares` on the tuning seed's runs against gold (`choose_stop_share`): the
tuning seed is never reported, and the reported replicates score the rule (the report).
"""

from __future__ import annotations

from typing import Any

from rmood.io import DataError, read_json, write_json
from rmood.rl.tuning import usable_kl


def usable(curve: dict[str, Any], finish_rate: float, kl_per_token: float) -> int:
    """How many leading checkpoints of a run's curve (`ppo/<run>/curve.json`) are not degenerate (`usable_kl`)."""
    _, step = usable_kl(curve, finish_rate, kl_per_token)
    return len(curve["steps"]) if step is None else curve["steps"].index(step)


def stop_index(outliers: list[float], share: float, count: int) -> int:
    """Early stopping on the share of outliers: the first of the first `count` checkpoints whose share exceeds
    `share`, else the last of them."""
    return next((k for k in range(count) if outliers[k] > share), count - 1)


def choose_stop_share(curves: list[str], out: str, tuning: dict[str, Any], report: dict[str, Any]) -> None:
    """Write `tuning/stop.json`: the outlier share at which PPO stops (`stop_index`), chosen among
    `tuning["stop_shares"]` on the tuning seed's runs: the share whose stops lose the least gold against each run's
    own peak, on average over the runs (checkpoints before a run's first degenerate one; of equally good shares the
    middle one). The reported replicates then score the rule against gold (the report)."""
    degenerate = report["degenerate"]
    runs = []
    for path in sorted(curves):
        curve = read_json(path)
        count = usable(curve, degenerate["finish_rate"], degenerate["kl_per_token"])
        if count == 0 or "outlier" not in curve:
            raise DataError(f"{path}: no usable checkpoint with an outlier share")
        runs.append((path, curve, count))
    if not runs:
        raise DataError("no tuning curves to choose the stopping share on")
    losses = {}
    for share in sorted(tuning["stop_shares"]):
        losses[share] = [curve["gold"][stop_index(curve["outlier"], share, count)] - max(curve["gold"][:count])
                         for _, curve, count in runs]
    best = max(sum(loss) / len(loss) for loss in losses.values())
    tied = [share for share, loss in losses.items() if sum(loss) / len(loss) == best]
    chosen = tied[len(tied) // 2]
    write_json(out, {"seed": tuning["seed"], "stop_share": chosen, "mean_gold_lost": 0.0 - best,
                     "candidates": [{"stop_share": share, "gold_lost": [0.0 - x for x in loss]}
                                    for share, loss in losses.items()],
                     "runs": [{"curve": path, "usable": count} for path, _, count in runs]})
    print(f"stop PPO once more than {chosen:g} of its answers are outliers: {0.0 - best:.4f} gold lost against the peak on "
          f"average over {len(runs)} tuning runs", flush=True)
