"""`python -m rmood.job REQUEST.json`: run one step from a request written by `rmood.cli.run_job`.

Used when a step runs in a process of its own: in another interpreter (a step with its own software
stack, `environments.<env>`) or as each process of `accelerate launch` (`training.launcher`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rmood.steps import STEPS


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m rmood.job REQUEST.json")
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    STEPS[request["step"]].run(request["paths"], request["settings"])


if __name__ == "__main__":
    main(sys.argv[1:])
