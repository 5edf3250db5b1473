"""Run one step from a request: `{"step", "paths", "settings", "log", "threads"}` (built by `rmood.runner.run_job`).

`run` is how a step runs in this process with its output in the job's log: in the rule's own process, or in a
child forked by the warm worker (`rmood.worker`) — the one log redirection of the project. `python -m rmood.job
REQUEST.json` is how it runs in a process of its own (`rmood.runner.own_process`): another interpreter
(`environments.<env>`) or each process of `accelerate launch`; its parent sends that process's output to the log.
Which of these a job gets is decided in `rmood.runner`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rmood import arithmetic
from rmood.steps import STEPS

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_environment(threads: int) -> dict[str, str]:
    """The environment variables that give the libraries a process loads `threads` threads each."""
    return {name: str(threads) for name in THREAD_VARIABLES}


def checkout_environment() -> dict[str, str]:
    """This process's environment with the rmood it runs importable first: a process started with it (a step's own
    process, the warm worker) runs the same code, a copy of the checkout's too, not an installed rmood."""
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}


def limit_threads(threads: int) -> None:
    """Compute with as many threads as the job has (a cluster node may have many more cores): torch and the
    BLAS libraries, through the environment for those not loaded yet and directly for those already loaded."""
    os.environ.update(thread_environment(threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "numpy" in sys.modules:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)


@contextlib.contextmanager
def output_to(log: str) -> Iterator[None]:
    """Send this process's stdout and stderr (Python and C level, tqdm included) to `log`, line-buffered, and a
    traceback of what fails inside to `log` too; both are restored afterwards."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds, saved_streams = (os.dup(1), os.dup(2)), (sys.stdout, sys.stderr)
    with open(log, "w", encoding="utf-8") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", closefd=False)
    try:
        yield
    except BaseException:
        traceback.print_exc()  # into the log, where the job's reader looks
        raise
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        os.close(saved_fds[0])
        os.close(saved_fds[1])


def run(request: dict[str, Any]) -> None:
    """Run the request's step in this process with its output in the request's log; raises what the step raises."""
    limit_threads(request["threads"])
    with output_to(request["log"]):
        start = time.perf_counter()
        STEPS[request["step"]].run(request["paths"], request["settings"])
        # read by bench/study.py
        print(f"rmood: {request['step']} computed in {time.perf_counter() - start:.2f} s", *arithmetic.summary(),
              sep="\n")


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m rmood.job REQUEST.json")
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    STEPS[request["step"]].run(request["paths"], request["settings"])


if __name__ == "__main__":
    main(sys.argv[1:])
