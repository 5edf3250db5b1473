"""Reward models: training (Bradley–Terry, RRM, InfoRM, WARM, ensembles), scoring and checks.

rmood's own model classes register with the transformers Auto classes through `rmood.rm.auto.register_models()`,
not on import.
"""
