"""Rule evaluate_posterior: pixel correlation, total-mass error and z-scores of the posterior mean."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

import json  # noqa: E402

from massmaps import logs, reconstruct, store  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
summary = reconstruct.evaluate_samples(
    store.open_store(snakemake.input.samples),  # noqa: F821
    store.open_store(snakemake.input.dataset),  # noqa: F821
)
log.info("%s", json.dumps(summary, indent=1))
reconstruct.write_json_atomic(summary, snakemake.output.summary)  # noqa: F821
