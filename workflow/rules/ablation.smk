# The observing ablation (config ablation.observing; docs/observing.md): for each named variant, the run's
# clean dataset observed with the variant's instruments, a model trained on it, samples of the test split
# and their evaluation, as the main pipeline does them (the same scripts); then one table and one r(k)
# figure over the variants, in the report. A variant that the main run already is reuses its dataset and
# model. Target: observing_ablation (or the default target, when variants are configured).
ABLATION = f"{RESULTS}/ablation/observing"
OBSERVING_VARIANTS = config["ablation"]["observing"]
# sampling as the run's, with the ablation's sample count, in one job a variant
ABLATION_SAMPLING = {**config["sampling"], "n_samples": config["ablation"]["n_samples"], "groups": 1}


wildcard_constraints:
    variant="|".join(re.escape(v) for v in OBSERVING_VARIANTS) or "(?!)",


def ablation_training_hash(variant):
    return config_checks.training_hash({**config, "observe": OBSERVING_VARIANTS[variant]})


def get_ablation_dataset(wildcards):
    # the clean maps for a variant without instruments; the main run's maps for the main run's instruments
    observe = OBSERVING_VARIANTS[wildcards.variant]
    if is_ideal(observe):
        return rules.assemble_dataset.output.store
    if observe == config["observe"]:
        return MODEL_DATASET
    return f"{ABLATION}/{wildcards.variant}/maps.zarr"


def get_ablation_model(wildcards):
    if ablation_training_hash(wildcards.variant) == TRAINING_HASH:
        return rules.train_model.output.model
    return f"{ABLATION}/{wildcards.variant}/model"


def get_ablation_sky_files(wildcards):
    sky = OBSERVING_VARIANTS[wildcards.variant]["tsz"].get("sky_cl_file")
    return [sky] if sky else []


def get_ablation_evaluations(wildcards):
    if not OBSERVING_VARIANTS:
        raise ValueError(
            "config: ablation.observing is empty; expected variant names with observe blocks, "
            "e.g. --configfile config/observing_ablation.yaml"
        )
    return expand(f"{ABLATION}/{{variant}}/evaluation.zarr", variant=list(OBSERVING_VARIANTS))


rule ablation_observe_dataset:
    input:
        dataset=rules.assemble_dataset.output.store,
        sky=get_ablation_sky_files,
    output:
        store=directory(f"{ABLATION}/{{variant}}/maps.zarr"),
    log:
        f"{RESULTS}/logs/ablation/observe_dataset_{{variant}}.log",
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        observe=lambda wildcards: OBSERVING_VARIANTS[wildcards.variant],
        cosmology=config["cosmology"],
        seed=config["seed"],
        chunk_sightlines=config["dataset"]["chunk_sightlines"],
    script:
        "../scripts/observe_dataset.py"


rule ablation_train_model:
    input:
        dataset=get_ablation_dataset,
        splits=rules.split_dataset.output.splits,
    output:
        model=directory(f"{ABLATION}/{{variant}}/model"),
    log:
        f"{RESULTS}/logs/ablation/train_model_{{variant}}.log",
    conda:
        "../../envs/massmaps.yaml"
    threads: 2
    resources:
        **training_resources(config["training"]),
        mem_mb=8000,
        runtime=240,
    params:
        training=config["training"],
        normalisation=config["normalisation"],
        provenance=lambda wildcards: {
            "cosmology": config["cosmology"],
            "observe": OBSERVING_VARIANTS[wildcards.variant],
            "training_hash": ablation_training_hash(wildcards.variant),
        },
        checkpoint_dir=lambda wildcards: f"{ABLATION}/{wildcards.variant}/checkpoints/"
        + ablation_training_hash(wildcards.variant),
    script:
        "../scripts/train_model.py"


rule ablation_sample_posterior:
    input:
        model=get_ablation_model,
        dataset=get_ablation_dataset,
        splits=rules.split_dataset.output.splits,
    output:
        samples=directory(f"{ABLATION}/{{variant}}/samples.zarr"),
    log:
        f"{RESULTS}/logs/ablation/sample_posterior_{{variant}}.log",
    conda:
        "../../envs/massmaps.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1 if config["sampling"]["device"] in ("auto", "cuda") else 0,
    params:
        sampling=ABLATION_SAMPLING,
        seed=config["seed"],
        resume_dir=lambda wildcards: f"{ABLATION}/{wildcards.variant}/checkpoints/samples",
    script:
        "../scripts/sample_posterior.py"


rule ablation_evaluate_posterior:
    input:
        samples=rules.ablation_sample_posterior.output.samples,
        dataset=get_ablation_dataset,
    output:
        evaluation=directory(f"{ABLATION}/{{variant}}/evaluation.zarr"),
        summary=f"{ABLATION}/{{variant}}/posterior_summary.json",
    log:
        f"{RESULTS}/logs/ablation/evaluate_posterior_{{variant}}.log",
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        evaluation=EVALUATION,
        h=config["cosmology"]["H0"] / 100.0,
    script:
        "../scripts/evaluate_posterior.py"


rule observing_ablation:
    input:
        evaluations=get_ablation_evaluations,
    output:
        table=report(
            f"{ABLATION}/ablation.csv", caption="../report/observing_ablation.rst", category="Observing ablation"
        ),
        markdown=f"{ABLATION}/ablation.md",
        curves=f"{ABLATION}/r_of_k.csv",
        figure=report(
            f"{ABLATION}/r_of_k.png", caption="../report/observing_ablation_r_of_k.rst", category="Observing ablation"
        ),
    log:
        f"{RESULTS}/logs/ablation/observing_ablation.log",
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        variants=OBSERVING_VARIANTS,
        cosmology=config["cosmology"],
        seed=config["seed"],
    script:
        "../scripts/observing_ablation.py"
