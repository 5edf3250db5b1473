"""What the project ships besides code: the licence, the citation entry and the changelog agree with pyproject.toml."""

import hashlib
import tomllib

import yaml

from conftest import ROOT

APACHE_2 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"  # apache.org/licenses/LICENSE-2.0.txt


def test_the_licence_is_the_apache_2_text_pyproject_names():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "Apache-2.0"
    assert hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest() == APACHE_2


def test_the_citation_entry_matches_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert {"title", "message", "authors", "abstract"} <= citation.keys() and citation["authors"]
    assert str(citation["version"]) == project["version"] and citation["license"] == project["license"]


def test_the_changelog_starts_with_what_is_unreleased():
    lines = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8").splitlines()
    headings = [line for line in lines if line.startswith("## ")]
    assert lines[0] == "# Changelog" and headings[0] == "## [Unreleased]"
    assert all(line[4:] in ("Added", "Changed", "Fixed", "Removed", "Deprecated", "Security")
               for line in lines if line.startswith("### "))
