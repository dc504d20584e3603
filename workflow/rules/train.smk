from massmaps.learning.launch import rule_resources as training_resources


rule train_model:
    input:
        dataset=MODEL_DATASET,
        splits=rules.split_dataset.output.splits,
    output:
        model=directory(f"{RESULTS}/model"),
    log:
        f"{RESULTS}/logs/train_model.log",
    conda:
        "../../envs/massmaps.yaml"
    threads: 2
    # gpu=1 for one process (0 on the CPU); with training.nodes x processes_per_node > 1 processes, one
    # Slurm task per rank and the GPUs per node (massmaps.learning.launch.rule_resources)
    resources:
        **training_resources(config["training"]),
        mem_mb=8000,
        runtime=240,
    params:
        training=config["training"],
        normalisation=config["normalisation"],
        # recorded in the model directory for `massmaps predict`
        provenance={"cosmology": config["cosmology"], "observe": config["observe"], "training_hash": TRAINING_HASH},
        # checkpoints live outside the declared output (Snakemake deletes that on failure),
        # in a folder keyed by everything that shapes the model, so a changed config starts afresh
        checkpoint_dir=f"{RESULTS}/checkpoints/{TRAINING_HASH}",
    script:
        "../scripts/train_model.py"
