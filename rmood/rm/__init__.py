"""Reward models. Importing this package registers InfoRM and the rich MRM with the transformers Auto classes."""

from rmood.rm.inform import register

register()

import rmood.mrm.model  # noqa: E402,F401  registers itself on import; it imports rmood.rm.inform, so it comes last
