"""Rule sightline_plan: a flat distribution of images in log mass."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821


from massmaps import files, logs  # noqa: E402
from massmaps.data import sightlines  # noqa: E402
from massmaps.data.catalog import write_parquet_atomic  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
cfg = snakemake.params.sightlines  # noqa: F821
halos = files.read_table(snakemake.input.catalog)  # noqa: F821
plan = sightlines.plan_sightlines(
    halos,
    target_per_bin=cfg["target_per_bin"],
    max_per_cluster=cfg["max_per_cluster"],
    n_shards=cfg["n_shards"],
    seed=snakemake.params.seed,  # noqa: F821
    bin_dex=cfg["bin_dex"],
    log10_min=cfg["log10_min"],
    split=snakemake.params.split,  # noqa: F821
)
edges, counts = sightlines.bin_counts(
    plan["log10_M200m"].to_numpy(), bin_dex=cfg["bin_dex"], log10_min=cfg["log10_min"]
)
log.info("%d sightlines of %d halos in %d shards", len(plan), plan["halo_id"].nunique(), cfg["n_shards"])
for name, part in plan.groupby("split"):
    log.info("  %s: %d sightlines of %d clusters", name, len(part), part["halo_id"].nunique())
for e, c in zip(edges, counts):
    log.info("  log10 M200m in [%.2f, %.2f): %d images", e, e + cfg["bin_dex"], c)
write_parquet_atomic(plan, snakemake.output.plan)  # noqa: F821
