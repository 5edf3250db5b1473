# The rules other files derive from with `use rule … as … with:` (sampling, gathering shards, gold labels,
# proxy scores): here, so that reading a derived rule never depends on the order of the includes.


rule gather_samples:
    """All shards in prompt order."""
    input:
        shards=expand(
            policy_file("sft/shards/{shard}.jsonl"), shard=SHARDS, allow_missing=True
        ),
        prompt_files=data_files(PROMPT_SPLITS),
    output:
        out=policy_file("sft/samples.jsonl"),
    log:
        log_file(policy_job("gather_samples")),
    benchmark:
        benchmark_file(policy_job("gather_samples"))
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("gather"),
    script:
        "../workflow_scripts/step.py"


rule gold_labeling:
    """The gold score of every response of one sampling shard (programmatic, or a gold reward model)."""
    input:
        samples=policy_file("sft/shards/{shard}.jsonl"),
        prompt_files=data_files(PROMPT_SPLITS),
    output:
        out=policy_file("labels/shards/{shard}.jsonl"),
    log:
        log_file(policy_job("gold_labeling/{shard}")),
    benchmark:
        benchmark_file(policy_job("gold_labeling/{shard}"))
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("gold"),
    script:
        "../workflow_scripts/step.py"


rule bon_sampling:
    """Best-of-N: N responses per eval prompt from the SFT policy (one job per shard, resumable)."""
    input:
        model=policy_file("sft/model"),
        prompt_files=data_files(("eval",)),
    output:
        out=replicate("bon/shards/{shard}.jsonl"),
    log:
        log_file("rep{rep}/bon_sampling/{shard}"),
    benchmark:
        benchmark_file("rep{rep}/bon_sampling/{shard}")
    conda:
        SAMPLE_ENV
    threads: config["resources"]["sample"]["cpus"]
    resources:
        **job_resources("sample"),
    params:
        **step_params(SAMPLE_STEP, sampling=BON_SAMPLING, seed=replicate_seed),
        shard=lambda wildcards: int(wildcards.shard),
    script:
        "../workflow_scripts/step.py"


rule bon_score:
    """The proxy reward of every Best-of-N sample under one reward model."""
    input:
        model=lambda wildcards: rm_model(wildcards.name, wildcards.rep),
        samples=replicate("bon/samples.jsonl"),
        prompt_files=data_files(("eval",)),
    output:
        out=replicate("bon/scores/{name}.jsonl"),
    log:
        log_file("rep{rep}/bon_score/{name}"),
    benchmark:
        benchmark_file("rep{rep}/bon_score/{name}")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("score"),
    script:
        "../workflow_scripts/step.py"


rule bon_ensemble_score:
    """An ensemble's proxy reward of every Best-of-N sample, reduced from its members' (each scores them once, in
    its own bon_score job), instead of running every member again."""
    input:
        model=rm_model("ens_{reduction}"),
        scores=member_files("bon/scores/{name}.jsonl"),
    output:
        out=replicate("bon/scores/ens_{reduction}.jsonl"),
    log:
        log_file("rep{rep}/bon_ensemble_score/{reduction}"),
    benchmark:
        benchmark_file("rep{rep}/bon_ensemble_score/{reduction}")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("ensemble_score"),
    script:
        "../workflow_scripts/step.py"


ruleorder: bon_ensemble_score > bon_score
