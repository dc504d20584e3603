"""Rule figure_mass_function: Fig. 1 (clusters and images per 0.1 dex)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821


from massmaps import files, logs  # noqa: E402
from massmaps.cosmology import CosmologyParams  # noqa: E402
from massmaps.data import catalog  # noqa: E402
from massmaps.evaluation import plotting  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
cat_cfg, sl_cfg = snakemake.params.catalog, snakemake.params.sightlines  # noqa: F821
halos = files.read_table(snakemake.input.catalog)  # noqa: F821
plan = files.read_table(snakemake.input.plan)  # noqa: F821
expected = None
if cat_cfg["source"] == "hmf":
    expected = catalog.expected_counts_per_bin(
        cat_cfg["box_Mpc"] ** 3,
        halos["log10_M200m"].max(),
        log10_min=sl_cfg["log10_min"],
        bin_dex=sl_cfg["bin_dex"],
        n_total=cat_cfg["n_halos"],
        m_max=cat_cfg["m_max_Msun"],
        params=CosmologyParams(**snakemake.params.cosmology),  # noqa: F821
        model=cat_cfg["mass_function"],
    )
fig = plotting.figure1_mass_function(
    halos,
    plan,
    expected_per_bin=expected,
    target_per_bin=sl_cfg["target_per_bin"],
    bin_dex=sl_cfg["bin_dex"],
    log10_min=sl_cfg["log10_min"],
)
plotting.save_figure(fig, snakemake.output, dpi=snakemake.params.figures["dpi"])  # noqa: F821
log.info("wrote %s", list(snakemake.output))  # noqa: F821
