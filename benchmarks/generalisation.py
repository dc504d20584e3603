"""Is the posterior as well calibrated on clusters the network never saw as on those it was trained on?

A network that has learned the conditional distribution p(maps | SZ, X-ray) gives calibrated posteriors on
training and held-out clusters alike. One that has memorised its training clusters is calibrated (or too
wide) on them and too narrow on new ones, most in what identifies a cluster: the coherent modes, such as
the DM amplitude over the whole halo (its DM / gas ratio), rather than single pixels. This script reads a
finished run (dataset, split, model, and the test and validation samples), draws posterior samples for
``--n-train`` training maps in the evaluation range (one view per cluster, the run's sampler and seed),
and prints for the training, validation and test maps, per field: the pixel z std and the z std of each
annulus of TARP's summary (the log radial profile in 6 annuli; calibrated: about 1.03 with 50 samples),
then per annulus the rms error of the samples' mean profile and the rms spread of the samples (dex).

    python benchmarks/generalisation.py --results results/default
    python benchmarks/generalisation.py --results results/default --n-train 60 --steps 60 --sampler-kwargs '{"eta": 1}'
    python benchmarks/generalisation.py --results results/default --raw-weights results/default/checkpoints/<hash>

``--steps`` and ``--sampler-kwargs`` change the sampler for the training maps only (the validation and
test rows are the run's own samples); ``--raw-weights`` samples them with the raw weights of the latest
verified checkpoint in a training's checkpoint folder instead of the model's EMA weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from massmaps import store
from massmaps.evaluation import calibration
from massmaps.learning import checkpoints, reconstruct, score


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
        err = np.array([t - g.mean(axis=0) for g, t in summaries])
        spread = np.array([g.std(axis=0, ddof=1) for g, _ in summaries])
        out[f] = (
            len(summaries),
            float(np.sqrt(z_sq / z_n - z_mean**2)),
            np.nanstd(calibration.profile_z(summaries), axis=0),
            np.sqrt(np.mean(err**2, axis=0)),
            np.sqrt(np.mean(spread**2, axis=0)),
        )
    return out


def raw_weights_model(model_dir: Path, checkpoint_dir: Path, into: Path) -> Path:
    """A copy of ``model_dir`` whose weights are the raw (not EMA) weights of the latest checkpoint in a
    training's ``checkpoint_dir`` (read and verified as a resumed training reads it)."""
    into.mkdir(parents=True, exist_ok=True)
    for f in model_dir.glob("*.json"):
        shutil.copy(f, into / f.name)
    meta = json.loads((model_dir / score.META_FILE).read_text())
    ckpt = checkpoints.load_checkpoint(checkpoint_dir)
    if ckpt is None:
        raise FileNotFoundError(f"{checkpoint_dir}: no training checkpoint")
    torch.save(ckpt["model"], into / meta.get("weights", score.WEIGHTS_FILE))
    print(f"raw weights of {checkpoint_dir} (step {ckpt['step']})", flush=True)
    return into


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/default", help="a finished run's results folder")
    ap.add_argument("--n-train", type=int, default=40, help="training clusters to sample (one view each)")
    ap.add_argument("--seed", type=int, default=0, help="which training clusters (the samples use the run's seed)")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps for the training maps (default: the run's)")
    ap.add_argument("--sampler-kwargs", default=None, help="JSON merged into the run's sampler keywords")
    ap.add_argument(
        "--raw-weights", default=None, help="a training's checkpoint folder whose raw weights sample the training maps"
    )
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
    if args.steps:
        kwargs["steps"] = args.steps
    sampler_kwargs.update(json.loads(args.sampler_kwargs or "{}"))
    print(
        f"sampling {len(train)} training maps of {len(train)} clusters with {kwargs} {sampler_kwargs} ...", flush=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        model = res / "model"
        if args.raw_weights:
            model = raw_weights_model(model, Path(args.raw_weights), Path(tmp) / "model")
        trained = reconstruct.sample_from_store(
            model,
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
    rms = []
    for name, samples in (("training", trained), ("validation", val), ("test", test)):
        for f, (n, pixel_z, annuli, err, spread) in z_stds(samples, dataset, pixel).items():
            print(f"| {name} | {f} | {n} | {pixel_z:.2f} | " + " | ".join(f"{a:.2f}" for a in annuli) + " |")
            rms.append((name, f, err, spread))
    print("\nrms error of the samples' mean profile / rms spread of the samples, dex, per annulus\n")
    print("| maps | field | " + " | ".join(f"annulus {k + 1}" for k in range(calibration.SUMMARY_ANNULI)) + " |")
    print("|---|---|" + "---|" * calibration.SUMMARY_ANNULI)
    for name, f, err, spread in rms:
        print(f"| {name} | {f} | " + " | ".join(f"{e:.4f} / {s:.4f}" for e, s in zip(err, spread)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
