"""What an instrument costs the reconstruction: the laptop default trained and evaluated on observed inputs.

On the clean dataset and split a workflow run made, each variant observes every sightline with its
instruments (massmaps.observe.stage, seeded as the pipeline does), trains the default model on the observed
inputs, samples the test sightlines of the evaluation range, and is measured with the pipeline's evaluation:
median total-mass error, large-scale b and small-scale r, pixel coverage, z-scores and TARP, per mass bin
and field, with bootstrap ranges over clusters (benchmarks/ablation.py's tables). It also writes r(k) of
the posterior mean per variant with the scale where the tSZ beam's transfer function falls to 1/2, as
CSV and as a figure.

    python benchmarks/observing.py --results results/default --variants ideal beam_z0.3 all_z0.3 all_z0.1
    python benchmarks/observing.py --list
    python benchmarks/observing.py --results results/default --variants all_z0.3 --train-steps 6000

With --train-steps N each variant trains for N steps instead of the config's, in <work>/<variant>_steps<N>/.

Each variant's observed store, model and tables go to <work>/<variant>/ (default <results>/observing).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ablation import posterior_metrics, summary  # noqa: E402

from massmaps import config as checks  # noqa: E402
from massmaps import store  # noqa: E402
from massmaps.config import merge  # noqa: E402
from massmaps.evaluation import evaluate  # noqa: E402
from massmaps.learning import reconstruct, score  # noqa: E402
from massmaps.learning.training import single_process_settings  # noqa: E402
from massmaps.observe.instruments import from_config  # noqa: E402
from massmaps.observe.observe import angular_pixel_arcmin  # noqa: E402
from massmaps.observe.stage import observe_store  # noqa: E402

TSZ, XRAY = "act_dr6_y", "erosita_erass1"
#: The ladder ideal -> +beam (tSZ beam; X-ray band, dimming and PSF) -> +noise (tSZ white noise) ->
#: +counts (X-ray counts and background, tSZ beam only) -> all, at a redshift.
LEVELS = {
    "beam": {"tsz": {"preset": TSZ, "noise_arcmin": 0.0}, "xray": {"preset": XRAY, "output": "surface_brightness"}},
    "noise": {"tsz": {"preset": TSZ}, "xray": {"preset": XRAY, "output": "surface_brightness"}},
    "counts": {"tsz": {"preset": TSZ, "noise_arcmin": 0.0}, "xray": {"preset": XRAY}},
    "all": {"tsz": {"preset": TSZ}, "xray": {"preset": XRAY}},
}


def variant(name: str) -> dict | None:
    """'ideal' (None: the clean maps) or '<level>_z<redshift>'."""
    if name == "ideal":
        return None
    level, _, z = name.partition("_z")
    if level not in LEVELS or not z:
        raise SystemExit(f"unknown variant {name!r}: ideal, or <level>_z<redshift> with level in {list(LEVELS)}")
    return {"redshift": {"kind": "fixed", "value": float(z)}, **copy.deepcopy(LEVELS[level])}


def run_variant(name: str, base: dict, res: Path, work: Path, args) -> tuple[pd.DataFrame, pd.DataFrame]:
    observe = variant(name)
    if args.train_steps is not None:
        name = f"{name}_steps{args.train_steps}"
    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    clean = res / "dataset" / "maps.zarr"
    data = clean
    if observe is not None:
        data = out / "observed.zarr"
        if not (data / "zarr.json").is_file():
            observe_store(clean, data, observe, cosmology=base["cosmology"], seed=base["seed"])
    splits = pd.read_parquet(res / "split" / "splits.parquet")
    model = out / "model"
    t0 = time.monotonic()
    if not (model / score.META_FILE).is_file():
        training = single_process_settings(base["training"])
        if args.train_steps is not None:
            training["steps"] = args.train_steps
        reconstruct.train_from_store(
            data, splits, model, out / "checkpoints", training=training,
            stretch=base["normalisation"]["stretch"], log_decades=base["normalisation"]["log_decades"],
            progress=False, provenance={"cosmology": base["cosmology"], "observe": observe or {}},
        )  # fmt: skip
    t_train = time.monotonic() - t0
    s = base["sampling"]
    t0 = time.monotonic()
    samples = reconstruct.sample_from_store(
        model, data, splits, which="test", eval_range_only=s["eval_range_only"], n_samples=args.n_samples,
        sampler=s["sampler"], steps=s["steps"], batch_size=s["batch_size"], seed=base["seed"], device="cpu",
        sampler_kwargs=s["sampler_kwargs"], prior_mean=s["prior_mean"], progress=False, resume_dir=out / "resume",
    )  # fmt: skip
    t_sample = time.monotonic() - t0
    blk = {k: v for k, v in base["evaluation"].items() if k != "diffusion_levels"}
    ev = evaluate.evaluate(samples, store.open_store(data), blk, h=base["cosmology"]["H0"] / 100)
    rows = posterior_metrics(ev, args.seed)
    rows += [
        {"mass_bin": "-", "field": "-", "statistic": k, "value": v, "lo": np.nan, "hi": np.nan}
        for k, v in (("train_s", t_train), ("sampling_s", t_sample))
    ]
    table = pd.DataFrame(rows).assign(variant=name)
    table.to_csv(out / "metrics.csv", index=False)
    settings = {"observe": observe, "n_samples": args.n_samples, "train_steps": args.train_steps}
    (out / "settings.json").write_text(json.dumps(settings, indent=1))
    k = ev["k"].values
    r = ev["r"].mean("sightline").values  # (field, k)
    rk = pd.DataFrame(
        {"variant": name, "k_h_per_Mpc": np.tile(k, 2), "field": np.repeat(list(ev["field"].values), k.size)}
    )
    rk["r_mean"] = r.ravel()
    rk["k_beam_h_per_Mpc"] = beam_k(observe, base)
    return table, rk


def beam_k(observe: dict | None, base: dict) -> float:
    """k (h/Mpc, k = 2 pi / wavelength) where the tSZ beam's transfer exp(-k^2 s^2 / 2) falls to 1/2."""
    if observe is None:
        return np.nan
    tsz, _, law = from_config(observe)
    if tsz is None or tsz.beam_fwhm_arcmin == 0:
        return np.nan
    mpc_per_arcmin = 1.0 / angular_pixel_arcmin(1.0, law.value, base["cosmology"])
    sigma_Mpc = tsz.beam_fwhm_arcmin * mpc_per_arcmin / np.sqrt(8 * np.log(2))
    return float(np.sqrt(2 * np.log(2)) / sigma_Mpc / (base["cosmology"]["H0"] / 100))


def plot_rk(rk: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, field in zip(axes, ("gas", "dm")):
        for i, (name, part) in enumerate(rk[rk["field"] == field].groupby("variant", sort=False)):
            line = ax.plot(part["k_h_per_Mpc"], part["r_mean"], marker="o", ms=3, label=name, color=f"C{i}")
            kb = part["k_beam_h_per_Mpc"].iloc[0]
            if np.isfinite(kb):
                ax.axvline(kb, color=line[0].get_color(), ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("k [h/Mpc]")
        ax.set_title(f"{field}: r(k) of the posterior mean (dotted: tSZ beam transfer 1/2)", fontsize=9)
    axes[0].set_ylabel("r(k)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True, help="results/<run> of a workflow run (dataset, split)")
    ap.add_argument("--config", type=Path, nargs="+", default=[ROOT / "config" / "config.yaml"])
    ap.add_argument("--variants", nargs="+", default=["ideal", "all_z0.3"])
    ap.add_argument("--work", type=Path, default=None, help="default <results>/observing")
    ap.add_argument("--n-samples", type=int, default=20)
    ap.add_argument("--train-steps", type=int, default=None, help="train each variant this long (default: config)")
    ap.add_argument("--seed", type=int, default=42, help="seed of the bootstrap")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--list", action="store_true", help="list the levels and exit")
    args = ap.parse_args()
    if args.list:
        for name, spec in LEVELS.items():
            print(f"{name}_z<z>: {json.dumps(spec)}")
        return
    torch.set_num_threads(args.threads)
    base: dict = {}
    for f in args.config:
        merge(base, yaml.safe_load(Path(f).read_text()))
    checks.validate(base, ROOT / "workflow" / "schemas" / "config.schema.yaml")
    work = args.work or args.results / "observing"
    tables, curves = [], []
    for name in args.variants:
        print(f"variant {name}", flush=True)
        t, rk = run_variant(name, base, args.results, work, args)
        tables.append(t)
        curves.append(rk)
    tables, curves = pd.concat(tables, ignore_index=True), pd.concat(curves, ignore_index=True)
    tables.to_csv(work / "metrics.csv", index=False)
    curves.to_csv(work / "r_of_k.csv", index=False)
    plot_rk(curves, work / "r_of_k.png")
    with pd.option_context("display.max_columns", None, "display.width", 250, "display.max_colwidth", 40):
        for prefix in ("mass_error_median", "b_large", "r_small", "max_coverage_error", "z_std", "z_mean", "tarp"):
            part = tables[tables["statistic"].str.startswith(prefix)]
            print(f"\n{prefix}:\n{summary(part).to_string()}")
        print("\nr(k) of the posterior mean:")
        print(
            curves.pivot_table(index=["field", "k_h_per_Mpc"], columns="variant", values="r_mean", sort=False).round(3)
        )
    print(f"\ntables: {work}/metrics.csv, r(k): {work}/r_of_k.csv and r_of_k.png")


if __name__ == "__main__":
    main()
