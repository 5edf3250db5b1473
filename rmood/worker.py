"""A warm worker for local runs: torch, transformers and TRL are imported once, each job is a fork.

Importing the ML stack costs a Python process 4–6 s, while a step of the embedded study computes
for seconds. When Snakemake runs jobs on this machine, `start` launches one worker process that
imports the stack and then forks a child per job (copy-on-write: the child starts with everything
imported). The job's own process (`workflow_scripts/step.py`) only sends the request over a Unix
socket and waits for the child's exit status; if that process is killed, the worker kills the child.
Children run exactly the code an in-process job runs, so results are identical. Whether a run
starts a worker, and which steps may use it, is decided in `rmood.runner` (`use_worker`, `where`): never on a
cluster, with `worker: false` (or `RMOOD_WORKER=0`), or when rules run in software environments of their own
(`--sdm conda`/`apptainer`/`env-modules`); without a worker every job runs in its own process as usual.

Nothing outlives its run: the worker exits when Snakemake is gone, a child dies with the worker (Linux:
`PR_SET_PDEATHSIG`) and with its job's process, and a job only talks to the worker of its own folder
(`FOLDER`), so a worker left by another run or project is never used.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

SOCKET_ENV = "RMOOD_WORKER_SOCKET"
FOLDER = ".snakemake/rmood"  # the worker's socket, relative to the run's working directory
PRELOAD = (
    "torch",
    "transformers",
    "transformers.models.qwen3.modeling_qwen3",
    "trl",
    "datasets",
    "sklearn.covariance",
    "rmood.mrm.check",  # the MRM's GDA, representations, scoring and checks
)


class WorkerDied(RuntimeError):
    """The worker went away while a job of it was running."""


def preload() -> None:
    """Import what the steps import (PRELOAD, and the modules of the reward-model methods' model classes) before
    any job forks (no threads or devices are started)."""
    import importlib

    from rmood.rm.methods import registrations

    for module in (*PRELOAD, *(target.split(":")[0] for target in registrations())):
        importlib.import_module(module)


def run_child(request: dict[str, Any], worker: int) -> int:
    """In the forked child: run one step as an in-process job runs it (`rmood.job.run`: output and traceback in
    the job's log); returns the exit code."""
    from rmood import job

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.setpgid(0, 0)
    die_with(worker)
    os.chdir(request["cwd"])
    try:
        job.run(request)
        return 0
    except BaseException:  # noqa: BLE001 (its traceback is in the job's log)
        return 1


def die_with(worker: int) -> None:
    """Have the kernel SIGKILL this forked child when its parent, the worker, dies (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != worker:  # the worker died before prctl took effect
            os._exit(1)


def kill(pid: int) -> None:
    """Kill a child and everything it started (its process group)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def serve(path: str) -> None:
    """Accept job requests on the Unix socket `path` until SIGTERM or until the parent (Snakemake) is gone."""
    parent, me = os.getppid(), os.getpid()
    preload()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    Path(path).unlink(missing_ok=True)
    server.bind(path)
    server.listen()
    jobs: dict[int, socket.socket] = {}  # child pid -> the connection of the job that asked for it

    def stop(*_: Any) -> None:
        for pid in jobs:
            kill(pid)
        Path(path).unlink(missing_ok=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    while os.getppid() == parent:
        readable, _, _ = select.select([server, *jobs.values()], [], [], 0.2)
        for conn in readable:
            if conn is server:
                client, _ = server.accept()
                request = json.loads(client.makefile("r", encoding="utf-8").readline())
                pid = os.fork()
                if pid == 0:
                    server.close()
                    os._exit(run_child(request, worker=me))
                try:
                    os.setpgid(pid, pid)  # also done by the child: whichever runs first
                except OSError:
                    pass
                jobs[pid] = client
            else:  # the job's process went away before its child finished: stop the child
                kill(next(p for p, c in jobs.items() if c is conn))
        while jobs:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            client = jobs.pop(pid)
            try:
                client.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
            except OSError:
                pass
            client.close()
    stop()


def submit(request: dict[str, Any]) -> int | None:
    """Run a step in the worker and return its exit code, or None when no worker of this run's folder is
    listening; raises WorkerDied when the worker goes away before the step ends."""
    path = os.environ.get(SOCKET_ENV)
    if not path or not Path(path).exists() or Path(path).resolve().parent != (Path(request["cwd"]) / FOLDER).resolve():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        return None
    with conn:
        conn.sendall((json.dumps(request) + "\n").encode())
        reply = conn.makefile("r", encoding="utf-8").readline()
    if not reply.strip():
        raise WorkerDied(f"the rmood worker ({path}) died while running step {request['step']}; "
                         "rerun: jobs then run in their own processes until a new worker is up")
    return int(reply)


def start(folder: str = FOLDER) -> subprocess.Popen:
    """Launch a worker listening in `folder` and point the jobs this process starts at it (`SOCKET_ENV`).

    Jobs that start before the worker has imported everything simply run in their own process.
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = str(Path(folder).resolve() / f"worker-{os.getpid()}.sock")
    from rmood.job import checkout_environment

    process = subprocess.Popen([sys.executable, "-m", "rmood.worker", path], stdin=subprocess.DEVNULL,
                               start_new_session=True, env=checkout_environment())
    os.environ[SOCKET_ENV] = path
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)
    os.environ.pop(SOCKET_ENV, None)


if __name__ == "__main__":
    serve(sys.argv[1])
