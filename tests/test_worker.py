"""The warm worker: jobs forked from one process give the same outputs as jobs in their own process."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rmood import worker
from rmood.config import load_config
from rmood.steps import STEPS, settings


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    folder = tmp_path_factory.mktemp("worker")
    process = worker.start(str(folder))
    path = Path(os.environ[worker.SOCKET_ENV])
    deadline = time.monotonic() + 120
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, "worker did not come up"
        time.sleep(0.2)
    yield process
    worker.stop(process)
    assert process.returncode == 0 and not path.exists()


def data_request(tmp_path: Path, name: str) -> dict:
    config = load_config(assignments=["data.sizes.sft=20", "data.sizes.preference=10", "data.sizes.eval=4",
                                      "data.sizes.ood=4", "data.sizes.val=2"])
    paths = {"out": [str(tmp_path / name / f"{split}.jsonl") for split in
                     ("sft", "preference", "unlabeled", "val", "eval", "ood")]}
    return {"step": "data", "paths": paths, "settings": settings("data", config), "log": str(tmp_path / f"{name}.log"),
            "cwd": str(tmp_path), "threads": 1}


def test_a_forked_job_writes_what_an_in_process_job_writes(running, tmp_path):
    request = data_request(tmp_path, "forked")
    assert worker.submit(request) == 0
    local = data_request(tmp_path, "local")
    STEPS["data"].run(local["paths"], local["settings"])
    for forked, own in zip(request["paths"]["out"], local["paths"]["out"]):
        assert Path(forked).read_bytes() == Path(own).read_bytes()
    assert "sft: 20 records" in Path(request["log"]).read_text()


def test_a_failing_job_reports_its_exit_code_and_traceback(running, tmp_path):
    request = data_request(tmp_path, "bad")
    request["paths"]["out"] = request["paths"]["out"][:2]
    assert worker.submit(request) == 1
    assert "expected one output per split" in Path(request["log"]).read_text()


def test_without_a_worker_submit_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv(worker.SOCKET_ENV, str(tmp_path / "absent.sock"))
    assert worker.submit(data_request(tmp_path, "none")) is None
