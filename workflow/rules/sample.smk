rule sample_posterior:
    input:
        model=rules.train_model.output.model,
        dataset=MODEL_DATASET,
        splits=rules.split_dataset.output.splits,
    output:
        samples=directory(f"{RESULTS}/samples/{config['sampling']['split']}.zarr"),
    log:
        f"{RESULTS}/logs/sample_posterior.log",
    conda:
        "../../envs/massmaps.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1 if config["sampling"]["device"] in ("auto", "cuda") else 0,
    params:
        sampling=config["sampling"],
        seed=config["seed"],
        # per-sightline samples of an interrupted job, outside the declared output (which Snakemake deletes)
        resume_dir=f"{RESULTS}/checkpoints/samples_{config['sampling']['split']}",
    script:
        "../scripts/sample_posterior.py"
