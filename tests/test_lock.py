"""Two runs on one folder, and the lock a killed run leaves (`python -m rmood unlock`, run by `make study`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = """
import time

rule study:  # Snakemake locks the files a run reads and writes: a second run of the same target collides
    output: "study.txt"
    run:
        time.sleep(config.get("seconds", 0))
        open(output[0], "w").close()
"""


def snakemake(folder: Path, *config: str, wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    command = [sys.executable, "-m", "snakemake", "--cores", "1", "study", "--config", *config]
    if not wait:
        return subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)


def unlock(folder: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rmood", "unlock"], cwd=folder, capture_output=True, text=True,
                          timeout=120, env=env)


def locks(folder: Path) -> list[Path]:
    return sorted((folder / ".snakemake" / "locks").glob("*.lock"))


@pytest.fixture
def running(tmp_path):
    """A Snakemake run busy in `tmp_path` (it holds the lock, its job has started); killed with SIGKILL, the whole
    group, at the end."""
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    run = snakemake(tmp_path, "seconds=600", wait=False)
    deadline = time.monotonic() + 60
    while not locks(tmp_path) or not any((tmp_path / ".snakemake" / "incomplete").glob("*")):
        assert run.poll() is None and time.monotonic() < deadline, "the first run did not lock the folder"
        time.sleep(0.2)
    yield run
    if run.poll() is None:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()


def state(folder: Path) -> dict[Path, bytes]:
    """Every file of the folder and its content, but Snakemake's logs (each invocation writes its own)."""
    log = folder / ".snakemake" / "log"
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and log not in p.parents}


def test_a_second_run_is_refused_and_changes_nothing(running, tmp_path):
    before = state(tmp_path)
    second = snakemake(tmp_path)
    assert second.returncode != 0 and "Directory cannot be locked" in second.stderr + second.stdout
    assert "--unlock" in second.stderr + second.stdout  # Snakemake says what to do if no run is alive
    assert state(tmp_path) == before and running.poll() is None


def test_unlock_refuses_while_a_run_is_alive(running, tmp_path):
    held = locks(tmp_path)
    result = unlock(tmp_path)
    assert result.returncode == 1
    assert f"a Snakemake run is alive in {tmp_path} (pid {running.pid}" in result.stderr
    assert locks(tmp_path) == held and running.poll() is None


def test_the_lock_of_a_killed_run_is_released_and_the_rerun_goes_through(running, tmp_path):
    os.killpg(running.pid, signal.SIGKILL)
    running.wait()
    assert locks(tmp_path)  # the killed run left its lock: a plain rerun stops on it
    assert "Directory cannot be locked" in snakemake(tmp_path).stderr
    result = unlock(tmp_path)
    assert result.returncode == 0 and "unlocked" in result.stdout
    assert not locks(tmp_path)
    assert snakemake(tmp_path).returncode == 0 and (tmp_path / "study.txt").exists()
    assert unlock(tmp_path).stdout == ""  # no lock: nothing to do, nothing said
