"""The figures of the workflow, one entry each: the single source from which the workflow makes its
figure rules (``workflow/rules/figures.smk``), the report takes each figure's caption
(``workflow/report/<name>.rst``) and :func:`massmaps.evaluation.figures.make_figure` finds its drawing
function (named after the figure). Light on purpose: the workflow reads it when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FigureSpec:
    """One figure: ``name`` is the file stem of its outputs (one file per configured format), its caption
    file and its drawing function; ``rule`` the workflow rule that draws it; ``inputs`` the files it reads
    (names of :data:`INPUT_FILES`); ``config`` the config blocks it needs beyond ``figures``."""

    name: str
    rule: str
    inputs: tuple[str, ...]
    category: str
    config: tuple[str, ...] = ()
    mem_mb: int = 1000


#: What each input name stands for (the workflow maps them to the rule outputs that write them).
INPUT_FILES = {
    "catalog": "catalog/halos.parquet (halo_catalog)",
    "plan": "sightlines/plan.parquet (sightline_plan)",
    "dataset": "dataset/maps.zarr (assemble_dataset)",
    "splits": "split/splits.parquet (split_dataset)",
    "trajectory": "samples/trajectory.zarr (diffusion_trajectory)",
    "samples": "samples/<split>.zarr (sample_posterior)",
    "evaluation": "metrics/evaluation.zarr (evaluate_posterior)",
    "calibration": "metrics/calibration.csv (calibration)",
    "calibration_maps": "metrics/calibration_maps.csv (calibration)",
}

FIGURES: dict[str, FigureSpec] = {
    f.name: f
    for f in (
        FigureSpec(
            "fig1_mass_function",
            "figure_mass_function",
            ("catalog", "plan"),
            "Data",
            config=("catalog", "sightlines", "cosmology"),
        ),
        FigureSpec("fig2_example_maps", "figure_example_maps", ("dataset", "splits"), "Data"),
        FigureSpec("fig3_diffusion", "figure_diffusion", ("trajectory",), "Model"),
        FigureSpec("fig4_reconstructions", "figure_reconstructions", ("dataset", "samples"), "Evaluation", mem_mb=2000),
        # Figs 5-10 read only the evaluation's outputs: a plotting option reruns them and nothing upstream
        FigureSpec("fig5_convergence", "figure_convergence", ("evaluation",), "Evaluation"),
        FigureSpec("fig6_zscores", "figure_zscores", ("evaluation",), "Evaluation"),
        FigureSpec("fig7_profiles", "figure_profiles", ("evaluation",), "Evaluation"),
        FigureSpec("fig8_bias", "figure_bias", ("evaluation",), "Evaluation"),
        FigureSpec("fig9_correlation", "figure_correlation", ("evaluation",), "Evaluation"),
        FigureSpec(
            "fig10_calibration", "figure_calibration", ("evaluation", "calibration", "calibration_maps"), "Evaluation"
        ),
    )
}
