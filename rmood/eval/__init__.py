"""Evaluation: Best-of-N curves, PPO curves, over-optimisation fits and the `mrm_eval` report (no torch).

This package's own import stays light (the workflow reads `PLOTS` at parse time); its modules import numpy and
SciPy."""

PLOTS = ("bon_gold", "bon_proxy", "ppo_gold", "ppo_proxy", "rm_accuracy", "forest")  # the report's figures (.png)
