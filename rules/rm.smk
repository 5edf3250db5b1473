# One rule per trained method of rmood/rm/methods.py (train_rm, train_rrm, train_inform, train_golden): its model
# from the SFT policy and its pairs, by its training step (golden: rm's, on the gold-labelled pairs).
for method in TRAINED_METHODS:

    rule:
        name:
            f"train_{method.name}"
        input:
            policy=policy_file("sft/model"),
            pairs=replicate(method.pairs),
        output:
            model=directory(rm_model(method.name)),
        log:
            log_file(f"rep{{rep}}/train_{method.name}"),
        benchmark:
            benchmark_file(f"rep{{rep}}/train_{method.name}")
        conda:
            MAIN_ENV
        threads: config["resources"]["train"]["cpus"]
        resources:
            **job_resources("train"),
        params:
            **step_params(
                method.step,
                seed=replicate_seed,
                work_dir=replicate(f"rm/{method.name}/checkpoints"),
            ),
        script:
            "../workflow_scripts/step.py"


use rule train_rm as train_rm_seed with:
    output:
        model=directory(rm_model("rm_seed{member}")),
    log:
        log_file("rep{rep}/train_rm_seed/{member}"),
    benchmark:
        benchmark_file("rep{rep}/train_rm_seed/{member}")
    params:
        **step_params(
            "train_rm",
            seed=lambda wildcards: member_seed(
                int(wildcards.rep), int(wildcards.member)
            ),
            work_dir=replicate("rm/rm_seed{member}/checkpoints"),
        ),


rule warm_merge:
    """WARM: the element-wise mean of the member RMs' weights."""
    input:
        models=member_models(),
    output:
        out=directory(rm_model("warm")),
    log:
        log_file("rep{rep}/warm_merge"),
    benchmark:
        benchmark_file("rep{rep}/warm_merge")
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
    """An ensemble of the member RMs: mean, worst-case (wco) or uncertainty-weighted (uwo)."""
    input:
        models=member_models(),
    output:
        out=directory(rm_model("ens_{reduction}")),
    log:
        log_file("rep{rep}/ensemble/{reduction}"),
    benchmark:
        benchmark_file("rep{rep}/ensemble/{reduction}")
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
        model=lambda wildcards: rm_model(wildcards.name, wildcards.rep),
        train=lambda wildcards: rm_training_pairs(wildcards.name, wildcards.rep),
        test=replicate("pairs/test.explicit.jsonl"),
        ood=replicate("pairs/ood.explicit.jsonl"),
    output:
        out=replicate("rm/{name}/check.json"),
        rewards=replicate("rm/{name}/check_rewards.npz"),
    log:
        log_file("rep{rep}/rm_check/{name}"),
    benchmark:
        benchmark_file("rep{rep}/rm_check/{name}")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("rm_check"),
    script:
        "../workflow_scripts/step.py"


rule rm_check_ensemble:
    """An ensemble's check, reduced from its members' rewards of the same pairs (each member's rm_check scores
    them once) instead of running every member again."""
    input:
        model=rm_model("ens_{reduction}"),
        rewards=member_files("rm/{name}/check_rewards.npz"),
    output:
        out=replicate("rm/ens_{reduction}/check.json"),
        reduced=replicate("rm/ens_{reduction}/check_rewards.npz"),
    log:
        log_file("rep{rep}/rm_check_ensemble/{reduction}"),
    benchmark:
        benchmark_file("rep{rep}/rm_check_ensemble/{reduction}")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("rm_check_ensemble"),
    script:
        "../workflow_scripts/step.py"


ruleorder: rm_check_ensemble > rm_check


rule rm_table:
    """Every reward model's checks side by side (one replicate)."""
    input:
        checks=expand(
            replicate("rm/{name}/check.json"),
            name=config["reward_models"],
            allow_missing=True,
        ),
    output:
        csv=replicate("reports/rm_accuracy.csv"),
        markdown=replicate("reports/rm_accuracy.md"),
    log:
        log_file("rep{rep}/rm_table"),
    benchmark:
        benchmark_file("rep{rep}/rm_table")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("rm_table"),
    script:
        "../workflow_scripts/step.py"
