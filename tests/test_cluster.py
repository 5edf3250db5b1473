"""The cluster configuration: `config/alpacafarm-qwen3-4b.yaml` under `profiles/slurm`, dry-run offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "config" / "alpacafarm-qwen3-4b.yaml"
DEFAULT = ROOT / "config" / "config.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_base) -> Path:
    """Stand-ins for the local Qwen3-4B and gold RM dirs the config names (the parse checks they are models)."""
    path = tmp_path_factory.mktemp("cluster") / "models.yaml"
    path.write_text(yaml.safe_dump({"model": {"source": str(tiny_base)}, "gold": {"source": str(tiny_base)}}))
    return path


def snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Snakemake offline: the hub is off and any HTTP(S) connection goes to a closed port."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "RMOOD_WORKER": "0",
                        "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
                        "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    return subprocess.run([*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def jobs(output: str) -> dict[str, list[str]]:
    """The `resources:` line of every job in a dry-run listing, by rule."""
    found: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=rule \w+:)", output):
        name = re.match(r"rule (\w+):", block)
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        if name and resources:
            found.setdefault(name[1], []).append(resources[1])
    return found


def test_the_cluster_dry_run_lists_every_job_with_its_gpus(models, tmp_path):
    result = snakemake("-n", "--profile", str(ROOT / "profiles" / "slurm"), "--configfile", str(CLUSTER),
                       str(models), "--", "mrm_eval", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    listed = jobs(result.stdout)
    config = yaml.safe_load(CLUSTER.read_text())
    replicates = len(config.get("replicates") or yaml.safe_load(DEFAULT.read_text())["replicates"])
    counts = Counter({rule: len(resources) for rule, resources in listed.items()})
    assert counts["sft_sampling"] == config["sampling"]["shards"]  # shared by the replicates
    assert counts["bon_sampling"] == config["bon"]["shards"] * replicates
    assert counts["ppo"] == len(config["rl"]["reward_models"]) * replicates
    gpus = {kind: config["resources"][kind]["gpus"] for kind in ("sample", "train", "ppo", "score")}
    for rule, kind in (("sft_sampling", "sample"), ("bon_sampling", "sample"), ("rl_sampling", "sample"),
                       ("sft", "train"), ("train_rm", "train"), ("ppo", "ppo"), ("rm_check", "score")):
        assert all(f"gpu={gpus[kind]}" in line for line in listed[rule]), (rule, listed[rule][0])
    for rule in ("data", "preference_pairs", "gda", "report"):
        assert all("gpu=" not in line for line in listed[rule]), (rule, listed[rule][0])
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()  # nothing fetched or written


def test_the_cluster_dag_renders(models, tmp_path):
    result = snakemake("-n", "--configfile", str(CLUSTER), str(models), "--dag", "mermaid-js", "--", "mrm_eval",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.lstrip().startswith("---") or "flowchart" in result.stdout
    for rule in ("sft_sampling", "ppo", "train_rm", "gda", "report"):
        assert rule in result.stdout
