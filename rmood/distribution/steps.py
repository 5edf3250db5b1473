"""The distribution analysis: representations of many samples per prompt and the figures (rules/distribution.smk).

The declarations of this stage's steps (see rmood/declaration.py); the functions are imported only when a step
runs, so this module stays cheap to import."""

from __future__ import annotations

from rmood.declaration import FileArg, Step

STEPS: dict[str, Step] = {
    "dist_prompts": Step(
        "rmood.distribution.inputs:select_prompts",
        "the analysed eval prompts, one file per prompt id",
        inputs=(FileArg("prompts", "eval split JSONL"),),
        outputs=(FileArg("out", "<prompt_id>.jsonl files", many=True),),
        config={},
    ),
    "dist_representations": Step(
        "rmood.distribution.inputs:sample_representations",
        "the reward model's representation of every sampled response",
        inputs=(
            FileArg("model", "reward model directory"),
            FileArg("samples", "samples JSONL"),
            FileArg("prompt_files", "prompt JSONL files", many=True),
        ),
        outputs=(FileArg("out", "representations (.npy)"),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "score_weight": Step(
        "rmood.distribution.inputs:score_weight",
        "the reward model's reward direction in representation space",
        inputs=(FileArg("model", "reward model directory"),),
        outputs=(FileArg("out", "weight.npy"),),
        config={"dtype": "model.dtype"},
    ),
    "dist_pca": Step(
        "rmood.distribution.visualize:prompt_pca_plot",
        "PCA of each prompt's sampled representations, coloured by reward, with the reward direction",
        inputs=(
            FileArg("representations", "representation_<prompt>.npy files", many=True),
            FileArg("rewards", "rewards_<prompt>.jsonl files", many=True),
            FileArg("weight", "weight.npy"),
        ),
        outputs=(FileArg("out_png", "figure"), FileArg("out_json", "numbers behind it")),
        config={"seed": "seed"},
    ),
    "tsne": Step(
        "rmood.distribution.visualize:tsne_plot",
        "t-SNE of chosen vs rejected training representations",
        inputs=(FileArg("chosen", "chosen.npy"), FileArg("rejected", "rejected.npy"), FileArg("weight", "weight.npy")),
        outputs=(FileArg("out_png", "figure"), FileArg("out_json", "numbers behind it")),
        config={"seed": "seed", "max_points": "distribution.tsne_points", "pair_centre": "distribution.pair_centre"},
    ),
    "pca_mode": Step(
        "rmood.distribution.visualize:pca_plot",
        "PCA of the training representations after a transform (pair, prompt_subtract, w_projection, ...)",
        inputs=(
            FileArg("chosen", "chosen.npy"),
            FileArg("rejected", "rejected.npy"),
            FileArg("message", "message.npy"),
            FileArg("weight", "weight.npy"),
        ),
        outputs=(FileArg("out_png", "figure"), FileArg("out_json", "numbers behind it")),
        config={"seed": "seed"},
        options={"mode": str},
    ),
    "difference": Step(
        "rmood.distribution.visualize:difference_plot",
        "PCA of chosen − rejected differences, a Gaussianity test and the reward margins",
        inputs=(FileArg("chosen", "chosen.npy"), FileArg("rejected", "rejected.npy"), FileArg("weight", "weight.npy")),
        outputs=(FileArg("out_png", "figure"), FileArg("out_json", "numbers behind it")),
        config={"seed": "seed"},
    ),
    "center": Step(
        "rmood.distribution.visualize:center_plot",
        "inner products of the pair centres with the reward direction",
        inputs=(FileArg("chosen", "chosen.npy"), FileArg("rejected", "rejected.npy"), FileArg("weight", "weight.npy")),
        outputs=(FileArg("out_png", "figure"), FileArg("out_json", "numbers behind it")),
        config={},
    ),
}
