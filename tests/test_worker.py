"""The warm worker: jobs forked from one process give the same outputs as jobs in their own process, and
nothing of it outlives its run or serves another one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rmood import worker
from rmood.config import load_config
from rmood.steps import STEPS, settings


def up(process: subprocess.Popen, folder: Path) -> Path:
    """Wait until the worker in `folder` listens; returns its socket."""
    deadline = time.monotonic() + 120
    while not (sockets := list((folder / worker.FOLDER).glob("*.sock"))):
        assert process.poll() is None and time.monotonic() < deadline, "worker did not come up"
        time.sleep(0.2)
    return sockets[0]


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """A worker for the run in the folder `running.folder` (the jobs' working directory)."""
    folder = tmp_path_factory.mktemp("run")
    process = worker.start(str(folder / worker.FOLDER))
    path = up(process, folder)
    process.folder = folder
    yield process
    worker.stop(process)
    assert process.returncode == 0 and not path.exists()


def data_request(tmp_path: Path, name: str, cwd: Path, records: int = 20) -> dict:
    config = load_config(assignments=[f"data.sizes.sft={records}", "data.sizes.preference=10", "data.sizes.eval=4",
                                      "data.sizes.ood=4", "data.sizes.val=2"])
    paths = {"out": [str(tmp_path / name / f"{split}.jsonl") for split in
                     ("sft", "preference", "unlabeled", "val", "eval", "ood")]}
    return {"step": "data", "paths": paths, "settings": settings("data", config), "log": str(tmp_path / f"{name}.log"),
            "cwd": str(cwd), "threads": 1}


def long_request(tmp_path: Path, cwd: Path) -> dict:
    """A `data` job that runs far longer than the test: fifty million prompts."""
    return data_request(tmp_path, "long", cwd, records=50_000_000)


def submitting(request: dict, socket: Path) -> subprocess.Popen:
    """A job's process (as workflow_scripts/step.py is) submitting `request` to the worker at `socket`."""
    code = "import json, sys; from rmood import worker; sys.exit(worker.submit(json.loads(sys.argv[1])))"
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(request)], env=os.environ | {worker.SOCKET_ENV: str(socket)},
                            stderr=subprocess.PIPE, text=True)


def forked_child(process: subprocess.Popen) -> psutil.Process:
    """The one job child the worker `process` is running, once it runs."""
    deadline = time.monotonic() + 30
    while not (children := psutil.Process(process.pid).children()):
        assert time.monotonic() < deadline, "the worker forked no child"
        time.sleep(0.1)
    (child,) = children
    return child


def test_a_forked_job_writes_what_an_in_process_job_writes(running, tmp_path):
    request = data_request(tmp_path, "forked", running.folder)
    assert worker.submit(request) == 0
    local = data_request(tmp_path, "local", running.folder)
    STEPS["data"].run(local["paths"], local["settings"])
    for forked, own in zip(request["paths"]["out"], local["paths"]["out"]):
        assert Path(forked).read_bytes() == Path(own).read_bytes()
    assert "sft: 20 records" in Path(request["log"]).read_text()


def test_a_failing_job_reports_its_exit_code_and_traceback(running, tmp_path):
    request = data_request(tmp_path, "bad", running.folder)
    request["paths"]["out"] = request["paths"]["out"][:2]
    assert worker.submit(request) == 1
    assert "expected one output per split" in Path(request["log"]).read_text()


def test_without_a_worker_submit_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv(worker.SOCKET_ENV, str(tmp_path / worker.FOLDER / "absent.sock"))
    assert worker.submit(data_request(tmp_path, "none", tmp_path)) is None


def test_a_worker_of_another_folder_is_never_used(running, tmp_path):
    """The socket is live, but it serves another run's folder: the job runs in its own process instead."""
    assert worker.submit(data_request(tmp_path, "elsewhere", cwd=tmp_path)) is None
    assert not (tmp_path / "elsewhere").exists()


def test_killing_a_jobs_process_kills_its_forked_child(running, tmp_path):
    job = submitting(long_request(tmp_path, running.folder), Path(os.environ[worker.SOCKET_ENV]))
    child = forked_child(running)
    job.kill()
    job.wait()
    child.wait(timeout=10)  # gone (killed by the worker), not left running: else TimeoutExpired
    assert running.poll() is None  # the worker serves on
    assert worker.submit(data_request(tmp_path, "after", running.folder)) == 0


def test_a_worker_that_dies_mid_job_fails_the_job_clearly_and_takes_its_child(tmp_path, monkeypatch):
    monkeypatch.setenv(worker.SOCKET_ENV, "")  # restored afterwards: the module's worker serves on
    process = worker.start(str(tmp_path / worker.FOLDER))
    socket = up(process, tmp_path)
    job = submitting(long_request(tmp_path, tmp_path), socket)
    child = forked_child(process)
    process.kill()
    assert job.wait(timeout=30) != 0
    assert f"the rmood worker ({socket}) died while running step data" in job.stderr.read()
    child.wait(timeout=10)  # the child died with its worker (PR_SET_PDEATHSIG): else TimeoutExpired
    assert worker.submit(data_request(tmp_path, "rerun", tmp_path)) is None  # the next job runs on its own


def test_a_worker_exits_when_its_run_is_killed(tmp_path):
    """Snakemake killed with SIGKILL (no onerror): its worker notices and exits, its socket removed."""
    code = ("import sys, time; from rmood import worker; worker.start(sys.argv[1]); time.sleep(600)")
    run = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / worker.FOLDER)], start_new_session=True)
    deadline = time.monotonic() + 120
    while not (workers := psutil.Process(run.pid).children()) or not list((tmp_path / worker.FOLDER).glob("*.sock")):
        assert time.monotonic() < deadline, "worker did not come up"
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive and not list((tmp_path / worker.FOLDER).glob("*.sock"))


def test_processes_started_from_a_copy_of_the_checkout_run_the_copy(tmp_path):
    """The worker and a step's own process import the rmood that started them (rmood.job.checkout_environment), not
    the one installed in the venv: a copy of the checkout with an edit (bench/edit.py, a user's branch in another
    folder) runs its own code."""
    import shutil

    from conftest import ROOT

    shutil.copytree(ROOT / "rmood", tmp_path / "copy" / "rmood", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import subprocess, sys; sys.path.insert(0, sys.argv[1]); from rmood.job import checkout_environment; "
            "print(subprocess.run([sys.executable, '-c', 'import rmood; print(rmood.__file__)'], "
            "env=checkout_environment(), capture_output=True, text=True, check=True).stdout)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "copy")], capture_output=True, text=True,
                            check=True, cwd=tmp_path)
    assert result.stdout.strip() == str(tmp_path / "copy" / "rmood" / "__init__.py")
