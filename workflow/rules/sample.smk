# sampling.groups > 1: one sample_posterior job per group of the split's sightlines, each with its own
# store; SAMPLE_STORES (one path, or the groups' paths) is what the evaluation and figures read as one store
SAMPLING_GROUPS = config["sampling"]["groups"]
SAMPLES_NAME = f"{RESULTS}/samples/{config['sampling']['split']}"
SAMPLES_GROUP = "" if SAMPLING_GROUPS == 1 else f".group{{group}}of{SAMPLING_GROUPS}"
SAMPLE_STORES = (
    f"{SAMPLES_NAME}.zarr"
    if SAMPLING_GROUPS == 1
    else expand(f"{SAMPLES_NAME}{SAMPLES_GROUP}.zarr", group=range(SAMPLING_GROUPS))
)


rule sample_posterior:
    input:
        model=rules.train_model.output.model,
        dataset=MODEL_DATASET,
        splits=rules.split_dataset.output.splits,
    output:
        samples=directory(f"{SAMPLES_NAME}{SAMPLES_GROUP}.zarr"),
    log:
        f"{RESULTS}/logs/sample_posterior{SAMPLES_GROUP}.log",
    wildcard_constraints:
        group=r"\d+",
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
        resume_dir=lambda wildcards: f"{RESULTS}/checkpoints/samples_{config['sampling']['split']}"
        + (f"_group{wildcards.group}of{SAMPLING_GROUPS}" if SAMPLING_GROUPS > 1 else ""),
    script:
        "../scripts/sample_posterior.py"


# evaluation.conformal: the same sampler on the validation split's sightlines in the evaluation range, on
# which the conformal recalibration of the credible intervals is fitted (rule conformal)
use rule sample_posterior as sample_validation with:
    output:
        samples=directory(f"{RESULTS}/samples/validation.zarr"),
    log:
        f"{RESULTS}/logs/sample_validation.log",
    params:
        sampling={**config["sampling"], "split": "val", "groups": 1},
        seed=config["seed"],
        resume_dir=f"{RESULTS}/checkpoints/samples_validation",
