"""Glue for every rule: run the rmood step named in the rule's params (see rmood/steps.py)."""

from rmood.cli import run_job

run_job(snakemake)  # noqa: F821 (defined by Snakemake's script directive)
