"""Faults of the whole run: the test-sized study killed with SIGKILL at random moments, and a disk that fills
mid-run. Either way the rerun finishes with every artifact byte-identical to an uninterrupted build
(conftest.e2e_study) and nothing of the interrupted run is left running or serves the next one."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import EXPERIMENT, ROOT, digests
from test_io import write_full_disk

pytestmark = pytest.mark.e2e

KILLS = 3
SEED = 20261130
FIRST, LAST = 4.0, 40.0  # seconds after a start when a kill may come: the test-sized build takes 90 s or more


def snakemake(workdir: Path) -> list[str]:
    """What `make study` runs (after `python -m rmood unlock`), on the test config."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--profile", str(ROOT / "profiles" / "default"), "--cores", "2", "mrm_eval",
            "--configfile", str(ROOT / ".test" / "config.yaml")]


def environment() -> dict[str, str]:
    return os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                         "PYTHONPATH": str(ROOT)}


def unlock(workdir: Path) -> str:
    """`python -m rmood unlock` in `workdir`, as `make study` runs it first; returns what it printed."""
    result = subprocess.run([sys.executable, "-m", "rmood", "unlock"], cwd=workdir, env=environment(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def of_run(workdir: Path) -> list[psutil.Process]:
    """Every live process working in `workdir` or naming it: Snakemake, its jobs, the worker and its children."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        info = process.info
        if (info["cwd"] and Path(info["cwd"]) == workdir) or any(str(workdir) in part for part in info["cmdline"] or ()):
            found.append(process)
    return found


def kill_run(run: subprocess.Popen, workdir: Path) -> int:
    """SIGKILL the run's process group and every process the run started (the worker has a session of its own);
    returns how many processes were killed."""
    victims = {p.pid: p for p in [*psutil.Process(run.pid).children(recursive=True), *of_run(workdir)]}
    os.killpg(run.pid, signal.SIGKILL)
    for process in victims.values():
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    run.wait()
    return len(victims) + 1


def test_a_run_killed_at_random_moments_reruns_to_the_same_bytes(e2e_study, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("chaos")
    rng = random.Random(SEED)
    for kill in range(KILLS):
        assert (kill > 0) == ("unlocked" in unlock(workdir))  # each kill leaves Snakemake's lock behind
        run = subprocess.Popen(snakemake(workdir), env=environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(FIRST, LAST))
        assert run.poll() is None, "the run ended before its kill: move the kill moments earlier"
        kill_run(run, workdir)
        time.sleep(1)  # a forked job child dies with its worker; the worker was killed outright
        assert of_run(workdir) == [], "a process of the killed run is still alive"
    assert "unlocked" in unlock(workdir)
    result = subprocess.run(snakemake(workdir), env=environment(), capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rebuilt = digests(workdir / "results" / EXPERIMENT)
    assert sorted(rebuilt.keys() ^ e2e_study.digests.keys()) == []
    assert sorted(name for name in rebuilt if rebuilt[name] != e2e_study.digests[name]) == []


FULL_DISK_RUN = """
import json, os, subprocess, sys
workdir, size, command = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
results = f"{workdir}/results"
subprocess.run(["mount", "-o", f"remount,size={size}", "tmpfs", results], check=True)
first = subprocess.run(command, capture_output=True, text=True)
import hashlib, pathlib
root = pathlib.Path(results) / sys.argv[4]
kept = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
subprocess.run(["mount", "-o", "remount,size=2g", "tmpfs", results], check=True)  # space freed
second = subprocess.run(command, capture_output=True, text=True)
rebuilt = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
print(json.dumps({"first": [first.returncode, first.stdout + first.stderr], "kept": kept,
                  "second": [second.returncode, (second.stdout + second.stderr)[-3000:]], "rebuilt": rebuilt}))
"""


def test_a_disk_that_fills_mid_run_names_the_output_and_the_rerun_completes(e2e_study, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    results = workdir / "results"
    results.mkdir()
    # write_full_disk mounts a tiny tmpfs on `results` in a mount namespace of its own; the script then sizes it to
    # 20 MB (less than half of what the study writes), runs the study, frees space and runs it again
    outcome = write_full_disk(results, ["-c", FULL_DISK_RUN, str(workdir), "20m", json.dumps(snakemake(workdir)),
                                        EXPERIMENT], timeout=1800)
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    report = json.loads(outcome.stdout.splitlines()[-1])
    code, log = report["first"]
    assert code != 0
    # the failing job names what it was writing and why (paths as the rules give them: relative to the study folder)
    assert re.search(rf"cannot write results/{EXPERIMENT}/\S+: No space left on device \(the file system of "
                     rf"results/{EXPERIMENT}/\S+ is full\)", log), log[-3000:]
    finished = {name: digest for name, digest in report["kept"].items() if name in e2e_study.digests}
    assert len(finished) > 10  # the study got somewhere before the disk filled
    assert {name: e2e_study.digests[name] for name in finished} == finished  # earlier artifacts intact
    assert report["second"][0] == 0, report["second"][1]
    assert report["rebuilt"] == e2e_study.digests
