rule rrm_augment:
    """RRM: the training pairs plus non-contextual and neutral (tie) pairs."""
    input:
        pairs=replicate("pairs/train.explicit.jsonl"),
    output:
        out=replicate("rrm/augmented.jsonl"),
    log:
        log_file("rep{rep}/rrm_augment"),
    benchmark:
        benchmark_file("rep{rep}/rrm_augment")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("rrm_augment", seed=replicate_seed),
    script:
        "../workflow_scripts/step.py"


rule rrm_label:
    """RRM: the trained rm's win probability for every augmented pair."""
    input:
        model=rm_model("rm"),
        pairs=replicate("rrm/augmented.jsonl"),
    output:
        out=replicate("rrm/labeled.jsonl"),
    log:
        log_file("rep{rep}/rrm_label"),
    benchmark:
        benchmark_file("rep{rep}/rrm_label")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("rrm_label"),
    script:
        "../workflow_scripts/step.py"


rule rrm_filter:
    """RRM: keep the pairs the rm gets wrong (|P_rm - label| >= threshold); counts per pair type."""
    input:
        labeled=replicate("rrm/labeled.jsonl"),
    output:
        out=replicate("rrm/filtered.jsonl"),
        stats=replicate("rrm/filter_stats.json"),
    log:
        log_file("rep{rep}/rrm_filter"),
    benchmark:
        benchmark_file("rep{rep}/rrm_filter")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("rrm_filter"),
    script:
        "../workflow_scripts/step.py"
