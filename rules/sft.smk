rule base:
    """The base model: the tiny Qwen3 with a tokenizer trained on the data, or a local HF model."""
    input:
        data_files=data_files(("sft",)),
    output:
        out=directory(result("base")),
    log:
        log_file("base"),
    benchmark:
        benchmark_file("base")
    conda:
        MAIN_ENV
    threads: config["resources"]["analysis"]["cpus"]
    resources:
        **job_resources("analysis"),
    params:
        **step_params("base"),
    script:
        "../workflow_scripts/step.py"


rule sft:
    """Supervised fine-tuning (TRL SFTTrainer); resumes from its last checkpoint after a crash."""
    input:
        base=result("base"),
        train=result("data/sft.jsonl"),
    output:
        model=directory(result("sft/model")),
    log:
        log_file("sft"),
    benchmark:
        benchmark_file("sft")
    conda:
        MAIN_ENV
    threads: config["resources"]["train"]["cpus"]
    resources:
        **job_resources("train"),
    params:
        **step_params("sft", work_dir=result("sft/checkpoints")),
    script:
        "../workflow_scripts/step.py"


rule sft_sampling:
    """One shard of responses from the SFT policy to the preference and ood prompts (resumable)."""
    input:
        model=result("sft/model"),
        prompt_files=data_files(PROMPT_SPLITS),
    output:
        out=result("sft/shards/{shard}.jsonl"),
    log:
        log_file("sft_sampling/{shard}"),
    benchmark:
        benchmark_file("sft_sampling/{shard}")
    conda:
        SAMPLE_ENV
    threads: config["resources"]["sample"]["cpus"]
    resources:
        **job_resources("sample"),
    params:
        **step_params(SAMPLE_STEP),
        shard=lambda wildcards: int(wildcards.shard),
    script:
        "../workflow_scripts/step.py"
