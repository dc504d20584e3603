"""Can the validation split recalibrate the posterior's coherent modes, as it does its pixel intervals?

TARP is computed on a summary of each map, the log of its mean in six annuli (the radial profile), and
rejects the laptop posterior on unseen clusters because those annulus means vary too little between the
samples (annulus z std up to ~2 where a calibrated 50-sample posterior gives 1.03). Rule ``conformal``
recalibrates the pixel intervals on the validation split. This script tries the same for the profile:
each test map's summary samples are widened about their mean, g' = mean + alpha (g - mean), with alpha
fitted on the validation maps so that their annulus z std becomes the calibrated value, either one alpha
per field (from the root mean square of the z over every annulus) or one per annulus. It prints, per field
and test mass bin, the validation's and the test's annulus z mean and std, and TARP's p (the pipeline's
randomisation test, one map per cluster) and the largest annulus z std before and after.

A widening can only fix a posterior that is too narrow about the right centre: where the test maps' annulus
z have a mean of one sign (the samples' profile off-centre in one direction for most clusters), no alpha
fitted elsewhere makes TARP accept, and where the validation's mean z has the other sign the two splits do
not share the error that a recalibration would need to learn.

    python benchmarks/profile_recalibration.py --results results/default
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from massmaps import store
from massmaps.evaluation import calibration


def widen(gen: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    """Summary samples (maps, n, d) widened about their per-map mean by ``alpha`` (scalar or (d,))."""
    centre = gen.mean(axis=1, keepdims=True)
    return centre + np.asarray(alpha) * (gen - centre)


def fit_alpha(z: np.ndarray, n_samples: int) -> tuple[float, np.ndarray]:
    """The widening that takes validation annulus z (maps, d) to the calibrated std: one for every annulus
    (from the root mean square of z) and one per annulus (from each annulus' std)."""
    target = calibration.calibrated_z_std(n_samples)
    return float(np.sqrt(np.nanmean(z**2)) / target), np.nanstd(z, axis=0) / target


def tarp_p(gen: np.ndarray, sim: np.ndarray, groups: np.ndarray, seed: int) -> float:
    """TARP's randomisation-test p over one map per group (the first), as in the calibration table."""
    first = np.unique(groups, return_index=True)[1]
    _, ranks = calibration.tarp_primitives(list(zip(gen[first], sim[first])), seed)
    return float(calibration.tarp_test(ranks, gen.shape[1], seed)[1])


def validation_summaries(results: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per field, (maps, n, d) summary samples and (maps, d) truths of the validation maps."""
    val = store.open_store(results / "samples" / "validation.zarr")
    ds = store.open_store(results / "dataset" / "maps.zarr")
    pos = np.searchsorted(ds["sightline_id"].values, val["sightline_id"].values)
    if not np.array_equal(ds["sightline_id"].values[pos], val["sightline_id"].values):
        raise ValueError(f"{results / 'samples' / 'validation.zarr'}: sightlines that the dataset store lacks")
    pixel = float(abs(val["x"].values[1] - val["x"].values[0]))
    truth = ds["maps"].isel(sightline=pos)
    out = {}
    for field in [str(f) for f in val["field"].values]:
        samples = val["samples"].sel(field=field).values.astype(np.float64)
        maps = truth.sel(field=field).values.astype(np.float64)
        out[field] = calibration.summary_vector(samples, pixel), calibration.summary_vector(maps, pixel)
    return out


def fmt(values: np.ndarray) -> str:
    return " ".join(f"{v:+.2f}" for v in values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True, help="a run's results folder (results/<run>)")
    ap.add_argument("--seed", type=int, default=42, help="seed of TARP's reference points (the run's seed)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*consolidated.*")
    ev = store.open_store(args.results / "metrics" / "evaluation.zarr").load()
    n = ev.sizes["sample"]
    bins = np.array([str(b) for b in ev["mass_bin"].values])
    groups = ev["halo_id"].values
    print(
        f"{args.results}: {ev.sizes['sightline']} test maps, {n} samples; calibrated z std {calibration.calibrated_z_std(n):.3f}"
    )
    validation = validation_summaries(args.results)
    for field in [str(f) for f in ev["field"].values]:
        vg, vs = validation[field]
        zv = calibration.profile_z(list(zip(vg, vs)))
        alpha, alpha_ann = fit_alpha(zv, n)
        print(f"\n{field}: {len(zv)} validation maps; alpha {alpha:.3f}, per annulus {fmt(alpha_ann)}")
        print(f"  validation annulus z mean {fmt(np.nanmean(zv, 0))}  std {fmt(np.nanstd(zv, 0))}")
        gen = ev["summary_gen"].sel(field=field).values
        sim = ev["summary_sim"].sel(field=field).values
        for name in ["all", *sorted(set(bins) - {""})]:
            sel = np.ones(len(bins), bool) if name == "all" else bins == name
            zt = calibration.profile_z(list(zip(gen[sel], sim[sel])))
            print(
                f"  test {name} ({sel.sum()} maps): annulus z mean {fmt(np.nanmean(zt, 0))}  std {fmt(np.nanstd(zt, 0))}"
            )
            for label, a in (("raw", 1.0), ("one alpha", alpha), ("alpha per annulus", alpha_ann)):
                g = widen(gen[sel], a)
                z = calibration.profile_z(list(zip(g, sim[sel])))
                p = tarp_p(g, sim[sel], groups[sel], args.seed)
                print(f"    {label:18s} TARP p {p:.3f}   largest annulus z std {np.nanmax(np.nanstd(z, 0)):.2f}")


if __name__ == "__main__":
    main()
