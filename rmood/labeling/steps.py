"""The labeling stage: gold labels of the samples and the preference pairs (rules/labeling.smk).

The declarations of this stage's steps (see rmood/declaration.py); the functions are imported only when a step
runs, so this module stays cheap to import."""

from __future__ import annotations

from rmood.declaration import FileArg, Step

STEPS: dict[str, Step] = {
    "gold": Step(
        "rmood.labeling.gold:label_gold",
        "gold score of every sampled response",
        inputs=(FileArg("samples", "samples JSONL"), FileArg("prompt_files", "prompt JSONL files", many=True)),
        outputs=(FileArg("out", "gold labels JSONL"),),
        config={"gold": "gold", "judge": "judge", "dtype": "model.dtype"},
    ),
    "pairs": Step(
        "rmood.labeling.pairs:make_pairs",
        "preference pairs (train/test/ood, explicit and implicit formats)",
        inputs=(
            FileArg("samples", "samples JSONL"),
            FileArg("gold_labels", "gold labels JSONL"),
            FileArg("preference", "preference split JSONL"),
            FileArg("ood", "ood split JSONL"),
        ),
        outputs=(FileArg("out", "{train,test,ood,golden}.{explicit,implicit}.jsonl", many=True),),
        config={"seed": "seed", "pairs": "pairs", "annotator": "annotator", "judge": "judge"},
        options={"replicate": int},
    ),
}
