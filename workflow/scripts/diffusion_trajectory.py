"""Rule diffusion_trajectory: the trained model's forward and reverse SDE on one test sightline (Fig. 3)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

import torch  # noqa: E402

from massmaps import files, logs, store  # noqa: E402
from massmaps.learning import reconstruct  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821
cfg = snakemake.params.sampling  # noqa: F821
t = reconstruct.diffusion_trajectory(
    snakemake.input.model,  # noqa: F821
    snakemake.input.dataset,  # noqa: F821
    snakemake.input.samples,  # noqa: F821
    levels=snakemake.params.levels,  # noqa: F821
    sampler=cfg["sampler"],
    steps=cfg["steps"],
    sampler_kwargs=cfg["sampler_kwargs"],
    seed=snakemake.params.seed,  # noqa: F821
    device=cfg["device"],
    prior_mean=cfg["prior_mean"],
    splits=files.read_table(snakemake.input.splits),  # noqa: F821
)
store.write_store(t, snakemake.output.trajectory)  # noqa: F821
log.info(
    "sightline %s (M200m = %.3g Msun): levels %s reached at %s",
    t.attrs["sightline_id"],
    t.attrs["M200m_Msun"],
    t["sigma"].values,
    t["sigma_reached"].values,
)
