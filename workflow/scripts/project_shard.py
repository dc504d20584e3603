"""Rule project_shard: build particles (mock or snapshot) and project every sightline of one shard to zarr."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

import numba  # noqa: E402

from massmaps import files, logs, store  # noqa: E402
from massmaps.projection.shards import project_shard  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
numba.set_num_threads(max(1, min(snakemake.threads, numba.config.NUMBA_NUM_THREADS)))  # noqa: F821
proj = snakemake.params.projection  # noqa: F821
ds = project_shard(
    files.read_table(snakemake.input.catalog),  # noqa: F821
    files.read_table(snakemake.input.plan),  # noqa: F821
    int(snakemake.wildcards.shard),  # noqa: F821
    source=snakemake.params.source,  # noqa: F821
    # the k-d tree queries use the job's threads, as the projection kernels do
    mock_config={**snakemake.params.mock, "sph_workers": snakemake.threads},  # noqa: F821
    snapshot_config={**snakemake.params.snapshot, "sph_workers": snakemake.threads},  # noqa: F821
    cosmology=snakemake.params.cosmology,  # noqa: F821
    npix=proj["npix"],
    pixel_Mpc=proj["pixel_Mpc"],
    backend=proj["backend"],
    fields=proj["fields"],
    attrs={"config_hash": snakemake.params.data_hash},  # noqa: F821
)
store.write_store(ds, snakemake.output.store)  # noqa: F821
log.info("wrote %s: %d sightlines", snakemake.output.store, ds.sizes["sightline"])  # noqa: F821
