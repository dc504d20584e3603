"""Euler-Maruyama (the paper's sampler) against the second-order EDM samplers on a trained model.

For each sampler setting: wall time, network evaluations (NFE) per sample, and on the test sightlines
the pixel correlation of the posterior mean with the truth, the total-mass error of the mean and the mean
per-pixel posterior std (physical units), per field. Two Euler-Maruyama runs with different seeds give
the spread that "the same quality" is measured against.

    python benchmarks/sampling.py --run default --n-sightlines 4 --n-samples 20
    python benchmarks/sampling.py --results /tmp/clean/results/default --n-sightlines 8 --heun-steps \
        --stochastic-steps 40 50 --churn 20 40 80 --stochastic-seeds 0 1

The last lines list, for every setting, the metrics that fall outside the range of the Euler-Maruyama runs.

With ``--tables``, each given sampler samples every test sightline of the evaluation range, and Table 1's
statistics and the calibration (total-mass error, large-scale b, small-scale r, coverage, z-scores, TARP,
per mass bin and field, with bootstrap ranges over clusters) are printed side by side:

    python benchmarks/sampling.py --results results/default --tables edm_stochastic:40:s_churn=20 dpmpp_2m_sde:20 \
        --n-samples 50
    python benchmarks/sampling.py --results results/default --tables dpmpp_2m_sde:20 dpmpp_2m_sde:20:precision=bf16 \
        dpmpp_2m_sde:20:compile=true --prior-mean none      # the network in bf16, compiled (sampling.*)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from massmaps import store
from massmaps.evaluation import metrics
from massmaps.learning import reconstruct

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="default", help="results/<run>/ holding model/, dataset/ and split/")
    ap.add_argument("--results", type=Path, default=None, help="that folder given directly (overrides --run)")
    ap.add_argument("--n-sightlines", type=int, default=4)
    ap.add_argument("--n-samples", type=int, default=20)
    ap.add_argument("--em-steps", type=int, default=1000)
    ap.add_argument(
        "--em-seeds",
        type=int,
        nargs="*",
        default=[0, 1],
        help="seeds of the Euler-Maruyama runs (none: skip them; same seed, same samples)",
    )
    ap.add_argument("--heun-steps", type=int, nargs="*", default=[6, 11, 18, 26])
    ap.add_argument("--stochastic-steps", type=int, nargs="*", default=[18, 40])
    ap.add_argument("--churn", type=float, nargs="+", default=[20.0], help="s_churn values of edm_stochastic")
    ap.add_argument("--stochastic-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--s-noise", type=float, nargs="+", default=[1.0], help="s_noise values of edm_stochastic")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="where the network runs: cpu, cuda, auto")
    ap.add_argument(
        "--prior-mean",
        default="pixel",
        choices=reconstruct.PRIOR_MEANS,
        help="centre of the sampler's prior (sampling.prior_mean)",
    )
    ap.add_argument(
        "--tables",
        nargs="+",
        metavar="SAMPLER:STEPS[:KEY=VALUE,...]",
        help="compare these samplers on Table 1 and the calibration (every test map of the evaluation range)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.tables:
        compare_tables(args)
        return

    res = args.results or ROOT / "results" / args.run
    splits = pd.read_parquet(res / "split" / "splits.parquet")
    test = splits[(splits["split"] == "test") & splits["in_eval_range"]]
    if test.empty:
        test = splits[splits["split"] == "test"]
    test = test.iloc[: args.n_sightlines]
    # every split but the test sightlines left out: the prior's training mean needs the training rows
    table = pd.concat([splits[splits["split"] != "test"], test])
    dataset = store.open_store(res / "dataset" / "maps.zarr")
    settings = [("euler_maruyama", args.em_steps, s, {}) for s in args.em_seeds]
    settings += [("heun", n, 0, {}) for n in args.heun_steps]
    settings += [
        ("edm_stochastic", n, s, {"s_churn": c} | ({"s_noise": sn} if sn != 1.0 else {}))
        for n in args.stochastic_steps for c in args.churn for sn in args.s_noise for s in args.stochastic_seeds
    ]  # fmt: skip
    print(
        f"{len(test)} test sightlines x {args.n_samples} samples, model {res / 'model'}, prior mean {args.prior_mean}"
    )
    header = f"{'sampler':>16} {'steps':>5} {'churn':>5} {'seed':>4} {'NFE':>5} {'time s':>8} {'x faster':>8}"
    for f in reconstruct.TARGETS:
        header += f" {f + ' corr':>10} {f + ' dM/M':>9} {f + ' std':>9} {f + ' |z|<1':>9}"
    print(header)
    base = None
    rows = []
    for sampler, steps, seed, kw in settings:
        t0 = time.perf_counter()
        out = reconstruct.sample_from_store(
            res / "model",
            res / "dataset" / "maps.zarr",
            table,
            which="test",
            eval_range_only=False,
            n_samples=args.n_samples,
            sampler=sampler,
            steps=steps,
            batch_size=50,
            seed=seed,
            device=args.device,
            sampler_kwargs=kw,
            prior_mean=args.prior_mean,
            progress=False,
        )
        wall = time.perf_counter() - t0
        base = base or wall
        pos = pd.Index(dataset["sightline_id"].values).get_indexer(out["sightline_id"].values)
        churn = f"{kw['s_churn']:g}" if "s_churn" in kw else "-"
        if "s_noise" in kw:
            churn += f"/{kw['s_noise']:g}"
        line = f"{sampler:>16} {steps:>5} {churn:>5} {seed:>4} {out.attrs['nfe_per_sample']:>5} {wall:8.1f} {base / wall:8.1f}"
        row = {"name": f"{sampler} {steps} steps churn {churn} seed {seed}", "em": sampler == "euler_maruyama"}
        for f in reconstruct.TARGETS:
            truth = dataset["maps"].isel(sightline=pos).sel(field=f).values
            mean = out["mean"].sel(field=f).values
            corr = np.mean(metrics.pixel_correlation(mean, truth))
            dm = np.median(metrics.total_mass_error(mean, truth))
            sd = out["std"].sel(field=f).values
            std = sd.mean()
            # calibration: the share of pixels whose truth lies within one posterior std of the mean
            # (0.68 for a calibrated Gaussian posterior)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = (truth - mean) / sd
            z1 = float(np.mean(np.abs(z[np.isfinite(z)]) < 1))
            line += f" {corr:10.4f} {dm:+9.4f} {std:9.3g} {z1:9.3f}"
            row.update({f"{f} corr": corr, f"{f} dM/M": dm, f"{f} std": std, f"{f} |z|<1": z1})
        rows.append(row)
        print(line, flush=True)
    em = [r for r in rows if r["em"]]
    if len(em) < 2:
        return
    keys = [k for k in rows[0] if k not in ("name", "em")]
    lo = {k: min(r[k] for r in em) for k in keys}
    hi = {k: max(r[k] for r in em) for k in keys}
    print("\nEuler-Maruyama range: " + ", ".join(f"{k} [{lo[k]:.5g}, {hi[k]:.5g}]" for k in keys))
    for r in rows:
        if r["em"]:
            continue
        out = []
        for k in keys:
            if lo[k] <= r[k] <= hi[k]:
                continue
            side = "above" if r[k] > hi[k] else "below"
            if k.endswith("corr"):
                side += " (better)" if side == "above" else " (worse)"
            elif k.endswith("dM/M"):
                better = abs(r[k]) < min(abs(lo[k]), abs(hi[k]))
                side += " (smaller error)" if better else " (larger error)"
            out.append(f"{k} {r[k]:.5g} {side}")
        print(f"  {r['name']}: " + ("inside on every metric" if not out else "outside: " + "; ".join(out)))


#: Keys of a --tables setting that say how the network is evaluated (sampling.precision, sampling.compile),
#: not solver keywords.
EVALUATION_KEYS = ("precision", "compile")


def parse_setting(text: str) -> tuple[str, int, dict, dict]:
    """'edm_stochastic:40:s_churn=20,s_noise=1.0' -> ('edm_stochastic', 40, {'s_churn': 20.0, 's_noise': 1.0},
    {}); 'dpmpp_2m_sde:20:precision=bf16' -> ('dpmpp_2m_sde', 20, {}, {'precision': 'bf16'})."""
    parts = text.split(":")
    pairs = [kv.split("=") for kv in parts[2].split(",")] if len(parts) > 2 else []
    kwargs = {k: float(v) for k, v in pairs if k not in EVALUATION_KEYS}
    evaluation = {k: v for k, v in pairs if k in EVALUATION_KEYS}
    if "compile" in evaluation:
        evaluation["compile"] = {"true": True, "false": False}.get(evaluation["compile"], evaluation["compile"])
    return parts[0], int(parts[1]), kwargs, evaluation


def compare_tables(args) -> None:
    """Table 1 and calibration of each sampler in ``args.tables``, on the same model and sightlines."""
    from massmaps.evaluation import ablation, evaluate

    res = args.results or ROOT / "results" / args.run
    splits = pd.read_parquet(res / "split" / "splits.parquet")
    dataset = store.open_store(res / "dataset" / "maps.zarr")
    rows = []
    for text in args.tables:
        sampler, steps, kwargs, evaluation = parse_setting(text)
        t0 = time.perf_counter()
        out = reconstruct.sample_from_store(
            res / "model",
            res / "dataset" / "maps.zarr",
            splits,
            which="test",
            eval_range_only=True,
            n_samples=args.n_samples,
            sampler=sampler,
            steps=steps,
            batch_size=50,
            seed=0,
            device=args.device,
            sampler_kwargs=kwargs,
            prior_mean=args.prior_mean,
            progress=False,
            **evaluation,
        )
        wall = time.perf_counter() - t0
        ev = evaluate.evaluate(out, dataset)
        name = " ".join(
            [
                f"{sampler} {out.attrs['nfe_per_sample']} NFE",
                *(f"{k}={v:g}" for k, v in kwargs.items()),
                *(f"{k}={v}" for k, v in evaluation.items()),
            ]
        )
        rows += [{**r, "variant": name} for r in ablation.posterior_metrics(ev, seed=0)]
        rows.append(
            {
                "variant": name,
                "mass_bin": "-",
                "field": "-",
                "statistic": "sampling_s",
                "value": wall,
                "lo": np.nan,
                "hi": np.nan,
            }
        )
        print(f"{name}: {out.sizes['sightline']} sightlines x {args.n_samples} samples in {wall:.0f} s", flush=True)
    table = pd.DataFrame(rows)
    with pd.option_context("display.max_columns", None, "display.width", 250, "display.max_colwidth", 40):
        for prefix in ("mass_error_median", "b_large", "r_small", "max_coverage_error", "z_mean", "z_std", "tarp_ks_p"):
            print(f"\n{prefix}:\n{ablation.summary(table[table['statistic'] == prefix]).T.to_string()}")


if __name__ == "__main__":
    main()
