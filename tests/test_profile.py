"""`python -m rmood profile` (`make profile`): profiles/slurm as the user's `slurm` profile, in a temporary HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PROFILE = ROOT / "profiles" / "slurm"


def environment(home: Path, xdg: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"} | {"HOME": str(home)}
    return env | {"XDG_CONFIG_HOME": str(xdg)} if xdg else env


def link(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmood", "profile", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def dry_run(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """`snakemake -n --profile slurm` as typed, from a folder without a `slurm` of its own."""
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "-n",
                           "--profile", "slurm", "results/embedded/data/sft.jsonl"], cwd=cwd,
                          env=env | {"RMOOD_WORKER": "0"}, capture_output=True, text=True, timeout=300)


def test_the_profile_is_linked_once_and_snakemake_finds_it_as_slurm(tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = environment(home)
    unlinked = dry_run(env, work)
    assert unlinked.returncode != 0 and "profile directory given (slurm), but no" in unlinked.stderr
    first, again = link(env), link(env)
    profile = home / ".config" / "snakemake" / "slurm"
    assert first.returncode == 0 and first.stdout.startswith("linked: "), first.stderr
    assert profile.is_symlink() and profile.resolve() == PROFILE.resolve()
    assert again.returncode == 0 and again.stdout.startswith("already linked: "), again.stderr  # idempotent
    assert profile.readlink() == PROFILE.resolve()

    result = dry_run(env, work)  # the Slurm executor's resources are listed
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Using profiles slurm and workflow specific profile" in result.stderr
    assert "slurm_partition=" in result.stdout and "cpus_per_task=" in result.stdout


def test_xdg_config_home_is_where_the_link_goes(tmp_path):
    result = link(environment(tmp_path / "home", tmp_path / "xdg"), "--name", "rmood")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "xdg" / "snakemake" / "rmood").resolve() == PROFILE.resolve()
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("existing", ["folder", "other link", "dangling link"])
def test_a_different_profile_is_never_overwritten(tmp_path, existing):
    profile = tmp_path / "xdg" / "snakemake" / "slurm"
    profile.parent.mkdir(parents=True)
    if existing == "folder":
        profile.mkdir()
        (profile / "config.yaml").write_text("executor: slurm\n")
    else:
        target = tmp_path / ("other" if existing == "other link" else "gone")
        if existing == "other link":
            target.mkdir()
        profile.symlink_to(target)
    before = sorted(p.name for p in profile.parent.iterdir()), profile.is_symlink() and profile.readlink()
    result = link(environment(tmp_path / "home", tmp_path / "xdg"))
    assert result.returncode == 1
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"rmood profile: {profile} exists and is ")
    assert "not a link to" in result.stderr and "--name" in result.stderr
    assert (sorted(p.name for p in profile.parent.iterdir()), profile.is_symlink() and profile.readlink()) == before
    if existing == "folder":
        assert (profile / "config.yaml").read_text() == "executor: slurm\n"
