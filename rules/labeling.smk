use rule gather_samples as gather_labels with:
    input:
        shards=expand(
            policy_file("labels/shards/{shard}.jsonl"),
            shard=SHARDS,
            allow_missing=True,
        ),
        prompt_files=data_files(PROMPT_SPLITS),
    output:
        out=policy_file("labels/gold.jsonl"),
    log:
        log_file(policy_job("gather_labels")),
    benchmark:
        benchmark_file(policy_job("gather_labels"))
    params:
        **step_params("gather"),


rule preference_pairs:
    """Train/test/ood/golden pairs of one replicate; train labels from the simulated annotator (seeded by the
    replicate), the others from gold."""
    input:
        samples=policy_file("sft/samples.jsonl"),
        gold_labels=policy_file("labels/gold.jsonl"),
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
