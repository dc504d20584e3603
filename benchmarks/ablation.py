"""Where the posterior's bias and over-dispersion come from: each lever alone and together, same seeds.

On a dataset the workflow made (its dataset store and split table), each variant trains a model (or
reuses one trained with the same training settings), samples the test sightlines of the evaluation
range, and is measured with the pipeline's own evaluation:

* the denoiser alone, on the validation maps: the relative bias of the total E[D(x0 + sigma n)] - x0 and
  the RMS error at each noise level (normalised units; a perfect denoiser has no bias on average over
  the data);
* the posterior: median total-mass error of the posterior mean, large-scale b and small-scale r (means
  over maps), pixel coverage (largest departure over levels 0.1-0.95), z mean and std, TARP KS p, per
  mass bin and field, each with the 16-84% range of a bootstrap over clusters.

    python benchmarks/ablation.py --results results/abl --variants base edm sigma10 edm_sigma10
    python benchmarks/ablation.py --results results/abl --list

Models go to <work>/models/<hash of the training settings>/ and are reused; each variant's tables to
<work>/<variant>/. The last table printed is the summary; --out writes it as CSV.
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

from massmaps import config as checks  # noqa: E402
from massmaps import store  # noqa: E402
from massmaps.config import merge  # noqa: E402
from massmaps.evaluation import evaluate  # noqa: E402
from massmaps.evaluation.ablation import posterior_metrics, summary  # noqa: E402
from massmaps.learning import reconstruct, score  # noqa: E402
from massmaps.learning.training import single_process_settings  # noqa: E402

# Every variant starts from BASE, the laptop default before this ablation (score_models' parametrisation,
# sigma_max 1, the prior on the training mean map, EDM's stochastic sampler at 79 evaluations, learning
# rate 5e-4 in float32), whatever config/config.yaml now says; the names below override it. The default
# that came out of the ablation is edm_sigma10+prior_none+dpmpp_2m_sde20, and then 4000 steps
# (edm_sigma10_steps4000+prior_none+dpmpp_2m_sde20).
BASE = {
    "training": {
        "preconditioning": "score_models",
        "sigma_max": 1.0,
        "steps": 2000,
        "lr": 5.0e-4,
        "precision": "float32",
        "mean_correction": False,
    },
    "sampling": {"sampler": "edm_stochastic", "steps": 40, "sampler_kwargs": {"s_churn": 20.0}, "prior_mean": "pixel"},
}
# name -> overrides of BASE's training and sampling blocks
VARIANTS = {
    "base": {},
    "edm": {"training": {"preconditioning": "edm"}},
    "sigma10": {"training": {"sigma_max": 10.0}},
    "edm_sigma10": {"training": {"preconditioning": "edm", "sigma_max": 10.0}},
    "steps4000": {"training": {"steps": 4000}},
    "edm_sigma10_steps4000": {"training": {"preconditioning": "edm", "sigma_max": 10.0, "steps": 4000}},
    "prior_none": {"sampling": {"prior_mean": "none"}},
    "cosine": {"training": {"lr_schedule": "cosine"}},
    "mean_correction": {"training": {"mean_correction": True}},
    "raw_weights": {"weights": "raw"},
    "ema_0.99": {"weights": "ema_0.99"},
    "churn0": {"sampling": {"sampler": "edm_stochastic", "steps": 40, "sampler_kwargs": {"s_churn": 0.0}}},
    "churn5": {"sampling": {"sampler": "edm_stochastic", "steps": 40, "sampler_kwargs": {"s_churn": 5.0}}},
    "churn40": {"sampling": {"sampler": "edm_stochastic", "steps": 40, "sampler_kwargs": {"s_churn": 40.0}}},
    "edm_stochastic79": {"sampling": {"sampler": "edm_stochastic", "steps": 40, "sampler_kwargs": {"s_churn": 20.0}}},
    "dpmpp_2m_sde20": {"sampling": {"sampler": "dpmpp_2m_sde", "steps": 20, "sampler_kwargs": {}}},
    "dpmpp_2m20": {"sampling": {"sampler": "dpmpp_2m", "steps": 20, "sampler_kwargs": {}}},
    # other training seeds (network initialisation, batches, noise levels): the spread between trainings
    **{f"seed{k}": {"training": {"seed": k}} for k in range(1, 6)},
}
SIGMAS = (0.002, 0.01, 0.05, 0.2, 0.5, 1.0)


def variant(name: str) -> dict:
    """A variant by name: BASE, then the overrides of each name joined with '+' (later ones win)."""
    out: dict = copy.deepcopy(BASE)
    for part in name.split("+"):
        if part not in VARIANTS:
            raise SystemExit(f"unknown variant {part!r}; known: {', '.join(VARIANTS)}")
        merge(out, copy.deepcopy(VARIANTS[part]))
        if "sampler_kwargs" in VARIANTS[part].get("sampling", {}):  # replaced: each sampler has its own keywords
            out["sampling"]["sampler_kwargs"] = dict(VARIANTS[part]["sampling"]["sampler_kwargs"])
    return out


def train(cfg: dict, res: Path, work: Path, splits: pd.DataFrame) -> Path:
    """The model of these training settings, trained once (cached by their hash)."""
    key = store.config_hash(
        {
            "training": cfg["training"],
            "normalisation": cfg["normalisation"],
            "data": store.open_store(res / "dataset" / "maps.zarr").attrs.get("config_hash"),
        }
    )
    model = work / "models" / key
    if not (model / score.META_FILE).is_file():
        t0 = time.monotonic()
        training = single_process_settings(cfg["training"])
        reconstruct.train_from_store(
            res / "dataset" / "maps.zarr",
            splits,
            model,
            work / "checkpoints" / key,
            training=training,
            normalisation=cfg["normalisation"],
            progress=False,
        )
        print(f"  trained {key} in {time.monotonic() - t0:.0f} s", flush=True)
    return model


def with_weights(model: Path, how: str, work: Path) -> Path:
    """``model`` itself ('ema', or 'ema_<decay>': trained with that EMA decay), or a copy holding the raw
    optimiser weights of its last checkpoint ('raw')."""
    if how != "raw":
        return model
    out = work / "models" / f"{model.name}-raw"
    if not (out / score.META_FILE).is_file():
        ckpt = torch.load(work / "checkpoints" / model.name / "checkpoint.pt", weights_only=True)
        trained = score.load_model(model, device="cpu")
        score.save_model(
            out,
            trained.score_model,
            normaliser=trained.normaliser,
            state_dict=ckpt["model"],
            metadata={k: v for k, v in trained.metadata.items() if k not in ("format", "version")},
        )
    return out


def denoiser_bias(model: Path, ds, splits: pd.DataFrame, seed: int = 0, draws: int = 4) -> dict:
    """The denoiser at each of SIGMAS, on the validation maps: the relative bias of the total, the RMS error,
    and its calibration: the ratio of the mean squared error to the posterior variance the denoiser itself
    implies, sigma^2 div D / n_pixels (Tweedie: Cov[x0 | x] = sigma^2 dD/dx), with the divergence from
    Hutchinson's estimator (Rademacher probes, central differences). A Bayes-optimal denoiser gives 1; a
    ratio below 1 means the denoiser claims more uncertainty than its errors show: samples too wide."""
    trained = score.load_model(model, device="cpu")
    den, norm = trained.denoiser, trained.normaliser
    idx = splits.loc[splits["split"] == "val", "index"].to_numpy()
    maps = ds["maps"].isel(sightline=np.sort(idx))
    targets, inputs = reconstruct.normalised_pairs(maps, norm)
    x0, cond = torch.as_tensor(targets, dtype=torch.float64), torch.as_tensor(inputs, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    with torch.no_grad():
        for sigma in SIGMAS:
            if not den.sigma_min <= sigma <= den.sigma_max:
                continue
            errs = [
                den(x0 + sigma * torch.randn(x0.shape, generator=gen, dtype=torch.float64), sigma, cond=cond) - x0
                for _ in range(draws)
            ]
            err = torch.stack(errs)
            div = _divergence(
                den, x0 + sigma * torch.randn(x0.shape, generator=gen, dtype=torch.float64), sigma, cond, gen
            )
            for i, f in enumerate(reconstruct.TARGETS):
                out[f"denoiser_bias_{f}_{sigma:g}"] = float(err[:, :, i].sum() / (draws * x0[:, i].sum()))
                out[f"denoiser_rms_{f}_{sigma:g}"] = float(err[:, :, i].pow(2).mean().sqrt())
                out[f"denoiser_calibration_{f}_{sigma:g}"] = float(err[:, :, i].pow(2).mean() / (sigma**2 * div[i]))
    return out


def _divergence(den, x, sigma: float, cond, gen, probes: int = 4) -> list[float]:
    """Per field, the mean over pixels of the diagonal of dD/dx at ``x`` (Hutchinson, central differences)."""
    eps = 1e-3 * sigma
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    for _ in range(probes):
        v = torch.randint(0, 2, x.shape, generator=gen).to(torch.float64) * 2 - 1
        jv = (den(x + eps * v, sigma, cond=cond) - den(x - eps * v, sigma, cond=cond)) / (2 * eps)
        total += (v * jv).mean(dim=(0, 2, 3))
    return (total / probes).tolist()


def run_variant(name: str, base: dict, res: Path, work: Path, args) -> pd.DataFrame:
    spec = variant(name)
    cfg = merge(copy.deepcopy(base), {k: v for k, v in spec.items() if k in ("training", "sampling")})
    if "sampler_kwargs" in spec.get("sampling", {}):  # replaced, not merged: each sampler has its own keywords
        cfg["sampling"]["sampler_kwargs"] = dict(spec["sampling"]["sampler_kwargs"])
    weights = spec.get("weights", "ema")
    if weights.startswith("ema_"):
        cfg["training"]["ema_decay"] = float(weights[4:])
    splits = pd.read_parquet(res / "split" / "splits.parquet")
    ds = store.open_store(res / "dataset" / "maps.zarr")
    model = with_weights(train(cfg, res, work, splits), weights, work)
    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    s = cfg["sampling"]
    t0 = time.monotonic()
    samples = reconstruct.sample_from_store(
        model,
        res / "dataset" / "maps.zarr",
        splits,
        which="test",
        eval_range_only=s["eval_range_only"],
        n_samples=args.n_samples,
        sampler=s["sampler"],
        steps=s["steps"],
        batch_size=s["batch_size"],
        seed=args.seed,
        device=args.device,
        sampler_kwargs=s["sampler_kwargs"],
        prior_mean=s["prior_mean"],
        progress=False,
        resume_dir=out / "resume",
    )
    wall = time.monotonic() - t0
    blk = checks.evaluation_settings(base)
    ev = evaluate.evaluate(samples, ds, blk, h=base["cosmology"]["H0"] / 100)
    rows = posterior_metrics(ev, args.seed)
    rows += [
        {"mass_bin": "-", "field": "-", "statistic": k, "value": v, "lo": np.nan, "hi": np.nan}
        for k, v in denoiser_bias(model, ds, splits).items()
    ]
    rows.append({"mass_bin": "-", "field": "-", "statistic": "sampling_s", "value": wall, "lo": np.nan, "hi": np.nan})
    rows.append(
        {
            "mass_bin": "-",
            "field": "-",
            "statistic": "nfe_per_sample",
            "value": samples.attrs["nfe_per_sample"],
            "lo": np.nan,
            "hi": np.nan,
        }
    )
    table = pd.DataFrame(rows).assign(variant=name)
    table.to_csv(out / "metrics.csv", index=False)
    (out / "settings.json").write_text(
        json.dumps(
            {
                "training": cfg["training"],
                "sampling": s,
                "weights": weights,
                "n_samples": args.n_samples,
                "model": str(model),
            },
            indent=1,
        )
    )
    return table


def denoiser_only(name: str, base: dict, res: Path, work: Path) -> pd.DataFrame:
    spec = variant(name)
    cfg = merge(copy.deepcopy(base), {k: v for k, v in spec.items() if k == "training"})
    splits = pd.read_parquet(res / "split" / "splits.parquet")
    model = with_weights(train(cfg, res, work, splits), spec.get("weights", "ema"), work)
    rows = [
        {"mass_bin": "-", "field": "-", "statistic": k, "value": v, "lo": np.nan, "hi": np.nan}
        for k, v in denoiser_bias(model, store.open_store(res / "dataset" / "maps.zarr"), splits).items()
    ]
    return pd.DataFrame(rows).assign(variant=name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True, help="results/<run> of a workflow run (dataset, split)")
    ap.add_argument(
        "--config",
        type=Path,
        nargs="+",
        default=[ROOT / "config" / "config.yaml"],
        help="config files the variants start from (merged in order)",
    )
    ap.add_argument("--variants", nargs="+", default=["base"], help="names, or names joined with '+'")
    ap.add_argument("--work", type=Path, default=None, help="where models and tables go (default <results>/ablation)")
    ap.add_argument("--n-samples", type=int, default=20)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="where sampling runs (training follows training.device)")
    ap.add_argument("--out", type=Path, default=None, help="write every variant's rows here (CSV)")
    ap.add_argument("--list", action="store_true", help="list the variants and exit")
    ap.add_argument(
        "--denoiser-only",
        action="store_true",
        help="only the denoiser diagnostics of each variant's model (trained if needed)",
    )
    args = ap.parse_args()
    if args.list:
        for name, spec in VARIANTS.items():
            print(f"{name:24s} {json.dumps(spec)}")
        return
    torch.set_num_threads(args.threads)
    base: dict = {}
    for f in args.config:
        merge(base, yaml.safe_load(Path(f).read_text()))
    checks.validate(base, ROOT / "workflow" / "schemas" / "config.schema.yaml")  # fills the defaults
    work = args.work or args.results / "ablation"
    tables = []
    for name in args.variants:
        print(f"variant {name}", flush=True)
        tables.append(
            denoiser_only(name, base, args.results, work)
            if args.denoiser_only
            else run_variant(name, base, args.results, work, args)
        )
    tables = pd.concat(tables, ignore_index=True)
    if args.out:
        tables.to_csv(args.out, index=False)
    with pd.option_context("display.max_columns", None, "display.width", 250, "display.max_colwidth", 40):
        for stat_prefix in (
            "mass_error_median",
            "b_large",
            "r_small",
            "max_coverage_error",
            "z_std",
            "z_mean",
            "tarp_ks_p",
            "denoiser_bias",
            "denoiser_calibration",
            "sampling_s",
        ):
            part = tables[tables["statistic"].str.startswith(stat_prefix)]
            if not part.empty:
                print(f"\n{stat_prefix}:\n{summary(part).to_string()}")


if __name__ == "__main__":
    main()
