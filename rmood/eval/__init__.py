"""Evaluation: Best-of-N curves, PPO curves, over-optimisation fits and the `mrm_eval` report (no torch)."""
