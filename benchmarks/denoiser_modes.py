"""Does the trained denoiser claim the right posterior variance along coherent modes? A directional Tweedie check.

TARP and the annulus z scores say the posterior is too narrow in coherent modes (the mean in an annulus,
the total) while the pixel z scores look fine. The denoiser D(x; sigma, y) = E[x0 | x, y], x = x0 + sigma n,
fixes the sampled spread: by Tweedie's second-order identity, for any fixed unit vector u,

    E[(u . (D - x0))^2] = sigma^2 E[u^T J u],   J = dD/dx,

so a denoiser that errs more along u than its own response to the noisy input along u admits gives too
narrow samples in that mode. (A model trained on pyramid noise, x = x0 + sigma A z: the response is taken
along A^2 u, and the noise drawn is the model's.) For each target field, each annulus of TARP's summary (the unit-normalised
indicator of the pixels that ``calibration.summary_vector`` averages, named ann1 .. ann6 from the centre
out) and the whole map ("all"), and each noise level, on maps of one split in the evaluation range:

    e_u = u . (D(x) - x0),   J_u = u . (D(x + eps u) - D(x - eps u)) / (2 eps),  eps = 0.05 sigma,
    ratio = mean(e_u^2) / (sigma^2 mean(J_u)).

A Bayes-optimal denoiser gives 1; above 1 it responds too little along u, claims too little posterior
variance there, and samples are too narrow in that mode; below 1, too wide. Where the denoiser all but
ignores the noisy input along u (J_model near 0, at large sigma), the ratio is noise, negative included.
With J_true = mean(e_u^2) / sigma^2 and J_model = mean(J_u), the spread factor exp(integral of
(J_true - J_model) d ln sigma) over the noise levels is, for a Gaussian mode and the probability-flow ODE,
the factor by which the sampled deviation along u is too small (a rough guide: the stochastic sampler
corrects part of it).

    python benchmarks/denoiser_modes.py --results results/default --split val --draws 3

Prints per field the ratio, the rms error and the mean error along the mode (normalised units) by noise
level and mode, then the spread factors, then the plain pixel error by noise level (the sum over a field's
pixels of (D - x0)^2, normalised units: a lever that moves a mode's ratio by making D noisier shows there);
--out writes the full table as CSV.

The mean error is the bias a sampler carries into every sample: a Bayes-optimal denoiser has none on maps of
its training distribution. A model trained with ``training.mean_correction`` is checked as the samplers use
it (``--uncorrected``: the network alone). ``--mean-only`` leaves out the response (one network call per
map and draw instead of 29 on two fields); ``--sampler-levels 20`` takes the 20 noise levels at which the
laptop default's sampler evaluates the network instead of ``--sigmas``:

    python benchmarks/denoiser_modes.py --results results/default --split test --n-maps 400 --draws 3 \
        --sampler-levels 20 --mean-only
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from massmaps import store  # noqa: E402
from massmaps.evaluation import calibration  # noqa: E402
from massmaps.learning import reconstruct, samplers, score  # noqa: E402

SIGMAS = (0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
#: Central-difference step along the mode, relative to sigma.
EPS = 0.05


def annulus_modes(npix: int, pixel: float, n_annuli: int = calibration.SUMMARY_ANNULI) -> dict[str, np.ndarray]:
    """Unit-norm (npix, npix) masks of the annuli of :func:`calibration.summary_vector` ("ann1" from the centre
    out; an annulus holding no pixel centre is left out) and of the whole map ("all"); the pixels of each
    annulus are those the summary averages (:func:`calibration.summary_annuli`; ``pixel`` cancels)."""
    modes = {}
    for k, member in enumerate(calibration.summary_annuli(npix, npix, n_annuli)):
        if member.any():
            mask = member.astype(np.float64)
            modes[f"ann{k + 1}"] = mask / np.sqrt(mask.sum())
    modes["all"] = np.full((npix, npix), 1.0 / npix)
    return modes


def _evaluate(denoise: Callable, x: torch.Tensor, sigma: float, cond, batch: int) -> torch.Tensor:
    """D of ``x`` (K, B, C, H, W): K batches of the B maps whose conditions are ``cond``, ``batch`` maps at a time."""
    flat = x.flatten(0, 1)
    rows = torch.arange(flat.shape[0]) % x.shape[1]  # the map of each row
    out = [
        denoise(flat[i : i + batch], sigma, None if cond is None else cond[rows[i : i + batch]])
        for i in range(0, flat.shape[0], batch)
    ]
    return torch.cat(out).reshape(x.shape)


def mode_calibration(
    denoise: Callable,
    x0,
    cond,
    sigmas: Sequence[float],
    modes: dict[str, np.ndarray],
    draws: int,
    generator: torch.Generator,
    fields: Sequence | None = None,
    batch: int = 256,
    colour: Callable | None = None,
    response: bool = True,
) -> pd.DataFrame:
    """The directional Tweedie check of ``denoise(x, sigma, cond)`` -> D (torch, (B, C, H, W)) on maps ``x0``
    (B, C, H, W) with conditions ``cond`` (rows matching x0's, or None), ``draws`` noise draws per map and
    noise level, all randomness from ``generator``. Each mode (H, W), of unit norm, is applied to each
    channel alone. One row per field (``fields`` names the channels; default their index), mode and sigma:
    n (maps x draws), mean = mean(e_u) (the denoiser's mean error along u; 0 for a Bayes-optimal denoiser on
    maps drawn from its training distribution) and mean_se (its standard error over the maps, each map's draws
    averaged first), e2 = mean(e_u^2), rms = sqrt(e2), J_model = mean(J_u), J_true = e2 / sigma^2,
    ratio = J_true / J_model and pixel_e2, the field's plain pixel error: the mean over maps and draws of
    the sum over its pixels of (D - x0)^2 (one value per field and sigma, repeated on each mode's row).
    ``colour``: the model's diffusion noise as a symmetric linear map A of white noise (``Denoiser.colour``;
    None: white): the noisy maps are x0 + sigma A z and, since Cov[x0 | x] = sigma^2 J A^2 there, J_u is the
    derivative of u . D along A^2 u; J_model and J_true are then given per unit of the noise's variance along
    u, noise_var = u^T A^2 u (1 for white noise), as for a Gaussian mode whose noise level is sigma
    sqrt(noise_var), so that the spread factor reads alike for either noise. ``response=False`` skips the
    derivative (one network call per map and draw instead of 1 + 2 C M): J_model and ratio are then NaN."""
    x0 = torch.as_tensor(x0, dtype=torch.float64)
    B, C = x0.shape[:2]
    fields = list(fields) if fields is not None else list(range(C))
    names = list(modes)
    M = len(names)
    u = torch.as_tensor(np.stack([modes[m] for m in names]), dtype=torch.float64)  # (M, H, W)
    norms = u.flatten(1).norm(dim=1)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-9):
        raise ValueError(f"modes must have unit norm, got {dict(zip(names, norms.tolist()))}")
    steps = torch.zeros(C, M, C, *u.shape[1:], dtype=torch.float64)  # mode m in channel c alone
    for c in range(C):
        steps[c, :, c] = u
    steps = steps.flatten(0, 1)[:, None]  # (C M, 1, C, H, W)
    colour = colour or (lambda z: z)
    along = colour(colour(steps))  # A^2 u: the direction whose response gives u^T Cov u
    noise_var = (along * steps).flatten(1).sum(1).reshape(C, M)  # u^T A^2 u, 1 for white noise
    rows = []
    for sigma in sigmas:
        eps = EPS * sigma
        e2 = torch.zeros(C, M, dtype=torch.float64)
        e1 = torch.zeros(B, C, M, dtype=torch.float64)  # per map, summed over draws
        pixel = torch.zeros(C, dtype=torch.float64)
        jac = torch.zeros(C * M, dtype=torch.float64)
        for _ in range(draws):
            x = x0 + sigma * colour(torch.randn(x0.shape, generator=generator, dtype=torch.float64))
            probes = torch.cat([x[None], x + eps * along, x - eps * along]) if response else x[None]
            d = _evaluate(denoise, probes, sigma, cond, batch)
            d = d.to(torch.float64)
            err = d[0] - x0
            proj = torch.einsum("bchw,mhw->bcm", err, u)
            e1 += proj
            e2 += proj.pow(2).sum(0)
            pixel += err.pow(2).sum(dim=(0, 2, 3))
            if response:
                diff = (d[1 : 1 + C * M] - d[1 + C * M :]) / (2 * eps)  # (C M, B, C, H, W)
                jac += torch.einsum("kbchw,kchw->k", diff, steps[:, 0])
        if not response:
            jac[:] = math.nan
        n = B * draws
        jac = jac.reshape(C, M)
        per_map = e1 / draws
        mean = per_map.mean(0)
        mean_se = per_map.std(0) / math.sqrt(B) if B > 1 else torch.full((C, M), math.nan)
        for c, f in enumerate(fields):
            for m, name in enumerate(names):
                q = float(noise_var[c, m])
                mean_e2, j_model = float(e2[c, m] / n), float(jac[c, m] / n) / q
                j_true = mean_e2 / sigma**2 / q
                rows.append(
                    {
                        "field": f,
                        "mode": name,
                        "sigma": float(sigma),
                        "n": n,
                        "noise_var": q,
                        "mean": float(mean[c, m]),
                        "mean_se": float(mean_se[c, m]),
                        "e2": mean_e2,
                        "rms": mean_e2**0.5,
                        "J_model": j_model,
                        "J_true": j_true,
                        "ratio": j_true / j_model if j_model else float("nan"),
                        "pixel_e2": float(pixel[c] / n),
                    }
                )
    return pd.DataFrame(rows)


def spread_factors(table: pd.DataFrame) -> pd.DataFrame:
    """Per field and mode: deficit = the trapezoid integral over ln(sigma) of J_true - J_model across the
    table's noise levels, and spread_factor = exp(deficit) (> 1: samples too narrow along the mode)."""
    rows = []
    for (f, m), t in table.groupby(["field", "mode"], sort=False):
        t = t.sort_values("sigma")
        y, lns = (t["J_true"] - t["J_model"]).to_numpy(), np.log(t["sigma"].to_numpy())
        deficit = float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(lns)))
        rows.append({"field": f, "mode": m, "deficit": deficit, "spread_factor": float(np.exp(deficit))})
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame, fmt: str, index: str) -> str:
    lines = [f"| {index} | " + " | ".join(str(c) for c in table.columns) + " |", "|---|" + "---|" * table.shape[1]]
    for i, row in table.iterrows():
        lines.append(f"| {i:g} | " if isinstance(i, float) else f"| {i} | ")
        lines[-1] += " | ".join(format(v, fmt) for v in row) + " |"
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True, help="a finished run's results folder")
    ap.add_argument("--split", choices=("val", "test", "train"), default="val")
    ap.add_argument("--n-maps", type=int, default=80, help="at most this many maps (a random subset)")
    ap.add_argument("--draws", type=int, default=3, help="noise draws per map and noise level")
    ap.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS))
    ap.add_argument(
        "--sampler-levels",
        type=int,
        default=None,
        metavar="N",
        help="instead of --sigmas, the N noise levels of the samplers' Karras schedule over the model's range "
        "(rho 7; the laptop default's dpmpp_2m_sde: 20): the only levels a sampling run evaluates the network at",
    )
    ap.add_argument(
        "--mean-only",
        action="store_true",
        help="the errors only, without the response along each mode (one network call per map and draw, not 29)",
    )
    ap.add_argument(
        "--uncorrected",
        action="store_true",
        help="a model with training.mean_correction: check the network without it (default: as the samplers see it)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=256, help="maps per denoiser evaluation")
    ap.add_argument("--out", type=Path, default=None, help="write the full table as CSV")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*consolidated.*")
    res = args.results
    trained = score.load_model(res / "model", device="cpu")
    den, norm = trained.denoiser, trained.normaliser
    ds = store.open_store(res / "dataset" / "maps.zarr")
    splits = pd.read_parquet(res / "split" / "splits.parquet")
    idx = splits.loc[(splits["split"] == args.split) & splits["in_eval_range"], "index"].to_numpy()
    if idx.size > args.n_maps:
        idx = np.random.default_rng(args.seed).choice(idx, args.n_maps, replace=False)
    idx = np.sort(idx)
    if not idx.size:
        raise SystemExit(f"no {args.split} maps in the evaluation range")
    maps = ds["maps"].isel(sightline=idx)
    targets, inputs = reconstruct.normalised_pairs(maps, norm)
    x0, cond = torch.as_tensor(targets, dtype=torch.float64), torch.as_tensor(inputs, dtype=torch.float32)
    if args.uncorrected:
        den = den.uncorrected()
    asked = args.sigmas
    if args.sampler_levels:
        asked = samplers.karras_sigmas(args.sampler_levels, den.sigma_min, den.sigma_max).tolist()
        asked = sorted(min(max(s, den.sigma_min), den.sigma_max) for s in asked if s > 0)  # ends: rounding
    sigmas = [s for s in asked if den.sigma_min <= s <= den.sigma_max]
    skipped = sorted(set(asked) - set(sigmas))
    modes = annulus_modes(x0.shape[-1], float(ds.attrs["pixel_Mpc"]))
    print(
        f"{idx.size} {args.split} maps, {args.draws} draws, sigma in [{den.sigma_min:g}, {den.sigma_max:g}], "
        + ("network alone" if den.mean_correction is None else "with the model's mean correction")
        + (f" (skipped {' '.join(f'{s:g}' for s in skipped)})" if skipped else ""),
        flush=True,
    )
    with torch.no_grad():
        table = mode_calibration(
            lambda x, s, c: den(x, s, cond=c),
            x0,
            cond,
            sigmas,
            modes,
            args.draws,
            torch.Generator().manual_seed(args.seed),
            fields=reconstruct.TARGETS,
            batch=args.batch,
            colour=den.colour,
            response=not args.mean_only,
        )
    for f in reconstruct.TARGETS:
        t = table[table["field"] == f]
        for col, what, fmt in (
            ("ratio", "mean(e_u^2) / (sigma^2 mean(J_u)), 1 if calibrated, > 1: samples too narrow", ".2f"),
            ("rms", "rms error along the mode, normalised units", ".3g"),
            ("mean", "mean error along the mode, normalised units (< 0: D too low)", "+.4f"),
        )[1 if args.mean_only else 0 :]:
            print(f"\n{f}: {what}\n")
            print(_markdown(t.pivot(index="sigma", columns="mode", values=col)[list(modes)], fmt, "sigma"))
        significance = t["mean"].abs() / t["mean_se"]
        if significance.notna().any():  # one map: no standard error
            worst = t.loc[significance.idxmax()]
            print(
                f"\n{f}: largest mean error in standard errors: {worst['mean']:+.4f} +/- {worst['mean_se']:.4f} "
                f"({worst['mode']}, sigma {worst['sigma']:.4g})"
            )
    if not args.mean_only:
        spread = spread_factors(table)
        print(
            f"\nspread factor exp(integral (J_true - J_model) d ln sigma) over sigma {sigmas[0]:g} .. {sigmas[-1]:g}\n"
        )
        print(
            _markdown(
                spread.pivot(index="field", columns="mode", values="spread_factor").loc[
                    list(reconstruct.TARGETS), list(modes)
                ],
                ".2f",
                "field",
            )
        )
    pixel = table.groupby(["sigma", "field"], sort=False)["pixel_e2"].first().unstack()
    print("\npixel error: mean over maps and draws of the sum over the field's pixels of (D - x0)^2\n")
    print(_markdown(pixel[list(reconstruct.TARGETS)], ".4g", "sigma"))
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
