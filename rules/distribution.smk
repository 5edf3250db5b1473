rule dist_prompts:
    """The handful of eval prompts whose response distribution is analysed, one file each."""
    input:
        prompts=result("data/eval.jsonl"),
    output:
        out=expand(result("distribution/prompts/{prompt}.jsonl"), prompt=DIST_PROMPTS),
    log:
        log_file("dist_prompts"),
    benchmark:
        benchmark_file("dist_prompts")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("dist_prompts"),
    script:
        "../workflow_scripts/step.py"


use rule bon_sampling as dist_sampling with:
    input:
        model=policy_file("sft/model"),
        prompt_files=[result("distribution/prompts/{prompt}.jsonl")],
    output:
        out=policy_file("distribution/samples/{prompt}.jsonl"),
    log:
        log_file(policy_job("dist_sampling/{prompt}")),
    benchmark:
        benchmark_file(policy_job("dist_sampling/{prompt}"))
    params:
        **step_params(SAMPLE_STEP, sampling=DIST_SAMPLING, seed=policy_seed),
        shard=0,


use rule bon_score as dist_label with:
    input:
        model=lambda wildcards: rm_model(wildcards.name, wildcards.rep),
        samples=policy_file("distribution/samples/{prompt}.jsonl"),
        prompt_files=[result("distribution/prompts/{prompt}.jsonl")],
    output:
        out=replicate("distribution/{name}/rewards_{prompt}.jsonl"),
    log:
        log_file("rep{rep}/dist_label/{name}/{prompt}"),
    benchmark:
        benchmark_file("rep{rep}/dist_label/{name}/{prompt}")
    params:
        **step_params("score"),


use rule gold_labeling as dist_gold with:
    input:
        samples=policy_file("distribution/samples/{prompt}.jsonl"),
        prompt_files=[result("distribution/prompts/{prompt}.jsonl")],
    output:
        out=policy_file("distribution/gold/{prompt}.jsonl"),
    log:
        log_file(policy_job("dist_gold/{prompt}")),
    benchmark:
        benchmark_file(policy_job("dist_gold/{prompt}"))
    params:
        **step_params("gold"),


rule dist_representations:
    """The RM's representation of every sampled response (the input of its reward head)."""
    input:
        model=lambda wildcards: rm_model(wildcards.name, wildcards.rep),
        samples=policy_file("distribution/samples/{prompt}.jsonl"),
        prompt_files=[result("distribution/prompts/{prompt}.jsonl")],
    output:
        out=replicate("distribution/{name}/representation_{prompt}.npy"),
    log:
        log_file("rep{rep}/dist_representations/{name}/{prompt}"),
    benchmark:
        benchmark_file("rep{rep}/dist_representations/{name}/{prompt}")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("dist_representations"),
    script:
        "../workflow_scripts/step.py"


rule score_weight:
    """The RM's reward direction in representation space (for the MRM: the GDA weight)."""
    input:
        model=lambda wildcards: rm_model(wildcards.name, wildcards.rep),
    output:
        out=replicate("distribution/{name}/weight.npy"),
    log:
        log_file("rep{rep}/score_weight/{name}"),
    benchmark:
        benchmark_file("rep{rep}/score_weight/{name}")
    conda:
        MAIN_ENV
    threads: config["resources"]["score"]["cpus"]
    resources:
        **job_resources("score"),
    params:
        **step_params("score_weight"),
    script:
        "../workflow_scripts/step.py"


rule dist_pca:
    """PCA of each prompt's sampled representations coloured by reward, with the reward direction."""
    input:
        representations=expand(
            replicate("distribution/{name}/representation_{prompt}.npy"),
            prompt=DIST_PROMPTS,
            allow_missing=True,
        ),
        rewards=expand(
            replicate("distribution/{name}/rewards_{prompt}.jsonl"),
            prompt=DIST_PROMPTS,
            allow_missing=True,
        ),
        weight=replicate("distribution/{name}/weight.npy"),
    output:
        out_png=report(
            replicate("distribution/{name}/pca.png"),
            caption="../report/dist_pca.rst",
            category="Representations",
        ),
        out_json=replicate("distribution/{name}/pca.json"),
    log:
        log_file("rep{rep}/dist_pca/{name}"),
    benchmark:
        benchmark_file("rep{rep}/dist_pca/{name}")
    conda:
        MAIN_ENV
    threads: config["resources"]["analysis"]["cpus"]
    resources:
        **job_resources("analysis"),
    params:
        **step_params("dist_pca"),
    script:
        "../workflow_scripts/step.py"


rule tsne:
    """t-SNE of the training pairs' chosen vs rejected representations."""
    input:
        chosen=replicate("mrm/representations/chosen.npy"),
        rejected=replicate("mrm/representations/rejected.npy"),
        weight=replicate("distribution/rm/weight.npy"),
    output:
        out_png=report(
            replicate("distribution/visual/tsne.png"),
            caption="../report/tsne.rst",
            category="Representations",
        ),
        out_json=replicate("distribution/visual/tsne.json"),
    log:
        log_file("rep{rep}/tsne"),
    benchmark:
        benchmark_file("rep{rep}/tsne")
    conda:
        MAIN_ENV
    threads: config["resources"]["analysis"]["cpus"]
    resources:
        **job_resources("analysis"),
    params:
        **step_params("tsne"),
    script:
        "../workflow_scripts/step.py"


rule pca_mode:
    """PCA of the training pairs' representations after one transform (pair, prompt_subtract, ...)."""
    input:
        chosen=replicate("mrm/representations/chosen.npy"),
        rejected=replicate("mrm/representations/rejected.npy"),
        message=replicate("mrm/representations/message.npy"),
        weight=replicate("distribution/rm/weight.npy"),
    output:
        out_png=report(
            replicate("distribution/visual/pca_{mode}.png"),
            caption="../report/pca_mode.rst",
            category="Representations",
        ),
        out_json=replicate("distribution/visual/pca_{mode}.json"),
    log:
        log_file("rep{rep}/pca_mode/{mode}"),
    benchmark:
        benchmark_file("rep{rep}/pca_mode/{mode}")
    conda:
        MAIN_ENV
    threads: config["resources"]["analysis"]["cpus"]
    resources:
        **job_resources("analysis"),
    params:
        **step_params("pca_mode", mode=lambda wildcards: wildcards.mode),
    script:
        "../workflow_scripts/step.py"


rule center:
    """Inner products of the training pairs' centres with the reward direction."""
    input:
        chosen=replicate("mrm/representations/chosen.npy"),
        rejected=replicate("mrm/representations/rejected.npy"),
        weight=replicate("distribution/rm/weight.npy"),
    output:
        out_png=report(
            replicate("distribution/visual/center.png"),
            caption="../report/center.rst",
            category="Representations",
        ),
        out_json=replicate("distribution/visual/center.json"),
    log:
        log_file("rep{rep}/center"),
    benchmark:
        benchmark_file("rep{rep}/center")
    conda:
        MAIN_ENV
    threads: config["resources"]["analysis"]["cpus"]
    resources:
        **job_resources("analysis"),
    params:
        **step_params("center"),
    script:
        "../workflow_scripts/step.py"


use rule center as difference with:
    output:
        out_png=report(
            replicate("distribution/visual/difference.png"),
            caption="../report/difference.rst",
            category="Representations",
        ),
        out_json=replicate("distribution/visual/difference.json"),
    log:
        log_file("rep{rep}/difference"),
    benchmark:
        benchmark_file("rep{rep}/difference")
    params:
        **step_params("difference"),
