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


def jobs(output: str, field: str = "resources") -> dict[str, list[str]]:
    """The `resources:` (or another field's) line of every job in a dry-run listing, by rule."""
    found: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=rule \w+:)", output):
        name = re.match(r"rule (\w+):", block)
        value = re.search(rf"^\s+{field}: (.*)$", block, re.M)
        if name and value:
            found.setdefault(name[1], []).append(value[1])
    return found


@pytest.fixture(scope="module")
def cluster_dry_run(models, tmp_path_factory) -> tuple[str, Path]:
    """The dry-run listing of the cluster config under profiles/slurm, and the folder it ran in."""
    folder = tmp_path_factory.mktemp("dry_run")
    result = snakemake("-n", "--profile", str(ROOT / "profiles" / "slurm"), "--configfile", str(CLUSTER),
                       str(models), "--", "mrm_eval", cwd=folder)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout, folder


def test_the_cluster_dry_run_lists_every_job_with_its_gpus(cluster_dry_run):
    output, tmp_path = cluster_dry_run
    listed = jobs(output)
    config = yaml.safe_load(CLUSTER.read_text())
    replicates = len(config.get("replicates") or yaml.safe_load(DEFAULT.read_text())["replicates"])
    counts = Counter({rule: len(resources) for rule, resources in listed.items()})
    assert counts["sft_sampling"] == config["sampling"]["shards"] * replicates  # replicates re-draw the policy
    assert counts["sft"] == replicates and counts["base"] == 1  # a pretrained base model is shared
    assert counts["bon_sampling"] == config["bon"]["shards"] * replicates
    runs = len(config["rl"]["reward_models"]) + len(config["rl"]["kl_penalised"]["kl_coefs"])  # with the KL-penalised
    assert counts["ppo"] == runs * replicates and "ppo_tuning" not in counts  # a fixed learning rate: no tuning
    gpus = {kind: config["resources"][kind]["gpus"] for kind in ("sample", "train", "ppo", "score")}
    for rule, kind in (("sft_sampling", "sample"), ("bon_sampling", "sample"), ("rl_sampling", "sample"),
                       ("sft", "train"), ("train_rm", "train"), ("ppo", "ppo"), ("rm_check", "score")):
        assert all(f"gpu={gpus[kind]}" in line for line in listed[rule]), (rule, listed[rule][0])
    for rule in ("data", "preference_pairs", "gda", "report"):
        assert all("gpu=" not in line for line in listed[rule]), (rule, listed[rule][0])
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()  # nothing fetched or written


def test_cluster_jobs_ask_for_the_configs_cpus_whatever_this_machine_has(cluster_dry_run):
    """Snakemake caps a job's threads at --cores even for a Slurm job: the workflow profile (profiles/default,
    loaded under any --profile) must not set `cores: all`, which would cap them at this machine's cores."""
    output, _ = cluster_dry_run
    resources, threads = jobs(output), jobs(output, "threads")
    config = yaml.safe_load(CLUSTER.read_text())["resources"]
    assert config["ppo"]["cpus"] > (os.cpu_count() or 1)  # the case that was capped
    for rule, kind in (("ppo", "ppo"), ("train_rm", "train"), ("sft_sampling", "sample"), ("gda", "analysis")):
        cpus = config[kind]["cpus"]
        assert threads[rule] == [str(cpus)] * len(resources[rule]), (rule, threads[rule][0])
        for line in resources[rule]:
            asked = dict(item.split("=", 1) for item in line.split(", "))
            assert (asked["cpus_per_task"], asked["mem_mb"], asked["runtime"]) == (
                str(cpus), str(config[kind]["mem_mb"]), str(config[kind]["runtime"])), (rule, line)


def test_the_cluster_dag_renders(models, tmp_path):
    result = snakemake("-n", "--configfile", str(CLUSTER), str(models), "--dag", "mermaid-js", "--", "mrm_eval",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.lstrip().startswith("---") or "flowchart" in result.stdout
    for rule in ("sft_sampling", "ppo", "train_rm", "gda", "report"):
        assert rule in result.stdout
