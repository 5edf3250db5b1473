rule data:
    """Normalised prompt splits (synthetic, or AlpacaFarm read with `datasets`)."""
    output:
        out=data_files(SPLITS),
    params:
        **step_params("data"),
    log:
        log_file("data"),
    benchmark:
        benchmark_file("data")
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../workflow_scripts/step.py"
