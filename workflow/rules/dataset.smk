rule assemble_dataset:
    input:
        shards=get_shard_stores,
    output:
        store=directory(f"{RESULTS}/dataset/maps.zarr"),
    log:
        f"{RESULTS}/logs/assemble_dataset.log",
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        chunk_sightlines=config["dataset"]["chunk_sightlines"],
    script:
        "../scripts/assemble_dataset.py"
