"""The workflow passes Snakemake's linter and snakefmt, and parses fast without importing torch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT

BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)


def test_snakemake_lint():
    result = run(str(BIN / "snakemake"), "--lint")
    assert result.returncode == 0 and "Congratulations" in result.stdout + result.stderr, result.stdout + result.stderr


def test_snakefmt():
    result = run(str(BIN / "snakefmt"), "--check", "Snakefile", "rules")
    assert result.returncode == 0, result.stdout + result.stderr


def test_parsing_imports_no_torch():
    """What the rule files import from rmood, and the CLI, load none of torch, transformers, SciPy or matplotlib
    (SciPy alone took 0.7 s when `rules/common.smk` imported a constant from the report module)."""
    imports = [line for path in sorted((ROOT / "rules").glob("*.smk")) for line in path.read_text().splitlines()
               if re.match(r"(from rmood[ .]|import rmood)", line)]
    assert any("PLOTS" in line for line in imports)  # the lines read are the rule files' imports
    code = "\n".join(["import sys, snakemake.api as api", "sys.path.insert(0, '.')", *imports,
                      "import rmood.cli, rmood.runner",
                      "heavy = {'torch', 'transformers', 'scipy', 'matplotlib'} & set(sys.modules)",
                      "assert not heavy, f'heavy import at parse time: {heavy}'"])
    result = run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    start = time.perf_counter()
    result = run(str(BIN / "snakemake"), "mrm_eval", "-n", "--quiet", "all")
    assert result.returncode == 0, result.stderr
    print(f"dry run of mrm_eval: {time.perf_counter() - start:.2f} s")
