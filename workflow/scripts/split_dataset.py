"""Rule split_dataset: train/val/test by cluster, stratified in log mass."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from massmaps import logs, store  # noqa: E402
from massmaps.data.catalog import write_parquet_atomic  # noqa: E402
from massmaps.learning import split  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
cfg = snakemake.params.split  # noqa: F821
table = split.split_table(
    store.open_store(snakemake.input.dataset),  # noqa: F821
    fractions=cfg["fractions"],
    bin_dex=cfg["bin_dex"],
    seed=snakemake.params.seed,  # noqa: F821
    eval_range_Msun=cfg["eval_mass_range_Msun"],
)
for name, part in table.groupby("split"):
    log.info(
        "%s: %d sightlines of %d clusters (%d in the evaluation range)",
        name,
        len(part),
        part["halo_id"].nunique(),
        int(part["in_eval_range"].sum()),
    )
write_parquet_atomic(table, snakemake.output.splits)  # noqa: F821
