"""The study is a function of its config and seed: a second build in another folder gives the same bytes.

The first build is the session's end-to-end study (conftest.e2e_study, shared with test_workflow.py), so this
adds one build of the test-sized DAG. Every file under results/<experiment>/ is compared, not a sample. The
second build evaluates the PPO checkpoints with one job per checkpoint and artifact (`rl.eval_jobs:
checkpoint`, a cluster's layout) instead of one job per run: the files must not depend on how jobs are cut.
"""

from __future__ import annotations

import pytest

from conftest import EXPERIMENT, digests, snakemake

pytestmark = pytest.mark.e2e

# Files that must exist among the compared ones (a renamed artifact must not shrink the check silently).
KEY_FILES = [
    "data/preference.jsonl",
    "rep0/sft/samples.jsonl",
    "rep0/labels/gold.jsonl",
    "rep0/pairs/train.explicit.jsonl",
    "rep0/pairs/test.implicit.jsonl",
    "rep0/pairs/ood.explicit.jsonl",
    "rep0/rm/rm/model/model.safetensors",
    "rep0/mrm/representations/chosen.npy",
    "rep0/mrm/gda_parameters.npz",
    "rep0/mrm/model/model.safetensors",
    "rep0/bon/report.json",
    "rep0/bon/per_prompt.npz",
    "rep0/ppo/rm/curve.json",
    "rep0/ppo/rm/step_4/kl.jsonl",
    "rep0/ppo/rm/per_prompt.npz",
    "reports/summary.csv",
    "reports/curves.csv",
    "reports/variance.csv",
    "reports/budgets.csv",
    "reports/plots/ppo_collapse.png",
    "reports/mrm_eval.md",
    "reports/plots/bon_gold.png",
    "reports/plots/forest.png",
]


def test_a_second_build_with_the_same_seed_is_byte_identical(e2e_study, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("again")
    snakemake(workdir, "mrm_eval", overrides="rl: {eval_jobs: checkpoint}")
    first, second = e2e_study.digests, digests(workdir / "results" / EXPERIMENT)
    assert sorted(first.keys() ^ second.keys()) == []
    assert set(KEY_FILES) <= first.keys()
    assert sorted(name for name in first if first[name] != second[name]) == []
