rule ppo:
    """PPO (TRL, or verl on GPUs) of the SFT policy against one reward model; the policy is saved after the updates of `rl.checkpoints` and the last."""
    input:
        policy=policy_file("sft/model"),
        reward_model=arm_model,
        prompts=result("data/unlabeled.jsonl"),
        tuning=arm_tuning,
    output:
        out=[directory(replicate(f"ppo/{{name}}/step_{k}/model")) for k in PPO_STEPS],
    log:
        log_file("rep{rep}/ppo/{name}"),
    benchmark:
        benchmark_file("rep{rep}/ppo/{name}")
    conda:
        PPO_ENV
    threads: config["resources"]["ppo"]["cpus"]
    resources:
        **job_resources("ppo"),
    params:
        **step_params(
            PPO_STEP,
            seed=replicate_seed,
            rl=arm_rl,
            work_dir=replicate(f"ppo/{{name}}/{PPO_WORK}"),
        ),
    script:
        "../workflow_scripts/step.py"


use rule bon_sampling as rl_sampling with:
    input:
        model=lambda wildcards: ppo_policy(
            wildcards.name, wildcards.step, wildcards.rep
        ),
        prompt_files=data_files(("eval",)),
    output:
        out=replicate("ppo/{name}/step_{step}/samples.jsonl"),
    log:
        log_file("rep{rep}/rl_sampling/{name}/{step}"),
    benchmark:
        benchmark_file("rep{rep}/rl_sampling/{name}/{step}")
    params:
        **step_params(SAMPLE_STEP, sampling=RL_SAMPLING, seed=replicate_seed),
        shard=0,


if PPO_EVAL_PER_RUN:

    rule ppo_eval:
        """Every checkpoint of one PPO run in one job: its samples, their gold and proxy rewards, KL from the SFT policy."""
        input:
            policies=[replicate(f"ppo/{{name}}/step_{k}/model") for k in PPO_STEPS],
            reference=policy_file("sft/model"),
            reward_model=arm_model,
            step0_samples=replicate("ppo/sft/step_0/samples.jsonl"),
            prompt_files=data_files(("eval",)),
        output:
            samples=rl_outputs("samples", PPO_STEPS),
            gold_labels=rl_outputs("gold", PPO_STEPS),
            proxy=rl_outputs("proxy", [0, *PPO_STEPS]),
            kl=rl_outputs("kl", PPO_STEPS),
        log:
            log_file("rep{rep}/ppo_eval/{name}"),
        benchmark:
            benchmark_file("rep{rep}/ppo_eval/{name}")
        conda:
            MAIN_ENV
        threads: config["resources"]["score"]["cpus"]
        resources:
            **job_resources("score"),
        params:
            **step_params("ppo_eval", sampling=RL_SAMPLING, seed=replicate_seed),
        script:
            "../workflow_scripts/step.py"

    ruleorder: ppo_eval > rl_sampling
    ruleorder: ppo_eval > rl_gold
    ruleorder: ppo_eval > rl_proxy
    ruleorder: ppo_eval > rl_kl


use rule gold_labeling as rl_gold with:
    input:
        samples=replicate("ppo/{name}/step_{step}/samples.jsonl"),
        prompt_files=data_files(("eval",)),
    output:
        out=replicate("ppo/{name}/step_{step}/gold.jsonl"),
    log:
        log_file("rep{rep}/rl_gold/{name}/{step}"),
    benchmark:
        benchmark_file("rep{rep}/rl_gold/{name}/{step}")
    params:
        **step_params("gold"),


use rule bon_score as rl_proxy with:
    input:
        model=arm_model,
        samples=lambda wildcards: rl_file(
            wildcards.name, wildcards.step, "samples", wildcards.rep
        ),
        prompt_files=data_files(("eval",)),
    output:
        out=replicate("ppo/{name}/step_{step}/proxy.jsonl"),
    log:
        log_file("rep{rep}/rl_proxy/{name}/{step}"),
    benchmark:
        benchmark_file("rep{rep}/rl_proxy/{name}/{step}")
    params:
        **step_params("score"),


rule rl_kl:
    """KL(actor || reference) of every sample of a checkpoint, on its sampled tokens."""
    input:
        policy=lambda wildcards: ppo_policy(
            wildcards.name, wildcards.step, wildcards.rep
        ),
        reference=policy_file("sft/model"),
        samples=replicate("ppo/{name}/step_{step}/samples.jsonl"),
        prompts=result("data/eval.jsonl"),
    output:
        out=replicate("ppo/{name}/step_{step}/kl.jsonl"),
    log:
        log_file("rep{rep}/rl_kl/{name}/{step}"),
    benchmark:
        benchmark_file("rep{rep}/rl_kl/{name}/{step}")
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
    """Gold, proxy, KL, finish rate, response length, distance from the RM's training distribution and share of
    outliers of every checkpoint of one PPO run, per prompt and on average (step 0: the SFT policy).
    """
    input:
        samples_files=lambda wildcards: [
            rl_file(wildcards.name, step, "samples", wildcards.rep)
            for step in [0, *PPO_STEPS]
        ],
        kl_files=expand(
            replicate("ppo/{name}/step_{step}/kl.jsonl"),
            step=PPO_STEPS,
            allow_missing=True,
        ),
        gold_files=lambda wildcards: [
            rl_file(wildcards.name, step, "gold", wildcards.rep)
            for step in [0, *PPO_STEPS]
        ],
        proxy_files=expand(
            replicate("ppo/{name}/step_{step}/proxy.jsonl"),
            step=[0, *PPO_STEPS],
            allow_missing=True,
        ),
        distance_files=lambda wildcards: [
            rl_file(wildcards.name, step, "distance", wildcards.rep)
            for step in [0, *PPO_STEPS]
        ],
        reference=replicate("mrm/distance_reference.json"),
        latent_files=latent_files,
        latent_reference=latent_reference,
    output:
        out=replicate("ppo/{name}/curve.json"),
        per_prompt=replicate("ppo/{name}/per_prompt.npz"),
    log:
        log_file("rep{rep}/ppo_curve/{name}"),
    benchmark:
        benchmark_file("rep{rep}/ppo_curve/{name}")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("ppo_curve", rm=lambda wildcards: wildcards.name),
    script:
        "../workflow_scripts/step.py"


rule ppo_tuning:
    """The PPO learning rate of `rl.learning_rate: tuned`: PPO against `rl.tuning.reward_model` on the tuning seed,
    once per candidate; the smallest rate whose run reaches the largest KL budget (rmood/rl/tuning.py). It reads
    the runs' samples and KL, not their curves: a change to the curves reruns no PPO job.
    """
    input:
        step0=rl_file("sft", 0, "samples", TUNING_SEED),
        samples_files=[
            rl_file(name, step, "samples", TUNING_SEED)
            for name in TUNING_ARMS
            for step in PPO_STEPS
        ],
        kl_files=[
            replicate(f"ppo/{name}/step_{step}/kl.jsonl", TUNING_SEED)
            for name in TUNING_ARMS
            for step in PPO_STEPS
        ],
    output:
        out=result("tuning/ppo.json"),
    log:
        log_file("ppo_tuning"),
    benchmark:
        benchmark_file("ppo_tuning")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("ppo_tuning"),
    script:
        "../workflow_scripts/step.py"


rule stop_tuning:
    """The outlier share of the early-stopping rule: the candidate of `rl.tuning.stop_shares` whose stops lose the
    least gold against the peak on the tuning seed's runs (rmood/rl/stopping.py)."""
    input:
        curves=[
            replicate(f"ppo/{name}/curve.json", TUNING_SEED) for name in TUNING_ARMS
        ],
    output:
        out=result("tuning/stop.json"),
    log:
        log_file("stop_tuning"),
    benchmark:
        benchmark_file("stop_tuning")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("stop_tuning"),
    script:
        "../workflow_scripts/step.py"
