"""Reward models. Importing this package registers InfoRM with the transformers Auto classes."""

from rmood.rm.inform import register

register()
