rule train_rm:
    """Bradley–Terry reward model (TRL RewardTrainer) initialised from the SFT policy."""
    input:
        policy=policy_file("sft/model"),
        pairs=replicate("pairs/train.implicit.jsonl"),
    output:
        model=directory(rm_model("rm")),
    log:
        log_file("rep{rep}/train_rm"),
    benchmark:
        benchmark_file("rep{rep}/train_rm")
    conda:
        MAIN_ENV
    threads: config["resources"]["train"]["cpus"]
    resources:
        **job_resources("train"),
    params:
        **step_params(
            "train_rm", seed=replicate_seed, work_dir=replicate("rm/rm/checkpoints")
        ),
    script:
        "../workflow_scripts/step.py"


use rule train_rm as train_golden with:
    input:
        policy=policy_file("sft/model"),
        pairs=replicate("pairs/golden.implicit.jsonl"),
    output:
        model=directory(rm_model("golden")),
    log:
        log_file("rep{rep}/train_golden"),
    benchmark:
        benchmark_file("rep{rep}/train_golden")
    params:
        **step_params(
            "train_rm",
            seed=replicate_seed,
            work_dir=replicate("rm/golden/checkpoints"),
        ),


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


use rule train_rm as train_rrm with:
    input:
        policy=policy_file("sft/model"),
        pairs=replicate("rrm/filtered.jsonl"),
    output:
        model=directory(rm_model("rrm")),
    log:
        log_file("rep{rep}/train_rrm"),
    benchmark:
        benchmark_file("rep{rep}/train_rrm")
    params:
        **step_params(
            "train_rrm", seed=replicate_seed, work_dir=replicate("rm/rrm/checkpoints")
        ),


use rule train_rm as train_inform with:
    output:
        model=directory(rm_model("inform")),
    log:
        log_file("rep{rep}/train_inform"),
    benchmark:
        benchmark_file("rep{rep}/train_inform")
    params:
        **step_params(
            "train_inform",
            seed=replicate_seed,
            work_dir=replicate("rm/inform/checkpoints"),
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
