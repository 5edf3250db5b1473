rule representations:
    """The rm's final hidden state at the last token of every chosen, rejected and prompt-only input."""
    input:
        model=rm_model("rm"),
        pairs=replicate("pairs/train.explicit.jsonl"),
    output:
        out=expand(
            replicate("mrm/representations/{kind}.npy"),
            kind=REPRESENTATIONS,
            allow_missing=True,
        ),
    log:
        log_file("rep{rep}/representations"),
    benchmark:
        benchmark_file("rep{rep}/representations")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("representations"),
    script:
        "../workflow_scripts/step.py"


rule gda:
    """Gaussian discriminant analysis of chosen vs rejected representations (streaming, Ledoit-Wolf)."""
    input:
        chosen=replicate("mrm/representations/chosen.npy"),
        rejected=replicate("mrm/representations/rejected.npy"),
    output:
        out=replicate("mrm/gda_parameters.npz"),
    log:
        log_file("rep{rep}/gda"),
    benchmark:
        benchmark_file("rep{rep}/gda")
    conda:
        MAIN_ENV
    threads: config["resources"]["analysis"]["cpus"]
    resources:
        **job_resources("analysis"),
    params:
        **step_params("gda"),
    script:
        "../workflow_scripts/step.py"


rule convert_to_mrm:
    """The MRM: the rm's backbone with the GDA head folded into `score`; and the penalised mrm_pen."""
    input:
        rm=rm_model("rm"),
        gda=replicate("mrm/gda_parameters.npz"),
    output:
        model=directory(rm_model("mrm")),
        pen_model=directory(rm_model("mrm_pen")),
    log:
        log_file("rep{rep}/convert_to_mrm"),
    benchmark:
        benchmark_file("rep{rep}/convert_to_mrm")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("convert_to_mrm"),
    script:
        "../workflow_scripts/step.py"


rule compare_weights:
    """GDA weight vs the rm's score weight, reward correlation, and a check of the converted model."""
    input:
        rm=rm_model("rm"),
        mrm=rm_model("mrm"),
        pen_model=rm_model("mrm_pen"),
        gda=replicate("mrm/gda_parameters.npz"),
        pairs=replicate("pairs/test.explicit.jsonl"),
        train_pairs=replicate("pairs/train.explicit.jsonl"),
        representations=expand(
            replicate("mrm/representations/{kind}.npy"),
            kind=("chosen", "rejected"),
            allow_missing=True,
        ),
    output:
        out=replicate("mrm/compare_weights.json"),
    log:
        log_file("rep{rep}/compare_weights"),
    benchmark:
        benchmark_file("rep{rep}/compare_weights")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("compare_weights"),
    script:
        "../workflow_scripts/step.py"


rule mrm_ood:
    """AUROC of the Mahalanobis distance for telling ood responses from in-distribution ones."""
    input:
        model=rm_model("mrm"),
        gda=replicate("mrm/gda_parameters.npz"),
        test=replicate("pairs/test.explicit.jsonl"),
        ood=replicate("pairs/ood.explicit.jsonl"),
    output:
        out=replicate("mrm/ood.json"),
    log:
        log_file("rep{rep}/mrm_ood"),
    benchmark:
        benchmark_file("rep{rep}/mrm_ood")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("mrm_ood"),
    script:
        "../workflow_scripts/step.py"


rule sft_distance:
    """The Mahalanobis distance of the SFT policy's own eval samples (step 0 of every PPO run), the outlier threshold
    (their `mrm.outlier_quantile`) and the training responses' mean distance."""
    input:
        model=rm_model("rm"),
        gda=replicate("mrm/gda_parameters.npz"),
        samples=replicate("ppo/sft/step_0/samples.jsonl"),
        prompt_files=data_files(("eval",)),
        representations=expand(
            replicate("mrm/representations/{kind}.npy"),
            kind=("chosen", "rejected"),
            allow_missing=True,
        ),
    output:
        out=replicate("ppo/sft/step_0/distance.jsonl"),
        reference=replicate("mrm/distance_reference.json"),
    log:
        log_file("rep{rep}/sft_distance"),
    benchmark:
        benchmark_file("rep{rep}/sft_distance")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("sft_distance"),
    script:
        "../workflow_scripts/step.py"


rule ppo_distance:
    """The Mahalanobis distance of every sample of every checkpoint of one PPO run."""
    input:
        model=rm_model("rm"),
        gda=replicate("mrm/gda_parameters.npz"),
        samples=rl_outputs("samples", PPO_STEPS),
        prompt_files=data_files(("eval",)),
    output:
        out=rl_outputs("distance", PPO_STEPS),
    log:
        log_file("rep{rep}/ppo_distance/{name}"),
    benchmark:
        benchmark_file("rep{rep}/ppo_distance/{name}")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("sample_distance"),
    script:
        "../workflow_scripts/step.py"


use rule ppo_distance as bon_distance with:
    input:
        model=rm_model("rm"),
        gda=replicate("mrm/gda_parameters.npz"),
        samples=[replicate("bon/samples.jsonl")],
        prompt_files=data_files(("eval",)),
    output:
        out=[replicate("bon/distance.jsonl")],
    log:
        log_file("rep{rep}/bon_distance"),
    benchmark:
        benchmark_file("rep{rep}/bon_distance")


rule sft_latent:
    """InfoRM's latent space (Miao et al.'s outlier probability): a Gaussian fitted to the latents of the training
    pairs' responses; the distances of the SFT policy's own eval samples from it and the outlier threshold.
    """
    input:
        model=rm_model("inform"),
        pairs=replicate("pairs/train.explicit.jsonl"),
        samples=replicate("ppo/sft/step_0/samples.jsonl"),
        prompt_files=data_files(("eval",)),
    output:
        out=replicate("ppo/sft/step_0/latent.jsonl"),
        reference=replicate("rm/inform/latent_reference.npz"),
    log:
        log_file("rep{rep}/sft_latent"),
    benchmark:
        benchmark_file("rep{rep}/sft_latent")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("sft_latent"),
    script:
        "../workflow_scripts/step.py"


rule ppo_latent:
    """The distance of every sample of every checkpoint of one PPO run in InfoRM's latent space."""
    input:
        model=rm_model("inform"),
        reference=replicate("rm/inform/latent_reference.npz"),
        samples=rl_outputs("samples", PPO_STEPS),
        prompt_files=data_files(("eval",)),
    output:
        out=rl_outputs("latent", PPO_STEPS),
    log:
        log_file("rep{rep}/ppo_latent/{name}"),
    benchmark:
        benchmark_file("rep{rep}/ppo_latent/{name}")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("sample_latent"),
    script:
        "../workflow_scripts/step.py"
