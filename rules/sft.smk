rule base:
    """The base model: the tiny Qwen3 with a tokenizer trained on the data (per replicate when they re-draw the
    policy), or a copy of a local HF model (shared: it carries no randomness)."""
    input:
        data_files=data_files(("sft",)),
    output:
        out=directory(policy_file("base", shared=PRETRAINED)),
    log:
        log_file(policy_job("base", shared=PRETRAINED)),
    benchmark:
        benchmark_file(policy_job("base", shared=PRETRAINED))
    conda:
        MAIN_ENV
    threads: config["resources"]["analysis"]["cpus"]
    resources:
        **job_resources("analysis"),
    params:
        **step_params("base", seed=policy_seed),
    script:
        "../workflow_scripts/step.py"


rule sft:
    """Supervised fine-tuning (TRL SFTTrainer); resumes from its last checkpoint after a crash."""
    input:
        base=policy_file("base", shared=PRETRAINED),
        train=result("data/sft.jsonl"),
    output:
        model=directory(policy_file("sft/model")),
    log:
        log_file(policy_job("sft")),
    benchmark:
        benchmark_file(policy_job("sft"))
    conda:
        MAIN_ENV
    threads: config["resources"]["train"]["cpus"]
    resources:
        **job_resources("train"),
    params:
        **step_params("sft", seed=policy_seed, work_dir=policy_file("sft/checkpoints")),
    script:
        "../workflow_scripts/step.py"


rule sft_sampling:
    """One shard of responses from the SFT policy to the preference and ood prompts (resumable)."""
    input:
        model=policy_file("sft/model"),
        prompt_files=data_files(PROMPT_SPLITS),
    output:
        out=policy_file("sft/shards/{shard}.jsonl"),
    log:
        log_file(policy_job("sft_sampling/{shard}")),
    benchmark:
        benchmark_file(policy_job("sft_sampling/{shard}"))
    conda:
        SAMPLE_ENV
    threads: config["resources"]["sample"]["cpus"]
    resources:
        **job_resources("sample"),
    params:
        **step_params(SAMPLE_STEP, seed=policy_seed),
        shard=lambda wildcards: int(wildcards.shard),
    script:
        "../workflow_scripts/step.py"
