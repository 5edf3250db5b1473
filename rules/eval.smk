use rule gather_samples as gather_bon with:
    input:
        shards=expand(
            replicate("bon/shards/{shard}.jsonl"),
            shard=range(BON_SAMPLING["shards"]),
            allow_missing=True,
        ),
        prompt_files=data_files(("eval",)),
    output:
        out=replicate("bon/samples.jsonl"),
    log:
        log_file("rep{rep}/gather_bon"),
    benchmark:
        benchmark_file("rep{rep}/gather_bon")
    params:
        **step_params("gather"),


use rule gold_labeling as bon_gold with:
    input:
        samples=replicate("bon/shards/{shard}.jsonl"),
        prompt_files=data_files(("eval",)),
    output:
        out=replicate("bon/gold_shards/{shard}.jsonl"),
    log:
        log_file("rep{rep}/bon_gold/{shard}"),
    benchmark:
        benchmark_file("rep{rep}/bon_gold/{shard}")
    params:
        **step_params("gold"),


use rule gather_samples as gather_bon_gold with:
    input:
        shards=expand(
            replicate("bon/gold_shards/{shard}.jsonl"),
            shard=range(BON_SAMPLING["shards"]),
            allow_missing=True,
        ),
        prompt_files=data_files(("eval",)),
    output:
        out=replicate("bon/gold.jsonl"),
    log:
        log_file("rep{rep}/gather_bon_gold"),
    benchmark:
        benchmark_file("rep{rep}/gather_bon_gold")
    params:
        **step_params("gather"),


rule bon_report:
    """Expected gold, proxy reward, distance and outlier share of best-of-n (n = 1, 2, 4, ..., N) per prompt and RM,
    and their means."""
    input:
        scores=expand(
            replicate("bon/scores/{name}.jsonl"),
            name=config["reward_models"],
            allow_missing=True,
        ),
        gold=replicate("bon/gold.jsonl"),
        distance=replicate("bon/distance.jsonl"),
        reference=replicate("mrm/distance_reference.json"),
    output:
        out=replicate("bon/report.json"),
        per_prompt=replicate("bon/per_prompt.npz"),
    log:
        log_file("rep{rep}/bon_report"),
    benchmark:
        benchmark_file("rep{rep}/bon_report")
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
    """The study's summary table, curves and variance components with their intervals, the Markdown report and its
    plots."""
    input:
        rewards=expand(
            replicate("rm/{name}/check_rewards.npz"),
            rep=REPLICATES,
            name=config["reward_models"],
        ),
        pairs=expand(
            replicate("pairs/{split}.explicit.jsonl"),
            rep=REPLICATES,
            split=("test", "ood"),
        ),
        bon=expand(replicate("bon/per_prompt.npz"), rep=REPLICATES),
        ppo=expand(
            replicate("ppo/{name}/per_prompt.npz"), rep=REPLICATES, name=PPO_ARMS
        ),
        figures=distribution_figures(),
        references=expand(replicate("mrm/distance_reference.json"), rep=REPLICATES),
        tuning=result("tuning/ppo.json") if TUNING_ARMS else [],
        stop=result("tuning/stop.json") if TUNING_ARMS else [],
    output:
        summary=report(
            result("reports/summary.csv"),
            caption="../report/summary.rst",
            category="Summary",
        ),
        curves=report(
            result("reports/curves.csv"),
            caption="../report/curves.rst",
            category="Summary",
        ),
        budgets=report(
            result("reports/budgets.csv"),
            caption="../report/budgets.rst",
            category="Summary",
        ),
        variance=result("reports/variance.csv"),
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
