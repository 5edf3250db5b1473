"""Policy optimisation against each reward model (TRL's PPO) and the KL of the optimised policy to its reference.

What a PPO run needs of the tuning seed lives here, not in `rmood.rl.tuning`: an edit of the tuning rule then reruns
the rule, and PPO only when the rate it chooses changes.
"""

from __future__ import annotations

from typing import Any

from rmood.io import read_json

TUNED = "tuned"  # rl.learning_rate: chosen on the tuning seed (`rmood.rl.tuning`)


def tuning_run(learning_rate: float) -> str:
    """The name of a tuning PPO run (its folder under rep<tuning seed>/ppo/)."""
    return f"tune_lr{learning_rate:g}"


def resolve(rl: dict[str, Any], tuning: str | None) -> dict[str, Any]:
    """`rl` with `learning_rate: tuned` replaced by the rate chosen in the `tuning` file (`tuning/ppo.json`)."""
    if rl["learning_rate"] != TUNED:
        return rl
    if tuning is None:
        raise ValueError("rl.learning_rate is 'tuned' but no tuning file (tuning/ppo.json) was given")
    return {**rl, "learning_rate": float(read_json(tuning)["learning_rate"])}
