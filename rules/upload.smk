rule upload:
    """Push one model to the Hugging Face Hub (upload.enabled); the token comes from HF_TOKEN."""
    input:
        model=lambda wildcards: upload_source(wildcards.model),
    output:
        out=result("upload/{model}.json"),
    log:
        log_file("upload/{model}"),
    benchmark:
        benchmark_file("upload/{model}")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params(
            "upload",
            repo_id=lambda wildcards: f"{config['upload']['namespace']}/rmood-{EXPERIMENT}-{wildcards.model}",
        ),
    script:
        "../workflow_scripts/step.py"
