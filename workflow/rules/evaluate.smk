rule evaluate_posterior:
    input:
        samples=SAMPLE_STORES,
        dataset=MODEL_DATASET,
    output:
        evaluation=directory(f"{RESULTS}/metrics/evaluation.zarr"),
        summary=f"{RESULTS}/metrics/posterior_summary.json",
    log:
        f"{RESULTS}/logs/evaluate_posterior.log",
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


rule linear_baselines:
    input:
        dataset=MODEL_DATASET,
    output:
        per_k=report(
            f"{RESULTS}/metrics/linear_baselines.csv", caption="../report/linear_baselines.rst", category="Evaluation"
        ),
        per_scale=f"{RESULTS}/metrics/linear_baselines_scales.csv",
    log:
        f"{RESULTS}/logs/linear_baselines.log",
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        evaluation=EVALUATION,
        h=config["cosmology"]["H0"] / 100.0,
    script:
        "../scripts/linear_baselines.py"


rule conformal:
    input:
        evaluation=rules.evaluate_posterior.output.evaluation,
        validation=rules.sample_validation.output.samples,
        dataset=MODEL_DATASET,
    output:
        table=report(f"{RESULTS}/metrics/conformal.csv", caption="../report/conformal.rst", category="Evaluation"),
        markdown=f"{RESULTS}/metrics/conformal.md",
    log:
        f"{RESULTS}/logs/conformal.log",
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        seed=config["seed"],
    script:
        "../scripts/conformal.py"


rule table1:
    input:
        evaluation=rules.evaluate_posterior.output.evaluation,
    output:
        csv=report(f"{RESULTS}/metrics/table1.csv", caption="../report/table1.rst", category="Evaluation"),
        markdown=f"{RESULTS}/metrics/table1.md",
        latex=f"{RESULTS}/metrics/table1.tex",
        margins=report(f"{RESULTS}/metrics/r_margin.csv", caption="../report/r_margin.rst", category="Evaluation"),
    log:
        f"{RESULTS}/logs/table1.log",
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/table1.py"


rule diffusion_trajectory:
    input:
        model=rules.train_model.output.model,
        dataset=MODEL_DATASET,
        samples=SAMPLE_STORES,
        splits=rules.split_dataset.output.splits,
    output:
        trajectory=directory(f"{RESULTS}/samples/trajectory.zarr"),
    log:
        f"{RESULTS}/logs/diffusion_trajectory.log",
    conda:
        "../../envs/massmaps.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        sampling=config["sampling"],
        levels=config["evaluation"]["diffusion_levels"],
        seed=config["seed"],
    script:
        "../scripts/diffusion_trajectory.py"


rule calibration:
    input:
        evaluation=rules.evaluate_posterior.output.evaluation,
    output:
        table=report(f"{RESULTS}/metrics/calibration.csv", caption="../report/calibration.rst", category="Evaluation"),
        per_map=f"{RESULTS}/metrics/calibration_maps.csv",
        markdown=f"{RESULTS}/metrics/calibration.md",
    log:
        f"{RESULTS}/logs/calibration.log",
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        seed=config["seed"],
    script:
        "../scripts/calibration.py"
