rule bon_sampling:
    """Best-of-N: N responses per eval prompt from the SFT policy (one job per shard, resumable)."""
    input:
        model=result("sft/model"),
        prompt_files=data_files(("eval",)),
    output:
        out=result("bon/shards/{shard}.jsonl"),
    log:
        log_file("bon_sampling/{shard}"),
    benchmark:
        benchmark_file("bon_sampling/{shard}")
    conda:
        SAMPLE_ENV
    threads: config["resources"]["sample"]["cpus"]
    resources:
        **job_resources("sample"),
    params:
        **step_params(SAMPLE_STEP, sampling=BON_SAMPLING),
        shard=lambda wildcards: int(wildcards.shard),
    script:
        "../workflow_scripts/step.py"


use rule gather_samples as gather_bon with:
    input:
        shards=expand(
            result("bon/shards/{shard}.jsonl"), shard=range(BON_SAMPLING["shards"])
        ),
        prompt_files=data_files(("eval",)),
    output:
        out=result("bon/samples.jsonl"),
    log:
        log_file("gather_bon"),
    benchmark:
        benchmark_file("gather_bon")


use rule gold_labeling as bon_gold with:
    input:
        samples=result("bon/shards/{shard}.jsonl"),
        prompt_files=data_files(("eval",)),
    output:
        out=result("bon/gold_shards/{shard}.jsonl"),
    log:
        log_file("bon_gold/{shard}"),
    benchmark:
        benchmark_file("bon_gold/{shard}")


use rule gather_samples as gather_bon_gold with:
    input:
        shards=expand(
            result("bon/gold_shards/{shard}.jsonl"),
            shard=range(BON_SAMPLING["shards"]),
        ),
        prompt_files=data_files(("eval",)),
    output:
        out=result("bon/gold.jsonl"),
    log:
        log_file("gather_bon_gold"),
    benchmark:
        benchmark_file("gather_bon_gold")


rule bon_score:
    """The proxy reward of every Best-of-N sample under one reward model."""
    input:
        model=lambda wildcards: rm_model(wildcards.name),
        samples=result("bon/samples.jsonl"),
        prompt_files=data_files(("eval",)),
    output:
        out=result("bon/scores/{name}.jsonl"),
    log:
        log_file("bon_score/{name}"),
    benchmark:
        benchmark_file("bon_score/{name}")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("score"),
    script:
        "../workflow_scripts/step.py"


rule bon_report:
    """Expected gold and proxy reward of best-of-n (n = 1, 2, 4, ..., N) against KL_BoN, per RM."""
    input:
        scores=expand(result("bon/scores/{name}.jsonl"), name=config["reward_models"]),
        gold=result("bon/gold.jsonl"),
    output:
        out=result("bon/report.json"),
    log:
        log_file("bon_report"),
    benchmark:
        benchmark_file("bon_report")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("bon_report"),
    script:
        "../workflow_scripts/step.py"


rule report:
    """The study's summary table, Markdown report and plots."""
    input:
        rm_table=result("reports/rm_accuracy.csv"),
        bon=result("bon/report.json"),
        ppo=expand(result("ppo/{name}/curve.json"), name=RL_MODELS),
        figures=distribution_figures(),
    output:
        summary=report(
            result("reports/summary.csv"),
            caption="../report/summary.rst",
            category="Summary",
        ),
        markdown=result("reports/mrm_eval.md"),
        plots=[
            report(
                result(f"reports/plots/{plot}.png"),
                caption=f"../report/{plot}.rst",
                category="Plots",
            )
            for plot in PLOTS
        ],
    log:
        log_file("report"),
    benchmark:
        benchmark_file("report")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("report"),
    script:
        "../workflow_scripts/step.py"
