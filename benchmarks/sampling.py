"""Euler-Maruyama (the paper's sampler) against the second-order EDM samplers on a trained model.

For each sampler setting: wall time, network evaluations (NFE) per sample, and on the test sightlines
the pixel correlation of the posterior mean with the truth, the total-mass error of the mean and the mean
per-pixel posterior std (physical units), per field. Two Euler-Maruyama runs with different seeds give
the spread that "the same quality" is measured against.

    python benchmarks/sampling.py --run default --n-sightlines 4 --n-samples 20
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from massmaps import metrics, reconstruct, store

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="default", help="results/<run>/ holding model/, dataset/ and split/")
    ap.add_argument("--n-sightlines", type=int, default=4)
    ap.add_argument("--n-samples", type=int, default=20)
    ap.add_argument("--em-steps", type=int, default=1000)
    ap.add_argument("--heun-steps", type=int, nargs="+", default=[6, 11, 18, 26])
    ap.add_argument("--stochastic-steps", type=int, nargs="+", default=[18, 40])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prior-mean", default="pixel", choices=reconstruct.PRIOR_MEANS,
                    help="centre of the sampler's prior (sampling.prior_mean)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    res = ROOT / "results" / args.run
    splits = pd.read_parquet(res / "split" / "splits.parquet")
    test = splits[(splits["split"] == "test") & splits["in_eval_range"]]
    if test.empty:
        test = splits[splits["split"] == "test"]
    test = test.iloc[: args.n_sightlines]
    # every split but the test sightlines left out: the prior's training mean needs the training rows
    table = pd.concat([splits[splits["split"] != "test"], test])
    dataset = store.open_store(res / "dataset" / "maps.zarr")
    settings = [("euler_maruyama", args.em_steps, 0, {}), ("euler_maruyama", args.em_steps, 1, {})]
    settings += [("heun", n, 0, {}) for n in args.heun_steps]
    settings += [("edm_stochastic", n, 0, {"s_churn": 20.0}) for n in args.stochastic_steps]
    print(f"{len(test)} test sightlines x {args.n_samples} samples, model {res / 'model'}, prior mean {args.prior_mean}")
    header = f"{'sampler':>16} {'steps':>5} {'seed':>4} {'NFE':>5} {'time s':>8} {'x faster':>8}"
    for f in reconstruct.TARGETS:
        header += f" {f + ' corr':>10} {f + ' dM/M':>9} {f + ' std':>9}"
    print(header)
    base = None
    for sampler, steps, seed, kw in settings:
        t0 = time.perf_counter()
        out = reconstruct.sample_from_store(
            res / "model", res / "dataset" / "maps.zarr", table, which="test", eval_range_only=False,
            n_samples=args.n_samples, sampler=sampler, steps=steps, batch_size=50, seed=seed, device="cpu",
            sampler_kwargs=kw, prior_mean=args.prior_mean, progress=False,
        )
        wall = time.perf_counter() - t0
        base = base or wall
        pos = pd.Index(dataset["sightline_id"].values).get_indexer(out["sightline_id"].values)
        line = f"{sampler:>16} {steps:>5} {seed:>4} {out.attrs['nfe_per_sample']:>5} {wall:8.1f} {base / wall:8.1f}"
        for f in reconstruct.TARGETS:
            truth = dataset["maps"].isel(sightline=pos).sel(field=f).values
            mean = out["mean"].sel(field=f).values
            corr = np.mean(metrics.pixel_correlation(mean, truth))
            dm = np.median(metrics.total_mass_error(mean, truth))
            std = out["std"].sel(field=f).values.mean()
            line += f" {corr:10.4f} {dm:+9.4f} {std:9.3g}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
