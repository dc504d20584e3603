"""Rule observe_dataset: the observed tSZ and X-ray maps (instrument models at a redshift) of every sightline."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from massmaps import logs  # noqa: E402
from massmaps.observe.stage import observe_store  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
ds = observe_store(
    snakemake.input.dataset,  # noqa: F821
    snakemake.output.store,  # noqa: F821
    snakemake.params.observe,  # noqa: F821
    cosmology=snakemake.params.cosmology,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    chunk_sightlines=snakemake.params.chunk_sightlines,  # noqa: F821
)
units = dict(zip(ds["field"].values, ds["units"].values))
z = ds["redshift"].values
log.info(
    "observed %d sightlines at z %.3f-%.3f; input units tsz %s, xray %s",
    ds.sizes["sightline"], z.min(), z.max(), units["tsz"], units["xray"],
)  # fmt: skip
