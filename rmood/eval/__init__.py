"""Evaluation: Best-of-N curves, PPO curves, over-optimisation fits and the `mrm_eval` report (no torch).

This package's own import stays light (the workflow reads `PLOTS` at parse time); its modules import numpy and
SciPy."""

PLOTS = ("bon_gold", "bon_proxy", "ppo_gold", "ppo_proxy", "ppo_collapse", "rm_accuracy", "forest",
         "ood_distance")  # figures (.png)
