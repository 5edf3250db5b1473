"""Prompt data: the synthetic AlpacaFarm-shaped set, the AlpacaFarm reader, prompt formatting."""

SPLITS = ("sft", "preference", "unlabeled", "val", "eval", "ood")
