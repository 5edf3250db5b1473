"""The RRM data stage: augmented, rm-labelled and filtered pairs (rules/rrm_data.smk).

The declarations of this stage's steps (see rmood/declaration.py); the functions are imported only when a step
runs, so this module stays cheap to import."""

from __future__ import annotations

from rmood.declaration import FileArg, Step

STEPS: dict[str, Step] = {
    "rrm_augment": Step(
        "rmood.rrm_data.augment:augment_pairs",
        "RRM: add non-contextual and neutral (tie) pairs to the training pairs",
        inputs=(FileArg("pairs", "explicit train pairs"),),
        outputs=(FileArg("out", "augmented pairs JSONL"),),
        config={"seed": "seed", "rrm": "rrm"},
    ),
    "rrm_label": Step(
        "rmood.rrm_data.label:label_pairs",
        "RRM: the trained rm's win probability for every augmented pair",
        inputs=(FileArg("model", "reward model directory"), FileArg("pairs", "augmented pairs JSONL")),
        outputs=(FileArg("out", "labelled pairs JSONL"),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "rrm_filter": Step(
        "rmood.rrm_data.filter:filter_pairs",
        "RRM: keep the augmented pairs the rm gets wrong by at least the threshold",
        inputs=(FileArg("labeled", "labelled pairs JSONL"),),
        outputs=(FileArg("out", "filtered pairs JSONL"), FileArg("stats", "pairs kept per type (JSON)")),
        config={"rrm": "rrm"},
    ),
}
