"""Rule assemble_dataset: concatenate the shard stores into one dataset store."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from massmaps import logs, store  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
ds = store.assemble(
    snakemake.input.shards,  # noqa: F821
    snakemake.output.store,  # noqa: F821
    chunk_sightlines=snakemake.params.chunk_sightlines,  # noqa: F821
)
log.info("assembled %d sightlines from %d shards", ds.sizes["sightline"], len(snakemake.input.shards))  # noqa: F821
