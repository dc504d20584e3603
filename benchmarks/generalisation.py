"""Is the posterior as well calibrated on clusters the network never saw as on those it was trained on?

A network that has learned the conditional distribution p(maps | SZ, X-ray) gives calibrated posteriors on
training and held-out clusters alike. One that has memorised its training clusters is calibrated (or too
wide) on them and too narrow on new ones, most in what identifies a cluster: the coherent modes, such as
the DM amplitude over the whole halo (its DM / gas ratio), rather than single pixels. This script reads a
finished run (dataset, split, model, and the test and validation samples), draws posterior samples for
``--n-train`` training maps in the evaluation range (one view per cluster, the run's sampler and seed),
and prints for the training, validation and test maps, per field: the pixel z std and the z std of each
annulus of TARP's summary (the log radial profile in 6 annuli; calibrated: about 1.03 with 50 samples).

    python benchmarks/generalisation.py --results results/default
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from massmaps import store
from massmaps.evaluation import calibration
from massmaps.learning import reconstruct


def z_stds(samples, dataset, pixel_Mpc: float) -> dict:
    """Per field: (number of maps, pixel z std, annulus z std per annulus) of a samples store against the truth."""
    out = {}
    for f in samples["field"].values.tolist():
        summaries, z_sum, z_sq, z_n = [], 0.0, 0.0, 0
        for i, sl in enumerate(samples["sightline"].values):
            truth = dataset["maps"].sel(sightline=sl, field=f).values.astype(np.float64)
            smp = samples["samples"].isel(sightline=i).sel(field=f).values.astype(np.float64)
            stats = calibration.map_statistics(smp, truth)
            z_sum, z_sq, z_n = z_sum + stats["z_sum"], z_sq + stats["z_sq"], z_n + stats["z_n"]
            summaries.append((calibration.summary_vector(smp, pixel_Mpc), calibration.summary_vector(truth, pixel_Mpc)))
        z_mean = z_sum / z_n
        out[f] = (
            len(summaries),
            float(np.sqrt(z_sq / z_n - z_mean**2)),
            np.nanstd(calibration.profile_z(summaries), axis=0),
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/default", help="a finished run's results folder")
    ap.add_argument("--n-train", type=int, default=40, help="training clusters to sample (one view each)")
    ap.add_argument("--seed", type=int, default=0, help="which training clusters (the samples use the run's seed)")
    args = ap.parse_args(argv)
    res = Path(args.results)
    warnings.filterwarnings("ignore", message=".*consolidated.*")
    splits = pd.read_parquet(res / "split" / "splits.parquet")
    test = store.open_store(res / "samples" / "test.zarr").load()
    val = store.open_store(res / "samples" / "validation.zarr").load()
    dataset = store.open_store(res / "dataset" / "maps.zarr")
    pixel = float(dataset["x"].values[1] - dataset["x"].values[0])
    train = splits[(splits["split"] == "train") & splits["in_eval_range"]].groupby("halo_id").head(1)
    train = train.sample(n=min(args.n_train, len(train)), random_state=args.seed)
    chosen = splits.copy()
    chosen.loc[(chosen["split"] == "train") & ~chosen.index.isin(train.index), "split"] = "unused"
    kwargs = {k: test.attrs[k] for k in ("sampler", "steps", "seed", "prior_mean")}
    sampler_kwargs = json.loads(test.attrs.get("sampler_kwargs", "{}"))  # stores before it was recorded: none
    print(
        f"sampling {len(train)} training maps of {len(train)} clusters with {kwargs} {sampler_kwargs} ...", flush=True
    )
    trained = reconstruct.sample_from_store(
        res / "model",
        res / "dataset" / "maps.zarr",
        chosen,
        which="train",
        n_samples=test.sizes["sample"],
        sampler_kwargs=sampler_kwargs,
        progress=False,
        **kwargs,
    )
    calibrated = calibration.calibrated_z_std(test.sizes["sample"])
    print(f"\nz std (calibrated: {calibrated:.3f}); annuli of TARP's summary from the centre out\n")
    print(
        "| maps | field | n | pixels | "
        + " | ".join(f"annulus {k + 1}" for k in range(calibration.SUMMARY_ANNULI))
        + " |"
    )
    print("|---|---|---|---|" + "---|" * calibration.SUMMARY_ANNULI)
    for name, samples in (("training", trained), ("validation", val), ("test", test)):
        for f, (n, pixel_z, annuli) in z_stds(samples, dataset, pixel).items():
            print(f"| {name} | {f} | {n} | {pixel_z:.2f} | " + " | ".join(f"{a:.2f}" for a in annuli) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
