"""Safe by default: the project's own code never enables remote code, pickles or shell strings."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT

SOURCES = sorted(
    [*ROOT.glob("rmood/**/*.py"), *ROOT.glob("workflow_scripts/*.py"), *ROOT.glob("bench/*.py"),
     *ROOT.glob("rules/*.smk"), ROOT / "Snakefile"]
)
FORBIDDEN = {
    "remote code": re.compile(r"trust_remote_code\s*=\s*True"),
    "pickle": re.compile(r"^\s*(import pickle|from pickle import|import cloudpickle|import dill)", re.M),
    "pickled numpy": re.compile(r"allow_pickle\s*=\s*True"),
    "np.load without allow_pickle=False": re.compile(r"np\.load\((?![^)]*allow_pickle=False)[^)]*\)"),
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only=True)[^)]*\)"),
    "shell strings": re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\("),
    "shell directive": re.compile(r"^\s*shell:", re.M),
    "printed token": re.compile(r"print\([^)]*(HF_TOKEN|WANDB_API_KEY|token|api_key)[^)]*\)", re.I),
}


def test_sources_are_found():
    assert len(SOURCES) > 20


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_no_unsafe_pattern(name):
    pattern = FORBIDDEN[name]
    hits = [f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}"
            for path in SOURCES for text in [path.read_text(encoding="utf-8")] for m in pattern.finditer(text)]
    assert not hits, f"{name}: {hits}"


def test_the_scan_catches_what_it_looks_for():
    assert FORBIDDEN["remote code"].search("AutoModel.from_pretrained(p, trust_remote_code=True)")
    assert FORBIDDEN["np.load without allow_pickle=False"].search("x = np.load(path)")
    assert not FORBIDDEN["np.load without allow_pickle=False"].search("np.load(path, allow_pickle=False)")
    assert FORBIDDEN["torch.load without weights_only=True"].search("torch.load(f)")
    assert FORBIDDEN["shell strings"].search("subprocess.run(cmd, shell=True)")
    assert FORBIDDEN["printed token"].search('print(f"key: {os.environ[judge[\'api_key_env\']]}")')
