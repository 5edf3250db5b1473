rule data:
    """Normalised prompt splits (synthetic, or AlpacaFarm read with `datasets`)."""
    output:
        out=data_files(SPLITS),
    log:
        log_file("data"),
    benchmark:
        benchmark_file("data")
    conda:
        MAIN_ENV
    threads: config["resources"]["light"]["cpus"]
    resources:
        **job_resources("light"),
    params:
        **step_params("data"),
    script:
        "../workflow_scripts/step.py"
