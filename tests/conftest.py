"""Shared fixtures: an offline environment, a tiny base model and the end-to-end study, each built once per session."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(
    vocab_size=320,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=16,
    max_position_embeddings=256,
)


@pytest.fixture(scope="session")
def prompt_data(tmp_path_factory) -> dict[str, Path]:
    """Small synthetic splits written as JSONL (sft, preference, ood)."""
    from rmood.data.synthetic import generate_splits
    from rmood.io import write_jsonl

    folder = tmp_path_factory.mktemp("data")
    sizes = {"sft": 64, "preference": 24, "unlabeled": 0, "val": 0, "eval": 8, "ood": 8}
    splits = generate_splits(
        0, sizes, list(("reverse", "sort", "add", "repeat")), ["repeat"], 2, 4, 0.3
    )
    paths = {}
    for split in ("sft", "preference", "ood"):
        paths[split] = folder / f"{split}.jsonl"
        write_jsonl(paths[split], splits[split])
    return paths


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, prompt_data) -> Path:
    """A tiny Qwen3 causal LM with its trained tokenizer (random weights)."""
    from rmood.sft.base import make_base

    out = tmp_path_factory.mktemp("models") / "base"
    make_base([str(prompt_data["sft"]), str(prompt_data["preference"])], out, 0, {"source": "tiny", "tiny": TINY})
    return out


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread inside the block: floats add in the same order on any machine (as in a killed child
    started with OMP_NUM_THREADS=1), and small ops do not wait on each other's threads on a busy CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """`one_torch_thread` for the whole test."""
    pytest.importorskip("torch")
    with one_torch_thread():
        yield


# --- the Snakemake DAG on the test-sized config (.test/config.yaml) -------------------------------

EXPERIMENT = "test"


def snakemake(workdir: Path, *args: str, overrides: str | None = None) -> subprocess.CompletedProcess:
    """Run snakemake on the test config, plus a YAML snippet of `overrides` merged over it."""
    configfiles = [str(ROOT / ".test" / "config.yaml")]
    if overrides:
        (workdir / "overrides.yaml").write_text(overrides)
        configfiles.append(str(workdir / "overrides.yaml"))
    result = run_snakemake(workdir, "--configfile", *configfiles, "--cores", "2", *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def run_snakemake(workdir: Path, *args: str, timeout: float = 900, env: dict[str, str] | None = None,
                  snakefile: Path = ROOT / "Snakefile") -> subprocess.CompletedProcess:
    """`snakemake --directory workdir *args` on this checkout's Snakefile (or `snakefile`), in `env` (default: this
    process's), with the venv's bin first on PATH."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir), *args]
    env = env or dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def scheduled(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule name -> job count, from the 'Job stats' table of a dry run."""
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:")[1].split("Reasons:")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by path relative to it."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@dataclass
class Study:
    workdir: Path  # the study folder (results/, logs/, benchmarks/, .snakemake/)
    digests: dict[str, str]  # of results/<experiment>/ right after the build: later tests change the study


@pytest.fixture(scope="session")
def e2e_study(tmp_path_factory) -> Study:
    """The whole DAG (target mrm_eval) built once, shared by the workflow and determinism tests."""
    workdir = tmp_path_factory.mktemp("study")
    snakemake(workdir, "mrm_eval")
    return Study(workdir, digests(workdir / "results" / EXPERIMENT))
