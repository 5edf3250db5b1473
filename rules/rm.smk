rule train_rm:
    """Bradley–Terry reward model (TRL RewardTrainer) initialised from the SFT policy."""
    input:
        policy=result("sft/model"),
        pairs=result("pairs/train.implicit.jsonl"),
    output:
        model=directory(rm_model("rm")),
    log:
        log_file("train_rm"),
    benchmark:
        benchmark_file("train_rm")
    conda:
        MAIN_ENV
    threads: config["resources"]["train"]["cpus"]
    resources:
        **job_resources("train"),
    params:
        **step_params("train_rm", work_dir=result("rm/rm/checkpoints")),
    script:
        "../workflow_scripts/step.py"


use rule train_rm as train_golden with:
    input:
        policy=result("sft/model"),
        pairs=result("pairs/golden.implicit.jsonl"),
    output:
        model=directory(rm_model("golden")),
    log:
        log_file("train_golden"),
    benchmark:
        benchmark_file("train_golden")
    params:
        **step_params("train_rm", work_dir=result("rm/golden/checkpoints")),


use rule train_rm as train_rm_seed with:
    output:
        model=directory(rm_model("rm_seed{seed}")),
    log:
        log_file("train_rm_seed/{seed}"),
    benchmark:
        benchmark_file("train_rm_seed/{seed}")
    params:
        **step_params(
            "train_rm",
            seed=lambda wildcards: int(wildcards.seed),
            work_dir=lambda wildcards: result(
                f"rm/rm_seed{wildcards.seed}/checkpoints"
            ),
        ),


use rule train_rm as train_rrm with:
    input:
        policy=result("sft/model"),
        pairs=result("rrm/filtered.jsonl"),
    output:
        model=directory(rm_model("rrm")),
    log:
        log_file("train_rrm"),
    benchmark:
        benchmark_file("train_rrm")
    params:
        **step_params("train_rrm", work_dir=result("rm/rrm/checkpoints")),


use rule train_rm as train_inform with:
    output:
        model=directory(rm_model("inform")),
    log:
        log_file("train_inform"),
    benchmark:
        benchmark_file("train_inform")
    params:
        **step_params("train_inform", work_dir=result("rm/inform/checkpoints")),


rule warm_merge:
    """WARM: the element-wise mean of the seed RMs' weights."""
    input:
        models=seed_models(),
    output:
        out=directory(rm_model("warm")),
    log:
        log_file("warm_merge"),
    benchmark:
        benchmark_file("warm_merge")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("warm_merge"),
    script:
        "../workflow_scripts/step.py"


rule ensemble:
    """An ensemble of the seed RMs: mean, worst-case (wco) or uncertainty-weighted (uwo)."""
    input:
        models=seed_models(),
    output:
        out=directory(rm_model("ens_{reduction}")),
    log:
        log_file("ensemble/{reduction}"),
    benchmark:
        benchmark_file("ensemble/{reduction}")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("ensemble", reduction=lambda wildcards: wildcards.reduction),
    script:
        "../workflow_scripts/step.py"


rule rm_check:
    """Accuracy on its own training pairs, agreement with gold on test pairs, and on ood pairs."""
    input:
        model=lambda wildcards: rm_model(wildcards.name),
        train=lambda wildcards: rm_training_pairs(wildcards.name),
        test=result("pairs/test.explicit.jsonl"),
        ood=result("pairs/ood.explicit.jsonl"),
    output:
        out=result("rm/{name}/check.json"),
    log:
        log_file("rm_check/{name}"),
    benchmark:
        benchmark_file("rm_check/{name}")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("rm_check"),
    script:
        "../workflow_scripts/step.py"


rule rm_table:
    """Every reward model's checks side by side."""
    input:
        checks=expand(result("rm/{name}/check.json"), name=config["reward_models"]),
    output:
        csv=result("reports/rm_accuracy.csv"),
        markdown=result("reports/rm_accuracy.md"),
    log:
        log_file("rm_table"),
    benchmark:
        benchmark_file("rm_table")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("rm_table"),
    script:
        "../workflow_scripts/step.py"
