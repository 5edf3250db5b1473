"""Glue for every rule: run the rmood step named in the rule's params where rmood/runner.py decides."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (rmood without installing it)

from rmood.runner import run_job  # noqa: E402

run_job(snakemake)  # noqa: F821 (defined by Snakemake's script directive)
