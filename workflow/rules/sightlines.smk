rule sightline_plan:
    input:
        catalog=rules.halo_catalog.output.catalog,
    output:
        plan=f"{RESULTS}/sightlines/plan.parquet",
    log:
        f"{RESULTS}/logs/sightline_plan.log",
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        sightlines=config["sightlines"],
        split=config["split"],
        seed=config["seed"],
    script:
        "../scripts/sightline_plan.py"
