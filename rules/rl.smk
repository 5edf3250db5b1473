rule ppo:
    """PPO (TRL, or verl on GPUs) of the SFT policy against one reward model; the policy is saved every `rl.save_every` updates."""
    input:
        policy=result("sft/model"),
        reward_model=lambda wildcards: rm_model(wildcards.name),
        prompts=result("data/unlabeled.jsonl"),
    output:
        out=[directory(result(f"ppo/{{name}}/step_{k}/model")) for k in PPO_STEPS],
    log:
        log_file("ppo/{name}"),
    benchmark:
        benchmark_file("ppo/{name}")
    conda:
        PPO_ENV
    threads: config["resources"]["ppo"]["cpus"]
    resources:
        **job_resources("ppo"),
    params:
        **step_params(
            PPO_STEP,
            work_dir=lambda wildcards: result(f"ppo/{wildcards.name}/{PPO_WORK}"),
        ),
    script:
        "../workflow_scripts/step.py"


use rule bon_sampling as rl_sampling with:
    input:
        model=lambda wildcards: ppo_policy(wildcards.name, wildcards.step),
        prompt_files=data_files(("eval",)),
    output:
        out=result("ppo/{name}/step_{step}/samples.jsonl"),
    log:
        log_file("rl_sampling/{name}/{step}"),
    benchmark:
        benchmark_file("rl_sampling/{name}/{step}")
    params:
        **step_params(SAMPLE_STEP, sampling=RL_SAMPLING),
        shard=0,


use rule gold_labeling as rl_gold with:
    input:
        samples=result("ppo/{name}/step_{step}/samples.jsonl"),
        prompt_files=data_files(("eval",)),
    output:
        out=result("ppo/{name}/step_{step}/gold.jsonl"),
    log:
        log_file("rl_gold/{name}/{step}"),
    benchmark:
        benchmark_file("rl_gold/{name}/{step}")


use rule bon_score as rl_proxy with:
    input:
        model=lambda wildcards: rm_model(wildcards.name),
        samples=lambda wildcards: rl_file(wildcards.name, wildcards.step, "samples"),
        prompt_files=data_files(("eval",)),
    output:
        out=result("ppo/{name}/step_{step}/proxy.jsonl"),
    log:
        log_file("rl_proxy/{name}/{step}"),
    benchmark:
        benchmark_file("rl_proxy/{name}/{step}")


rule rl_kl:
    """KL(actor || reference) of each of the checkpoint's samples, on its sampled tokens at the sampling temperature."""
    input:
        policy=lambda wildcards: ppo_policy(wildcards.name, wildcards.step),
        reference=result("sft/model"),
        samples=result("ppo/{name}/step_{step}/samples.jsonl"),
        prompts=result("data/eval.jsonl"),
    output:
        out=result("ppo/{name}/step_{step}/kl.jsonl"),
    log:
        log_file("rl_kl/{name}/{step}"),
    benchmark:
        benchmark_file("rl_kl/{name}/{step}")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("rl_kl"),
    script:
        "../workflow_scripts/step.py"


rule ppo_curve:
    """Gold, proxy and KL of every checkpoint of one PPO run, step 0 being the SFT policy (KL 0)."""
    input:
        kl_files=expand(result("ppo/{{name}}/step_{step}/kl.jsonl"), step=PPO_STEPS),
        gold_files=lambda wildcards: [
            rl_file(wildcards.name, step, "gold") for step in [0, *PPO_STEPS]
        ],
        proxy_files=expand(
            result("ppo/{{name}}/step_{step}/proxy.jsonl"), step=[0, *PPO_STEPS]
        ),
    output:
        out=result("ppo/{name}/curve.json"),
    log:
        log_file("ppo_curve/{name}"),
    benchmark:
        benchmark_file("ppo_curve/{name}")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("ppo_curve", rm=lambda wildcards: wildcards.name),
    script:
        "../workflow_scripts/step.py"
