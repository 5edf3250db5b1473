"""The documentation site builds as `make docs` builds it, with every warning an error, from pages that generate what
can be generated: the configuration reference and the DAG are included, not copied; the README stays short."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT

PAGES = ["index", "getting-started", "study", "outputs", "ppo", "workflow", "methods", "configuration", "running", "results",
         "reliability", "performance", "design", "layout", "api"]


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    """`make docs` in `root`, the site in `site`, with this interpreter's venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(["make", "-s", "docs", f"DOCS_SITE={site}"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_site_builds_without_a_warning(tmp_path):
    result = build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "WARNING" not in result.stderr
    nav = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)["nav"]
    listed = {page[:-3] for entry in nav for value in entry.values()
              for page in ([value] if isinstance(value, str) else [v for item in value for v in item.values()])}
    assert listed == set(PAGES) == {p.stem for p in (ROOT / "docs").glob("*.md")}
    html = {page: (tmp_path / "site" / ("" if page == "index" else page) / "index.html").read_text(encoding="utf-8")
            for page in PAGES}
    assert "outlier_quantile" in html["configuration"]  # config/README.md, included
    assert "flowchart" in html["workflow"] and "ppo_distance" in html["workflow"]  # the DAG of this checkout
    assert "GDAHead" in html["api"] and "choose_stop_share" in html["api"]  # from the docstrings
    assert "make study" in html["getting-started"] and "Mahalanobis RM" in html["index"]  # the README's sections


def test_a_broken_link_fails_the_build(tmp_path):
    """The build is strict: a page linking to a page that does not exist stops it."""
    root = tmp_path / "root"
    root.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in ("docs", ".snakemake", "results", "site"):  # .venv too: make docs needs no setup
            (root / entry.name).symlink_to(entry)
    shutil.copytree(ROOT / "docs", root / "docs", ignore=shutil.ignore_patterns("dag.mmd*"))
    with (root / "docs" / "ppo.md").open("a", encoding="utf-8") as f:
        f.write("\nSee [the missing page](missing.md).\n")
    result = build(root, tmp_path / "site")
    assert result.returncode != 0 and "missing.md" in result.stdout + result.stderr


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250
