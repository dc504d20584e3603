# The observing ablation (config ablation.observing; docs/observing.md): for each named variant, the run's
# clean dataset observed with the variant's instruments, a model trained on it, samples of the test split
# and their evaluation, as the main pipeline does them (the same scripts); then one table and one r(k)
# figure over the variants, in the report. A variant that the main run already is reuses its dataset and
# model. Target: observing_ablation (or the default target, when variants are configured).
# (ABLATION, OBSERVING_VARIANTS and the input functions are in common.smk.)
# sampling as the run's, with the ablation's sample count, in one job a variant
ABLATION_SAMPLING = {**config["sampling"], "n_samples": config["ablation"]["n_samples"], "groups": 1}


wildcard_constraints:
    variant="|".join(re.escape(v) for v in OBSERVING_VARIANTS) or "(?!)",


# Each stage is the main pipeline's rule (same script, resources and environment) with the variant's files.
use rule observe_dataset as ablation_observe_dataset with:
    input:
        dataset=rules.assemble_dataset.output.store,
        sky=get_ablation_sky_files,
    output:
        store=directory(f"{ABLATION}/{{variant}}/maps.zarr"),
    log:
        f"{RESULTS}/logs/ablation/observe_dataset_{{variant}}.log",
    params:
        observe=lambda wildcards: OBSERVING_VARIANTS[wildcards.variant],
        cosmology=config["cosmology"],
        seed=config["seed"],
        chunk_sightlines=config["dataset"]["chunk_sightlines"],


use rule train_model as ablation_train_model with:
    input:
        dataset=get_ablation_dataset,
        splits=rules.split_dataset.output.splits,
    output:
        model=directory(f"{ABLATION}/{{variant}}/model"),
    log:
        f"{RESULTS}/logs/ablation/train_model_{{variant}}.log",
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


use rule sample_posterior as ablation_sample_posterior with:
    input:
        model=get_ablation_model,
        dataset=get_ablation_dataset,
        splits=rules.split_dataset.output.splits,
    output:
        samples=directory(f"{ABLATION}/{{variant}}/samples.zarr"),
    log:
        f"{RESULTS}/logs/ablation/sample_posterior_{{variant}}.log",
    params:
        sampling=ABLATION_SAMPLING,
        seed=config["seed"],
        resume_dir=lambda wildcards: f"{ABLATION}/{wildcards.variant}/checkpoints/samples",


use rule evaluate_posterior as ablation_evaluate_posterior with:
    input:
        samples=rules.ablation_sample_posterior.output.samples,
        dataset=get_ablation_dataset,
    output:
        evaluation=directory(f"{ABLATION}/{{variant}}/evaluation.zarr"),
        summary=f"{ABLATION}/{{variant}}/posterior_summary.json",
    log:
        f"{RESULTS}/logs/ablation/evaluate_posterior_{{variant}}.log",


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
