"""The data stage: the normalised prompt splits (rules/data.smk).

The declarations of this stage's steps (see rmood/declaration.py); the functions are imported only when a step
runs, so this module stays cheap to import."""

from __future__ import annotations

from rmood.declaration import FileArg, Step

STEPS: dict[str, Step] = {
    "data": Step(
        "rmood.data.prepare:prepare_data",
        "write the normalised prompt splits data/<split>.jsonl",
        inputs=(),
        outputs=(FileArg("out", "one <split>.jsonl per split", many=True),),
        config={"seed": "seed", "data": "data"},
    ),
}
