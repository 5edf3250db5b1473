"""Policy optimisation against each reward model (TRL's PPO) and the KL of the optimised policy to its reference."""
