rule train_rm:
    """Bradley–Terry reward model (TRL RewardTrainer) initialised from the SFT policy."""
    input:
        policy=result("sft/model"),
        pairs=result("pairs/train.implicit.jsonl"),
    output:
        model=directory(result("rm/rm/model")),
    log:
        log_file("train_rm"),
    benchmark:
        benchmark_file("train_rm")
    conda:
        MAIN_ENV
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        **step_params("train_rm", work_dir=result("rm/rm/checkpoints")),
    script:
        "../workflow_scripts/step.py"


rule rm_check:
    """Accuracy on the training labels, agreement with gold on test pairs, and on ood pairs."""
    input:
        model=result("rm/{name}/model"),
        train=result("pairs/train.explicit.jsonl"),
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
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        **step_params("rm_check"),
    script:
        "../workflow_scripts/step.py"
