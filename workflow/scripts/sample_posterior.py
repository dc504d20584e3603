"""Rule sample_posterior: posterior samples per sightline of one split (or of one group of its sightlines,
sampling.groups), in physical units."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

import torch  # noqa: E402

from massmaps import files, logs, store  # noqa: E402
from massmaps.learning import reconstruct  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821
cfg = snakemake.params.sampling  # noqa: F821
ds = reconstruct.sample_from_store(
    snakemake.input.model,  # noqa: F821
    snakemake.input.dataset,  # noqa: F821
    files.read_table(snakemake.input.splits),  # noqa: F821
    which=cfg["split"],
    eval_range_only=cfg["eval_range_only"],
    n_samples=cfg["n_samples"],
    sampler=cfg["sampler"],
    steps=cfg["steps"],
    batch_size=cfg["batch_size"],
    seed=snakemake.params.seed,  # noqa: F821
    device=cfg["device"],
    sampler_kwargs=cfg["sampler_kwargs"],
    prior_mean=cfg["prior_mean"],
    precision=cfg["precision"],
    compile=cfg["compile"],
    resume_dir=snakemake.params.resume_dir,  # noqa: F821
    groups=cfg["groups"],
    group=int(snakemake.wildcards.get("group", 0)),  # noqa: F821
)
store.write_store(ds, snakemake.output.samples, chunk_sightlines=1)  # noqa: F821
reconstruct.clear_resume(snakemake.params.resume_dir)  # noqa: F821
log.info(
    "%d sightlines x %d samples (%s, %s NFE per sample)",
    ds.sizes["sightline"],
    ds.sizes["sample"],
    ds.attrs["sampler"],
    ds.attrs["nfe_per_sample"],
)
