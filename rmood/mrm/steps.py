"""The MRM stage: representations, GDA, the exported MRM and its checks (rules/mrm.smk).

The declarations of this stage's steps (see rmood/declaration.py); the functions are imported only when a step
runs, so this module stays cheap to import."""

from __future__ import annotations

from rmood.declaration import FileArg, Step

STEPS: dict[str, Step] = {
    "representations": Step(
        "rmood.mrm.representations:pair_representations",
        "final-layer last-token representations of chosen, rejected and prompt-only inputs",
        inputs=(FileArg("model", "reward model directory"), FileArg("pairs", "explicit pairs JSONL")),
        outputs=(FileArg("out", "chosen.npy, rejected.npy and message.npy", many=True),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "gda": Step(
        "rmood.mrm.gda:fit_gda",
        "Gaussian discriminant analysis (streaming, Ledoit-Wolf) -> gda_parameters.npz",
        inputs=(FileArg("chosen", "chosen representations (.npy)"), FileArg("rejected", "rejected representations (.npy)")),
        outputs=(FileArg("out", "gda_parameters.npz"),),
        config={"chunk_size": "mrm.chunk_size"},
    ),
    "convert_to_mrm": Step(
        "rmood.mrm.convert:convert_to_mrm",
        "fold the GDA head into the rm's score layer (mrm) and build the penalised rmood MRM (mrm_pen)",
        inputs=(FileArg("rm", "Bradley-Terry reward model directory"), FileArg("gda", "gda_parameters.npz")),
        outputs=(FileArg("model", "exported MRM directory"), FileArg("pen_model", "penalised MRM directory")),
        config={"penalty": "mrm.penalty"},
    ),
    "compare_weights": Step(
        "rmood.mrm.check:compare_weights",
        "GDA weight vs the rm's score weight, reward correlation, checks of the converted models",
        inputs=(
            FileArg("rm", "Bradley-Terry reward model directory"),
            FileArg("mrm", "exported MRM directory"),
            FileArg("pen_model", "penalised MRM directory"),
            FileArg("gda", "gda_parameters.npz"),
            FileArg("pairs", "explicit test pairs"),
            FileArg("train_pairs", "explicit train pairs"),
            FileArg("representations", "chosen.npy and rejected.npy of the train pairs", many=True),
        ),
        outputs=(FileArg("out", "compare_weights.json"),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "mrm_ood": Step(
        "rmood.mrm.check:ood_auroc",
        "AUROC of the Mahalanobis distance: in-distribution test responses vs ood responses",
        inputs=(
            FileArg("model", "exported MRM directory"),
            FileArg("gda", "gda_parameters.npz"),
            FileArg("test", "explicit test pairs"),
            FileArg("ood", "explicit ood pairs"),
        ),
        outputs=(FileArg("out", "ood.json"),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "sample_distance": Step(
        "rmood.mrm.distance:sample_distances",
        "the Mahalanobis distance of every sample (the rm's features under the GDA fit), one file per samples file",
        inputs=(
            FileArg("model", "the rm's directory (its features)"),
            FileArg("gda", "gda_parameters.npz"),
            FileArg("samples", "samples JSONL files", many=True),
            FileArg("prompt_files", "the prompts they answer", many=True),
        ),
        outputs=(FileArg("out", "distance.jsonl per samples file, in their order", many=True),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
    "sft_distance": Step(
        "rmood.mrm.distance:reference_distances",
        "the distance of the SFT policy's eval samples (step 0 of PPO) and the outlier threshold, their quantile",
        inputs=(
            FileArg("model", "the rm's directory (its features)"),
            FileArg("gda", "gda_parameters.npz"),
            FileArg("samples", "the SFT policy's samples of the eval prompts"),
            FileArg("prompt_files", "the prompts they answer", many=True),
            FileArg("representations", "chosen.npy and rejected.npy of the training pairs", many=True),
        ),
        outputs=(FileArg("out", "their distance.jsonl"), FileArg("reference", "distance_reference.json")),
        config={"quantile": "mrm.outlier_quantile", "scoring": "scoring", "dtype": "model.dtype"},
    ),
    "sft_latent": Step(
        "rmood.mrm.distance:latent_reference",
        "InfoRM's latent space: a Gaussian of the training responses' latents; the SFT eval samples' distances from it",
        inputs=(
            FileArg("model", "the InfoRM directory"),
            FileArg("pairs", "explicit train pairs: the responses the Gaussian is fitted to"),
            FileArg("samples", "the SFT policy's samples of the eval prompts"),
            FileArg("prompt_files", "the prompts they answer", many=True),
        ),
        outputs=(FileArg("out", "their latent.jsonl"), FileArg("reference", "latent_reference.npz")),
        config={"quantile": "mrm.outlier_quantile", "scoring": "scoring", "dtype": "model.dtype"},
    ),
    "sample_latent": Step(
        "rmood.mrm.distance:latent_distances",
        "the distance of every sample in InfoRM's latent space from the training responses' Gaussian",
        inputs=(
            FileArg("model", "the InfoRM directory"),
            FileArg("reference", "latent_reference.npz"),
            FileArg("samples", "samples JSONL files", many=True),
            FileArg("prompt_files", "the prompts they answer", many=True),
        ),
        outputs=(FileArg("out", "latent.jsonl per samples file, in their order", many=True),),
        config={"scoring": "scoring", "dtype": "model.dtype"},
    ),
}
