rule halo_catalog:
    output:
        catalog=f"{RESULTS}/catalog/halos.parquet",
    log:
        f"{RESULTS}/logs/halo_catalog.log",
    params:
        catalog=config["catalog"],
        cosmology=config["cosmology"],
        seed=config["seed"],
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/halo_catalog.py"
