use rule gather_samples as gather_labels with:
    input:
        shards=expand(result("labels/shards/{shard}.jsonl"), shard=SHARDS),
        prompt_files=data_files(PROMPT_SPLITS),
    output:
        out=result("labels/gold.jsonl"),
    log:
        log_file("gather_labels"),
    benchmark:
        benchmark_file("gather_labels")
    params:
        **step_params("gather"),


rule preference_pairs:
    """Train/test/ood/golden pairs of one replicate; train labels from the simulated annotator (seeded by the
    replicate), the others from gold."""
    input:
        samples=result("sft/samples.jsonl"),
        gold_labels=result("labels/gold.jsonl"),
        preference=result("data/preference.jsonl"),
        ood=result("data/ood.jsonl"),
    output:
        out=expand(
            replicate("pairs/{name}.{fmt}.jsonl"),
            name=PAIR_SETS,
            fmt=PAIR_FORMATS,
            allow_missing=True,
        ),
    log:
        log_file("rep{rep}/preference_pairs"),
    benchmark:
        benchmark_file("rep{rep}/preference_pairs")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("pairs", replicate=replicate_seed),
    script:
        "../workflow_scripts/step.py"
