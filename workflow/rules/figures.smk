# One rule per figure, made from massmaps.evaluation.figure_specs.FIGURES (name, rule, inputs, report
# category, config blocks); each figure's caption is ../report/<name>.rst.
FIGURE_INPUTS = {
    "catalog": rules.halo_catalog.output.catalog,
    "plan": rules.sightline_plan.output.plan,
    "dataset": MODEL_DATASET,
    "splits": rules.split_dataset.output.splits,
    "trajectory": rules.diffusion_trajectory.output.trajectory,
    "samples": SAMPLE_STORES,
    "evaluation": rules.evaluate_posterior.output.evaluation,
    "calibration": rules.calibration.output.table,
    "calibration_maps": rules.calibration.output.per_map,
}

for _fig in FIGURE_SPECS.values():

    rule:
        name:
            _fig.rule
        input:
            **{key: FIGURE_INPUTS[key] for key in _fig.inputs},
        output:
            report(get_figure(_fig.name), caption=f"../report/{_fig.name}.rst", category=_fig.category),
        log:
            f"{RESULTS}/logs/{_fig.rule}.log",
        conda:
            "../../envs/massmaps.yaml"
        resources:
            mem_mb=_fig.mem_mb,
            runtime=10,
        params:
            name=_fig.name,
            figures=config["figures"],
            config={key: config[key] for key in _fig.config},
        script:
            "../scripts/figure.py"
