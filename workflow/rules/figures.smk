rule figure_mass_function:
    input:
        catalog=rules.halo_catalog.output.catalog,
        plan=rules.sightline_plan.output.plan,
    output:
        report(
            get_figure("fig1_mass_function"),
            caption="../report/fig1_mass_function.rst",
            category="Data",
        ),
    log:
        f"{RESULTS}/logs/figure_mass_function.log",
    params:
        catalog=config["catalog"],
        sightlines=config["sightlines"],
        cosmology=config["cosmology"],
        figures=config["figures"],
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/figure_mass_function.py"


rule figure_example_maps:
    input:
        dataset=rules.assemble_dataset.output.store,
        splits=rules.split_dataset.output.splits,
    output:
        report(get_figure("fig2_example_maps"), caption="../report/fig2_example_maps.rst", category="Data"),
    log:
        f"{RESULTS}/logs/figure_example_maps.log",
    params:
        name="fig2_example_maps",
        figures=config["figures"],
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/figure.py"


rule figure_diffusion:
    input:
        trajectory=rules.diffusion_trajectory.output.trajectory,
    output:
        report(get_figure("fig3_diffusion"), caption="../report/fig3_diffusion.rst", category="Model"),
    log:
        f"{RESULTS}/logs/figure_diffusion.log",
    params:
        name="fig3_diffusion",
        figures=config["figures"],
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/figure.py"


rule figure_reconstructions:
    input:
        dataset=rules.assemble_dataset.output.store,
        samples=rules.sample_posterior.output.samples,
    output:
        report(get_figure("fig4_reconstructions"), caption="../report/fig4_reconstructions.rst", category="Evaluation"),
    log:
        f"{RESULTS}/logs/figure_reconstructions.log",
    params:
        name="fig4_reconstructions",
        figures=config["figures"],
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/figure.py"


# Figs 5-9 read only the evaluation store: a plotting option reruns these rules and nothing upstream.
for _name, _rule, _caption in (
    ("fig5_convergence", "figure_convergence", "fig5_convergence.rst"),
    ("fig6_zscores", "figure_zscores", "fig6_zscores.rst"),
    ("fig7_profiles", "figure_profiles", "fig7_profiles.rst"),
    ("fig8_bias", "figure_bias", "fig8_bias.rst"),
    ("fig9_correlation", "figure_correlation", "fig9_correlation.rst"),
):

    rule:
        name:
            _rule
        input:
            evaluation=rules.evaluate_posterior.output.evaluation,
        output:
            report(get_figure(_name), caption=f"../report/{_caption}", category="Evaluation"),
        log:
            f"{RESULTS}/logs/{_rule}.log",
        params:
            name=_name,
            figures=config["figures"],
        conda:
            "../../envs/massmaps.yaml"
        resources:
            mem_mb=1000,
            runtime=10,
        script:
            "../scripts/figure.py"


rule figure_calibration:
    input:
        evaluation=rules.evaluate_posterior.output.evaluation,
        calibration=rules.calibration.output.table,
        calibration_maps=rules.calibration.output.per_map,
    output:
        report(get_figure("fig10_calibration"), caption="../report/fig10_calibration.rst", category="Evaluation"),
    log:
        f"{RESULTS}/logs/figure_calibration.log",
    params:
        name="fig10_calibration",
        figures=config["figures"],
    conda:
        "../../envs/massmaps.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/figure.py"
