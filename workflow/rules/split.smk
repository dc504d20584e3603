rule split_dataset:
    input:
        dataset=rules.assemble_dataset.output.store,
    output:
        splits=f"{RESULTS}/split/splits.parquet",
    log:
        f"{RESULTS}/logs/split_dataset.log",
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        split=config["split"],
        seed=config["seed"],
    script:
        "../scripts/split_dataset.py"
