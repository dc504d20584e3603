"""Do several trained models disagree where one model's posterior is too narrow? Pool their samples and see.

A posterior drawn from one network leaves out the network's own error: what another network, trained as
well on the same maps, would put elsewhere. If that disagreement is what the too-narrow coherent modes
lack (TARP's annuli, the total masses), samples pooled over several trainings are wider there and better
calibrated; if the networks agree with each other and all miss the truth alike, pooling changes nothing
and the missing spread is not the networks' disagreement.

This script reads finished runs that sampled the same test maps (the same dataset and split; e.g. copies
of one run's results trained on with another training key, ``--rerun-triggers mtime params --forcerun
train_model``), and prints

- per field and annulus of TARP's summary (the log radial profile in 6 annuli): the correlation over maps
  of each run's residual (truth minus the samples' mean) with the first run's, the rms of the residuals,
  the rms spread of the samples, and the rms difference between the runs' means (dex);
- the calibration table's headline rows (TARP's KS p, the largest annulus z std, the pixel z moments and
  the largest coverage error, the total-mass rank p) for the first ``--per-run`` samples of the first run
  alone and for ``--per-run`` samples of each run pooled, recomputed with the pipeline's own evaluation
  and calibration code.

    python benchmarks/ensemble.py --results run_a/results/default run_b/results/default --per-run 25

The evaluation settings come from ``--config`` (default config/config.yaml), the maps from the first run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from massmaps import config as checks  # noqa: E402
from massmaps import store  # noqa: E402
from massmaps.evaluation import evaluate, tables  # noqa: E402

HEADLINE = ("tarp_ks_p", "profile_z_std_max", "z_std", "z_mean", "max_coverage_error", "mass_rank_chi2_p")


def pooled_samples(stores: list[xr.Dataset], per_run: int) -> xr.Dataset:
    """The first ``per_run`` samples of each store along one sample axis, with their mean and std."""
    ids = [s["sightline"].values for s in stores]
    for i, other in enumerate(ids[1:], 1):
        if not np.array_equal(ids[0], other):
            raise ValueError(f"run {i + 1} sampled other test maps than run 1; pool runs of one dataset and split")
    for i, s in enumerate(stores, 1):
        if s.sizes["sample"] < per_run:
            raise ValueError(
                f"run {i} holds {s.sizes['sample']} samples per map; expected at least --per-run {per_run}"
            )
    samples = xr.concat([s["samples"].isel(sample=slice(0, per_run)) for s in stores], dim="sample")
    samples = samples.assign_coords(sample=np.arange(samples.sizes["sample"]))
    out = stores[0].drop_vars(["samples", "mean", "std"]).drop_dims("sample")
    out["samples"] = samples
    out["mean"] = samples.mean("sample").astype(np.float32)
    out["std"] = samples.std("sample", ddof=1).astype(np.float32)
    out.attrs = dict(stores[0].attrs)
    return out


def headline(samples: xr.Dataset, dataset: xr.Dataset, cfg: dict, seed: int) -> pd.DataFrame:
    """The calibration table's headline rows (all maps) of a samples store, by the pipeline's own code."""
    ev = evaluate.evaluate(samples, dataset, checks.evaluation_settings(cfg), h=cfg["cosmology"]["H0"] / 100)
    table, _ = tables.calibration_tables(ev, seed=seed)
    table = table[(table["mass_bin"] == "all") & table["statistic"].isin(HEADLINE)]
    return table.pivot(index="statistic", columns="field", values="value").loc[list(HEADLINE), ["gas", "dm"]]


def residual_table(evaluations: list[xr.Dataset], names: list[str]) -> pd.DataFrame:
    """Per field, annulus and run: residual correlation with the first run, rms residual, spread and difference."""
    rows = []
    errors = [
        ev["summary_sim"].values - ev["summary_gen"].values.mean(axis=1) for ev in evaluations
    ]  # (maps, field, annulus)
    e0 = errors[0]
    for name, ev, err in zip(names, evaluations, errors):
        spread = ev["summary_gen"].values.std(axis=1, ddof=1)
        for fi, field in enumerate(ev["field"].values.tolist()):
            for a in range(err.shape[-1]):
                rows.append(
                    {
                        "field": field,
                        "annulus": a + 1,
                        "run": name,
                        "corr_with_run_1": float(np.corrcoef(e0[:, fi, a], err[:, fi, a])[0, 1]),
                        "rms_residual": float(np.sqrt(np.mean(err[:, fi, a] ** 2))),
                        "rms_spread": float(np.sqrt(np.mean(spread[:, fi, a] ** 2))),
                        "rms_mean_difference": float(np.sqrt(np.mean((err[:, fi, a] - e0[:, fi, a]) ** 2))),
                    }
                )
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, nargs="+", required=True, help="results/<run> of two or more runs")
    ap.add_argument("--per-run", type=int, default=None, help="samples taken from each run (default: 50 / runs)")
    ap.add_argument("--config", type=Path, nargs="+", default=[ROOT / "config" / "config.yaml"])
    ap.add_argument("--seed", type=int, default=42, help="the calibration's seed (the workflow's: config seed)")
    args = ap.parse_args(argv)
    if len(args.results) < 2:
        ap.error("--results needs two or more runs")
    cfg = checks.load_merged(args.config)  # merged as Snakemake merges them, the schema's defaults filled in
    names = [str(r) for r in args.results]
    stores = [store.open_store(r / "samples" / "test.zarr").load() for r in args.results]
    per_run = args.per_run or stores[0].sizes["sample"] // len(stores)
    dataset = store.open_store(args.results[0] / "dataset" / "maps.zarr")
    evaluations = [store.open_store(r / "metrics" / "evaluation.zarr").load() for r in args.results]

    with pd.option_context("display.width", 200, "display.max_columns", None, "display.float_format", "{:.4g}".format):
        print("Residuals of the samples' mean radial profile per annulus (dex), all test maps:")
        print(residual_table(evaluations, names).to_string(index=False))
        print(f"\nCalibration, {per_run} samples of run 1 alone:")
        print(headline(pooled_samples(stores[:1], per_run), dataset, cfg, args.seed).to_string())
        print(f"\nCalibration, {per_run} samples of each of the {len(stores)} runs pooled:")
        print(headline(pooled_samples(stores, per_run), dataset, cfg, args.seed).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
