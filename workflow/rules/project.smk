rule project_shard:
    input:
        catalog=rules.halo_catalog.output.catalog,
        plan=rules.sightline_plan.output.plan,
        snapshot=get_snapshot_files,
    output:
        store=directory(f"{RESULTS}/shards/shard_{{shard}}.zarr"),
    log:
        f"{RESULTS}/logs/project_shard/{{shard}}.log",
    conda:
        "../../envs/massmaps.yaml"
    threads: config["projection"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        source=config["particles"]["source"],
        mock=MOCK_CONFIG,
        snapshot=config["particles"]["snapshot"],
        cosmology=config["cosmology"],
        projection=PROJECTION,
        data_hash=DATA_HASH,
    script:
        "../scripts/project_shard.py"
