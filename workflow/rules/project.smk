rule project_shard:
    input:
        catalog=rules.halo_catalog.output.catalog,
        plan=rules.sightline_plan.output.plan,
    output:
        store=directory(f"{RESULTS}/shards/shard_{{shard}}.zarr"),
    log:
        f"{RESULTS}/logs/project_shard/{{shard}}.log",
    params:
        mock=MOCK_CONFIG,
        projection=config["projection"],
        data_hash=DATA_HASH,
    conda:
        "../../envs/massmaps.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    script:
        "../scripts/project_shard.py"
