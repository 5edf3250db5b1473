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
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        **step_params("data"),
    script:
        "../workflow_scripts/step.py"
