"""Snakemake's lock on a project folder: held by a live run, or left behind by a killed one.

Snakemake locks the folder while it runs and unlocks it when it ends; a run killed with SIGKILL (a
login node that reboots, an allocation that ends) leaves the lock, and the next run stops on it.
`release_stale` tells the two apart by looking for a live Snakemake process (or a job or worker of
one) working in the folder, and unlocks only when there is none.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

LOCKS = Path(".snakemake") / "locks"


class LockHeld(RuntimeError):
    """A live run holds the folder's lock."""


def live_runs(folder: Path) -> list[psutil.Process]:
    """Processes other than this one that work in `folder` and belong to a Snakemake run: Snakemake itself,
    its jobs (`.snakemake/scripts/…`) and the rmood worker (`.snakemake/rmood/…`)."""
    folder = folder.resolve()
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        info = process.info
        if info["pid"] == os.getpid() or not info["cwd"] or Path(info["cwd"]) != folder:
            continue
        if any("snakemake" in part for part in info["cmdline"] or ()):
            found.append(process)
    return found


def release_stale(folder: Path = Path(".")) -> bool:
    """Unlock `folder` when a killed run left Snakemake's lock there; True when it did, False when there was
    no lock. Raises LockHeld (and changes nothing) when a live run holds it."""
    locks = list((folder / LOCKS).glob("*.lock"))
    if not locks:
        return False
    if runs := live_runs(folder):
        pids = ", ".join(str(p.pid) for p in runs)
        raise LockHeld(f"a Snakemake run is alive in {folder.resolve()} (pid {pids}): let it finish or stop it; "
                       "its lock stays")
    for lock in locks:  # what `snakemake --unlock` does, without parsing a workflow
        lock.unlink(missing_ok=True)
    return True
