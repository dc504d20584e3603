"""Rule train_model: fit the normalisation, train (or resume) the conditional score model.

Exits 75 after checkpointing when the time budget runs out or on SIGTERM/SIGUSR1; a rerun resumes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from massmaps import logs, reconstruct  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821
result = reconstruct.train_from_store(
    snakemake.input.dataset,  # noqa: F821
    pd.read_parquet(snakemake.input.splits),  # noqa: F821
    snakemake.output.model,  # noqa: F821
    snakemake.params.checkpoint_dir,  # noqa: F821
    training=snakemake.params.training,  # noqa: F821
    stretch=snakemake.params.normalisation["stretch"],  # noqa: F821
    log_decades=snakemake.params.normalisation["log_decades"],  # noqa: F821
)
log.info("trained to step %d (resumed from %s): train loss %s, val loss %s, %.1f images/s",
         result.step, result.resumed_from, result.train_loss, result.val_loss, result.images_per_s)
