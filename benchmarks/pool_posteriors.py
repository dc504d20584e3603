"""Pool the posterior samples of several trainings (a deep ensemble) into one samples store.

If a posterior is too narrow on clusters the network never saw because one training fixes one of many
equally good fits (the network's own, epistemic, uncertainty), trainings that differ only in their seed
disagree on unseen clusters and pooling their samples widens the posterior where it should. If instead
every training makes the same error (the training set's clusters, not the network, set it), the pooled
posterior is no better calibrated than each alone.

Each run gives the first N / len(runs) samples of each test sightline (the runs must share the dataset,
the split and the sampler settings: the same test sightlines); mean and std (ddof 1) are recomputed. The
pooled store replaces a copy of a run's ``samples/test.zarr``; the run's evaluation then reruns on it:

    python benchmarks/pool_posteriors.py runA/results/default/samples/test.zarr \\
        runB/results/default/samples/test.zarr --out copy/results/default/samples/test.zarr
    snakemake --cores 2 results/default/metrics/calibration.md --rerun-triggers mtime \\
        --forcerun evaluate_posterior      # in the copy
"""

from __future__ import annotations

import argparse

import numpy as np
import xarray as xr

from massmaps import store


def pool(paths: list[str], n_samples: int | None = None) -> xr.Dataset:
    """One samples dataset with an equal share of each store's samples per sightline."""
    runs = [store.open_store(p).load() for p in paths]
    first = runs[0]
    for path, run in zip(paths[1:], runs[1:]):
        if not np.array_equal(run["sightline"].values, first["sightline"].values):
            raise SystemExit(f"{path}: its sightlines differ from {paths[0]}'s; pool runs of one dataset and split")
    n = n_samples or first.sizes["sample"]
    share = n // len(runs)
    if share < 1 or any(share > run.sizes["sample"] for run in runs):
        raise SystemExit(f"cannot take {share} samples per run from stores of {[r.sizes['sample'] for r in runs]}")
    samples = xr.concat([run["samples"].isel(sample=slice(0, share)) for run in runs], dim="sample")
    samples = samples.assign_coords(sample=np.arange(samples.sizes["sample"]))
    out = first.drop_vars(["samples", "mean", "std"]).drop_dims("sample")
    out["samples"] = samples
    out["mean"] = samples.mean("sample").astype(np.float32)
    out["std"] = samples.std("sample", ddof=1).astype(np.float32)
    for name in ("samples", "mean", "std"):
        out[name].attrs = first[name].attrs
    out.attrs = {k: v for k, v in first.attrs.items() if not k.startswith("massmaps_")}
    out.attrs["pooled_from"] = [str(p) for p in paths]
    out.attrs["samples_per_run"] = share
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stores", nargs="+", help="samples/test.zarr of each run")
    parser.add_argument("--out", required=True, help="the pooled store (written atomically)")
    parser.add_argument("--n-samples", type=int, default=None, help="samples per sightline (default: the first run's)")
    args = parser.parse_args(argv)
    pooled = pool(args.stores, args.n_samples)
    store.write_store(pooled, args.out, chunk_sightlines=1)
    print(f"{args.out}: {pooled.sizes['sightline']} sightlines x {pooled.sizes['sample']} samples")


if __name__ == "__main__":
    main()
