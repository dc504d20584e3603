"""Figures of the paper, drawn from the pipeline's own tables and stores (no computation of metrics here)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HALO_COLOUR = "tab:orange"
IMAGE_COLOUR = "tab:purple"


def save_figure(fig, paths: Sequence[str | os.PathLike], dpi: int = 150) -> None:
    """Save ``fig`` to every path (format from the suffix), each written under a temporary name first."""
    from ..files import atomic_path

    for path in paths:
        # Fixed metadata keeps PDF/PNG bytes identical between runs.
        metadata = {"CreationDate": None} if Path(path).suffix == ".pdf" else {"Software": None}
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata=metadata)
    plt.close(fig)


def figure1_mass_function(
    catalog: pd.DataFrame,
    plan: pd.DataFrame,
    *,
    expected_per_bin: tuple[np.ndarray, np.ndarray] | None = None,
    target_per_bin: int | None = None,
    bin_dex: float = 0.1,
    log10_min: float = 14.0,
):
    """Fig. 1: clusters per 0.1 dex (orange) and images per 0.1 dex (purple), log scale.

    ``expected_per_bin`` = (bin centres, expected counts) of the mass function, drawn as a line.
    """
    top = max(catalog["log10_M200m"].max(), plan["log10_M200m"].max())
    edges = log10_min + bin_dex * np.arange(int(np.ceil((top - log10_min) / bin_dex + 1e-9)) + 1)
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    ax.hist(
        catalog["log10_M200m"],
        bins=edges,
        histtype="stepfilled",
        alpha=0.55,
        color=HALO_COLOUR,
        label=f"clusters ({len(catalog):,})",
    )
    ax.hist(
        plan["log10_M200m"], bins=edges, histtype="step", lw=2.0, color=IMAGE_COLOUR, label=f"images ({len(plan):,})"
    )
    if expected_per_bin is not None:
        centres, counts = expected_per_bin
        ax.plot(centres, counts, "--", color="0.25", lw=1.2, label="Tinker et al. 2008 expectation")
    if target_per_bin:
        ax.axhline(
            target_per_bin, color=IMAGE_COLOUR, ls=":", lw=1, label=f"target {target_per_bin:,} per {bin_dex:g} dex"
        )
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5)
    ax.set_xlabel(r"$\log_{10}\,(M_{200m}/M_\odot)$")
    ax.set_ylabel(f"number per {bin_dex:g} dex")
    ax.legend(frameon=False, fontsize=9)
    ax.set_title("Halo mass function and sightline plan", fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------------
# Maps (Figs 2, 3, 4)
# --------------------------------------------------------------------------------------------------

FIELD_TITLES = {"tsz": "tSZ", "xray": "X-ray", "gas": r"gas $\Sigma/\bar\rho L$", "dm": r"DM $\Sigma/\bar\rho L$"}
FIELD_CMAPS = {"tsz": "magma", "xray": "inferno", "gas": "viridis", "dm": "cividis"}
MASS_BIN_COLOURS = {"low": "tab:blue", "high": "tab:red", "all": "0.3"}
GEN_COLOUR, SIM_COLOUR = "tab:orange", "k"
BASELINE_STYLES = {"tsz": dict(color="tab:purple", ls="--"), "xray": dict(color="tab:green", ls=":")}


def _mean_band(ax, x, arr, colour, label, lw=1.6, alpha=0.2):
    """Mean over maps (rows of ``arr``) as a line and the 16-84th percentile band, NaN-aware."""
    lo, hi = np.nanpercentile(arr, [16, 84], axis=0)
    ax.plot(x, np.nanmean(arr, axis=0), color=colour, lw=lw, label=label)
    ax.fill_between(x, lo, hi, color=colour, alpha=alpha, lw=0)


def _unit_label(field: str, units: str) -> str:
    return {"1": "(dimensionless)", "microK": r"$\mu$K", "erg s-1 cm-2": r"erg s$^{-1}$ cm$^{-2}$"}.get(units, units)


def _log_image(ax, img, extent, cmap, vmin=None, vmax=None):
    """A map on a log colour scale (non-positive pixels clipped to the smallest positive one)."""
    from matplotlib.colors import LogNorm

    img = np.asarray(img, dtype=np.float64)
    pos = img[img > 0]
    lo = vmin if vmin is not None else (np.percentile(pos, 1) if pos.size else 1e-3)
    hi = vmax if vmax is not None else (pos.max() if pos.size else 1.0)
    return ax.imshow(
        np.clip(img, lo, None),
        origin="lower",
        extent=extent,
        cmap=cmap,
        norm=LogNorm(vmin=lo, vmax=max(hi, lo * 10)),
        interpolation="nearest",
    )


def _extent(x: np.ndarray, y: np.ndarray) -> list[float]:
    dx, dy = x[1] - x[0], y[1] - y[0]
    return [x[0] - dx / 2, x[-1] + dx / 2, y[0] - dy / 2, y[-1] + dy / 2]


def figure2_example_maps(
    maps: np.ndarray,
    fields: Sequence[str],
    units: Sequence[str],
    x: np.ndarray,
    y: np.ndarray,
    masses: Sequence[float],
    cmap_overrides: dict | None = None,
):
    """Fig. 2: the four maps (tSZ, X-ray, gas, DM) of a few clusters; maps is (cluster, field, y, x)."""
    cmaps = {**FIELD_CMAPS, **(cmap_overrides or {})}
    n, nf = maps.shape[:2]
    fig, axes = plt.subplots(n, nf, figsize=(2.9 * nf, 2.6 * n), squeeze=False, constrained_layout=True)
    ext = _extent(x, y)
    for i in range(n):
        for j, f in enumerate(fields):
            ax = axes[i, j]
            im = _log_image(ax, maps[i, j], ext, cmaps.get(f, "viridis"))
            cb = fig.colorbar(im, ax=ax, shrink=0.85)
            cb.set_label(_unit_label(f, units[j]), fontsize=8)
            if i == 0:
                ax.set_title(FIELD_TITLES.get(f, f), fontsize=10)
            if j == 0:
                ax.set_ylabel(f"$M_{{200m}}$ = {masses[i]:.2e} $M_\\odot$\ny [Mpc]", fontsize=8)
            if i == n - 1:
                ax.set_xlabel("x [Mpc]", fontsize=8)
            ax.tick_params(labelsize=7)
    return fig


def figure3_diffusion(forward: np.ndarray, reverse: np.ndarray, sigmas: Sequence[float], fields: Sequence[str]):
    """Fig. 3: the forward (noising) and reverse (sampling) SDE of the trained model on one test sightline.

    ``forward`` and ``reverse`` are (level, field, y, x) in normalised units at the noise levels ``sigmas``
    (forward: x0 + sigma z; reverse: the sampler's state when it passes each level).
    """
    nl, nf = forward.shape[:2]
    fig, axes = plt.subplots(2 * nf, nl, figsize=(1.9 * nl, 1.95 * 2 * nf), squeeze=False, constrained_layout=True)
    for fi, f in enumerate(fields):
        clean = forward[np.argmin(sigmas), fi]
        vmin, vmax = float(np.min(clean)), float(np.max(clean))
        for row, (name, stack) in enumerate((("forward", forward), ("reverse", reverse))):
            for li in range(nl):
                ax = axes[2 * fi + row, li]
                ax.imshow(
                    stack[li, fi],
                    origin="lower",
                    cmap=FIELD_CMAPS.get(f, "viridis"),
                    vmin=vmin,
                    vmax=vmax,
                    interpolation="nearest",
                )
                ax.set_xticks([])
                ax.set_yticks([])
                if 2 * fi + row == 0:
                    ax.set_title(rf"$\sigma$ = {sigmas[li]:.3g}", fontsize=9)
                if li == 0:
                    ax.set_ylabel(f"{FIELD_TITLES.get(f, f)}\n{name}", fontsize=8)
    fig.suptitle(
        r"Forward SDE (noising, left to right: $\sigma$ grows) and reverse SDE (sampling) of the trained model; "
        "normalised units",
        fontsize=9,
    )
    return fig


def figure4_reconstructions(
    inputs: np.ndarray,
    truth: np.ndarray,
    mean: np.ndarray,
    masses: Sequence[float],
    x: np.ndarray,
    y: np.ndarray,
    input_units: Sequence[str],
):
    """Fig. 4: per cluster (row) the inputs (tSZ, X-ray), the true gas and DM maps and the posterior means.

    inputs (n, 2, y, x) [tsz, xray]; truth and mean (n, 2, y, x) [gas, dm]. Truth and mean share a colour scale.
    """
    n = inputs.shape[0]
    cols = [("tsz", "input"), ("xray", "input"), ("gas", "truth"), ("gas", "mean"), ("dm", "truth"), ("dm", "mean")]
    fig, axes = plt.subplots(n, len(cols), figsize=(2.25 * len(cols), 2.15 * n), squeeze=False, constrained_layout=True)
    ext = _extent(x, y)
    for i in range(n):
        for j, (f, kind) in enumerate(cols):
            ax = axes[i, j]
            if kind == "input":
                k = 0 if f == "tsz" else 1
                im = _log_image(ax, inputs[i, k], ext, FIELD_CMAPS[f])
                label = _unit_label(f, input_units[k])
            else:
                k = 0 if f == "gas" else 1
                ref = truth[i, k]
                pos = ref[ref > 0]
                lo, hi = (np.percentile(pos, 1), pos.max()) if pos.size else (None, None)
                im = _log_image(ax, (truth if kind == "truth" else mean)[i, k], ext, FIELD_CMAPS[f], lo, hi)
                label = r"$\Sigma/\bar\rho L$"
            cb = fig.colorbar(im, ax=ax, shrink=0.8)
            cb.set_label(label, fontsize=7)
            cb.ax.tick_params(labelsize=6)
            ax.tick_params(labelsize=6)
            if i == 0:
                title = FIELD_TITLES[f].split(" ")[0] if kind != "input" else FIELD_TITLES[f]
                ax.set_title(f"{title} {'(input)' if kind == 'input' else kind}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{masses[i]:.2e} $M_\\odot$\ny [Mpc]", fontsize=7)
            if i == n - 1:
                ax.set_xlabel("x [Mpc]", fontsize=7)
    return fig


# --------------------------------------------------------------------------------------------------
# Metrics (Figs 5-9): drawn from the evaluation store only
# --------------------------------------------------------------------------------------------------


def figure5_convergence(n: np.ndarray, ratio: dict, threshold: float, converged: dict):
    """Fig. 5: V(N)/V(2) (mean over maps, 16-84 band) per field against N, the 2/N law and the threshold.

    ratio: field -> (maps, N) array of V(N)/V(2).
    """
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for f, r in ratio.items():
        colour = "tab:green" if f == "gas" else "tab:brown"
        lo, hi = np.percentile(r, [16, 84], axis=0)
        ax.plot(n, r.mean(axis=0), color=colour, lw=1.8, label=f"{f}: mean over {r.shape[0]} maps")
        ax.fill_between(n, lo, hi, color=colour, alpha=0.2, lw=0)
        if converged.get(f):
            ax.axvline(converged[f], color=colour, lw=0.8, ls="--")
    ax.plot(n, 2.0 / n, color="0.4", lw=1, ls=":", label=r"$2/N$ (independent samples)")
    ax.axhline(threshold, color="k", lw=0.8, ls="--", label=f"{threshold:g} of the 2-sample variance")
    ax.set_yscale("log")
    ax.set_xlabel("number of posterior samples N")
    ax.set_ylabel(r"$V(N)\,/\,V(2)$: variance of the N-sample mean")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Convergence of the posterior mean", fontsize=10)
    return fig


def figure6_zscores(z: np.ndarray, density: dict, within: dict):
    """Fig. 6: histograms of the standardized pixel errors per field against the unit normal."""
    fields = list(density)
    fig, axes = plt.subplots(1, len(fields), figsize=(4.6 * len(fields), 3.6), squeeze=False, sharey=True)
    gauss = np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi)
    for ax, f in zip(axes[0], fields):
        ax.step(z, density[f], where="mid", color=GEN_COLOUR, lw=1.6, label="all test pixels")
        ax.plot(z, gauss, color="k", lw=1, ls="--", label=r"$\mathcal{N}(0, 1)$")
        w1, w2 = within[f]
        ax.text(
            0.03,
            0.95,
            f"within $\\pm1\\sigma$: {100 * w1:.1f}%\nwithin $\\pm2\\sigma$: {100 * w2:.1f}%\n(calibrated: 68.3%, 95.4%)",
            transform=ax.transAxes,
            va="top",
            fontsize=8,
        )
        ax.set_xlabel(r"$\epsilon = (\bar S_{gen} - S_{sim})\,/\,\sigma_{gen}$")
        ax.set_title(FIELD_TITLES[f].split(" ")[0], fontsize=10)
    axes[0, 0].set_ylabel("probability density")
    axes[0, -1].legend(frameon=False, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def figure7_profiles(radius: np.ndarray, prof_sim: dict, prof_gen: dict, mass_errors: dict, n_samples: int):
    """Fig. 7: radial profiles of simulated and generated maps per mass bin (columns) and field (rows).

    prof_sim / prof_gen: (mass_bin, field) -> (maps, radius) arrays; mass_errors: (mass_bin, field) ->
    percentile dict of the total-mass error; n_samples: posterior samples per map. Each panel has the
    mean and 16-84 band, and below it the fractional difference of the means.
    """
    bins = sorted(
        {b for b, _ in prof_sim}, key=lambda b: ["low", "high", "all"].index(b) if b in ("low", "high", "all") else 9
    )
    fields = [f for f in ("gas", "dm") if any(k[1] == f for k in prof_sim)]
    fig = plt.figure(figsize=(4.8 * len(bins), 4.6 * len(fields)), constrained_layout=True)
    outer = fig.add_gridspec(len(fields), len(bins))
    for i, f in enumerate(fields):
        for j, b in enumerate(bins):
            inner = outer[i, j].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.0)
            ax, axr = fig.add_subplot(inner[0]), fig.add_subplot(inner[1])
            s, g = prof_sim[b, f], prof_gen[b, f]
            for arr, colour, label in (
                (s, SIM_COLOUR, "simulated"),
                (g, GEN_COLOUR, f"generated ({n_samples}-sample mean)"),
            ):
                _mean_band(ax, radius, arr, colour, label, alpha=0.18)
            ax.set_yscale("log")
            ax.set_xticklabels([])
            ax.set_ylabel(rf"{FIELD_TITLES[f].split(' ')[0]} $\langle\Sigma/\bar\rho L\rangle$ in annulus", fontsize=8)
            me = mass_errors[b, f]
            ax.set_title(
                f"{b} mass ({s.shape[0]} maps): total-mass error {100 * me['median']:+.1f}% "
                f"[{100 * me['p16']:+.1f}, {100 * me['p84']:+.1f}]",
                fontsize=8,
            )
            frac = (np.nanmean(g, axis=0) - np.nanmean(s, axis=0)) / np.nanmean(s, axis=0)
            axr.plot(radius, 100 * frac, color=GEN_COLOUR, lw=1.4)
            axr.axhline(0, color="k", lw=0.6)
            for lvl in (-5, 5):
                axr.axhline(lvl, color="0.6", lw=0.6, ls=":")
            axr.set_xlabel("projected radius R [Mpc]", fontsize=8)
            axr.set_ylabel(r"$\Delta$ [%]", fontsize=8)
            if i == 0 and j == 0:
                ax.legend(frameon=False, fontsize=8)
    return fig


def _spectrum_panels(k: np.ndarray, k_split: float, per_bin: dict, ylabel: str):
    """Panels of a (mass_bin, field)-keyed dict: fields in rows, mass bins in columns, log k axes."""
    bins = list(dict.fromkeys(mb for mb, _ in per_bin))
    fields = list(dict.fromkeys(f for _, f in per_bin))
    fig, axes = plt.subplots(
        len(fields),
        len(bins),
        figsize=(4.4 * len(bins), 3.4 * len(fields)),
        squeeze=False,
        sharex=True,
        constrained_layout=True,
    )
    for ax in axes.flat:
        ax.axvline(k_split, color="0.5", lw=0.7, ls="--")
        ax.set_xscale("log")
    for ax in axes[-1]:
        ax.set_xlabel(r"$k$ [$h$ Mpc$^{-1}$]")
    for i, f in enumerate(fields):
        axes[i, 0].set_ylabel(f"{FIELD_TITLES[f].split(' ')[0]}: {ylabel}")
    return fig, axes, bins, fields


def figure8_bias(k: np.ndarray, k_split: float, b: dict, n_samples: int):
    """Fig. 8: b(k) = sqrt(P_gen/P_sim) per mass bin (columns) and field (rows), mean and 16-84 band."""
    fig, axes, bins, fields = _spectrum_panels(k, k_split, b, r"$b(k)$")
    for i, f in enumerate(fields):
        for j, mb in enumerate(bins):
            ax, arr = axes[i, j], b[mb, f]
            _mean_band(ax, k, arr, MASS_BIN_COLOURS.get(mb, "k"), f"{mb} mass ({arr.shape[0]} maps)")
            ax.axhline(1, color="k", lw=0.6)
            ax.legend(frameon=False, fontsize=8)
    fig.suptitle(r"Bias $b(k) = \sqrt{P_{gen}/P_{sim}}$ of the " + f"{n_samples}-sample mean", fontsize=10)
    return fig


def figure9_correlation(k: np.ndarray, k_split: float, r: dict, baselines: dict, n_samples: int):
    """Fig. 9: r(k) per mass bin (columns) and field (rows), with the linear baselines of each input.

    r: (mass_bin, field) -> (maps, k); baselines: (mass_bin, field, input) -> (maps, k).
    """
    fig, axes, bins, fields = _spectrum_panels(k, k_split, r, r"$r(k)$")
    for i, f in enumerate(fields):
        for j, mb in enumerate(bins):
            ax, arr = axes[i, j], r[mb, f]
            _mean_band(
                ax, k, arr, MASS_BIN_COLOURS.get(mb, "k"), f"{n_samples}-sample mean ({arr.shape[0]} maps)", lw=1.8
            )
            for inp, style in BASELINE_STYLES.items():
                if (mb, f, inp) in baselines:
                    ax.plot(
                        k,
                        np.nanmean(baselines[mb, f, inp], axis=0),
                        lw=1.2,
                        **style,
                        label=f"baseline: {FIELD_TITLES[inp]} map",
                    )
            ax.set_title(f"{mb} mass", fontsize=9)
            ax.legend(frameon=False, fontsize=7, loc="lower left")
    fig.suptitle(r"Cross-correlation $r(k)$ with the simulated map; dashed/dotted: the inputs themselves", fontsize=10)
    return fig


GALLERY_FIELDS = (
    ("gas", r"$\Sigma_{\rm gas}/\bar\Sigma_{\rm gas}$", "viridis"),
    ("dm", r"$\Sigma_{\rm DM}/\bar\Sigma_{\rm DM}$", "magma"),
    ("tsz", r"tSZ [$\mu$K]", "cividis"),
    ("xray", r"$S_X$ [erg s$^{-1}$ cm$^{-2}$]", "inferno"),
)


def figure10_calibration(
    levels: np.ndarray,
    coverage: dict,
    rank_hists: dict,
    tarp_f: dict,
    *,
    profile_z: dict | None = None,
    annulus_edges_Mpc: np.ndarray | None = None,
    calibrated_z_std: float | None = None,
):
    """Calibration per field (rows): coverage of central credible intervals against their level (bootstrap
    16-84 band) per mass bin; the histogram of the truth's rank among the samples, all pixels pooled;
    TARP's expected coverage P(f < a); with ``profile_z``, the z std of each annulus of TARP's summary
    against radius. A calibrated posterior follows the diagonals and the flat lines.

    coverage: (mass_bin, field) -> (value, lo, hi) arrays over ``levels``; rank_hists: field -> pooled
    counts per rank (n + 1 values); tarp_f: (mass_bin, field) -> per-map TARP fractions; profile_z:
    (mass_bin, field) -> (value, lo, hi) arrays over the annuli bounded by ``annulus_edges_Mpc``.
    """
    fields = list(rank_hists)
    bins = list(dict.fromkeys(mb for mb, _ in coverage))
    colours = dict(zip(bins, ["tab:blue", "tab:red", "0.3", "tab:green", "tab:purple"]))
    ncols = 4 if profile_z else 3
    fig, axes = plt.subplots(len(fields), ncols, figsize=(4.2 * ncols, 3.6 * len(fields)), squeeze=False)
    grid = np.linspace(0, 1, 101)
    for row, f in zip(axes, fields):
        ax = row[0]
        for mb in bins:
            value, lo, hi = coverage[mb, f]
            ax.plot(levels, value, color=colours[mb], lw=1.6, marker="o", ms=3, label=mb)
            ax.fill_between(levels, lo, hi, color=colours[mb], alpha=0.2, lw=0)
        ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--")
        ax.fill_between([0, 1], [-0.05, 0.95], [0.05, 1.05], color="0.85", lw=0, zorder=0, label="level $\\pm$ 0.05")
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="credible level",
            ylabel="coverage",
            title=f"{FIELD_TITLES[f].split(' ')[0]}: central intervals",
        )
        ax.legend(frameon=False, fontsize=8)
        ax = row[1]
        counts = np.asarray(rank_hists[f], dtype=float)
        groups = np.array_split(counts, min(10, counts.size))
        frac = np.array([g.sum() for g in groups]) / counts.sum() * len(groups)
        ax.bar(np.arange(len(groups)), frac, color=GEN_COLOUR, alpha=0.7, width=0.9)
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set(
            xlabel=f"rank of the truth among {counts.size - 1} samples (in {len(groups)} groups)",
            ylabel="pixels / uniform",
            title="rank histogram (dome: too wide; U: too narrow)",
        )
        ax = row[2]
        for mb in bins:
            fv = np.asarray(tarp_f[mb, f])
            ax.plot(
                grid,
                (fv[None, :] < grid[:, None]).mean(axis=1),
                color=colours[mb],
                lw=1.6,
                label=f"{mb} ({fv.size} maps)",
            )
        ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=r"$\alpha$", ylabel="expected coverage", title="TARP")
        ax.legend(frameon=False, fontsize=8)
        if profile_z:
            ax = row[3]
            edges = np.asarray(annulus_edges_Mpc, dtype=float)
            mid = 0.5 * (edges[1:] + edges[:-1])
            for mb in bins:
                if (mb, f) in profile_z:
                    value, lo, hi = profile_z[mb, f]
                    ax.plot(mid, value, color=colours[mb], lw=1.6, marker="o", ms=3, label=mb)
                    ax.fill_between(mid, lo, hi, color=colours[mb], alpha=0.2, lw=0)
            if calibrated_z_std:
                ax.axhline(calibrated_z_std, color="k", lw=0.8, ls="--", label="calibrated")
            ax.set(
                xlim=(0, edges[-1]),
                ylim=(0, None),
                xlabel="annulus of TARP's summary (Mpc)",
                ylabel="std of z",
                title="annulus means (above: samples too alike)",
            )
            ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def figure_substructure_gallery(
    panels: Sequence[dict], *, pixel_Mpc: float, axis: int = 2, zoom_Mpc: float | None = None, detail_Mpc: float = 3.0
):
    """Maps of a few mock clusters (rows): gas, DM, tSZ and X-ray (log colour scale), then a detail panel.

    Each entry of ``panels`` is a dict with ``maps`` ({field: (npix, npix) array} from
    :func:`massmaps.projection.observables.project_fields` with ``rotation=None`` along ``axis``), ``title`` and
    ``meta`` (the cluster's meta). Markers from the meta, projected on the image plane: subhalo centres
    (white circles, DM and X-ray), the merger secondary's DM centre (cyan x) and gas centre (cyan +), the
    host gas centre (red +; the map centre is the host DM centre). ``zoom_Mpc`` shows the central
    zoom_Mpc x zoom_Mpc of the four maps (None: the whole map). The fifth panel shows the DM map with gas
    contours in a ``detail_Mpc`` box about the merger secondary (about the host without one), where the
    gas-DM offset is visible.
    """
    from matplotlib.colors import LogNorm

    from ..projection.observables import image_axes

    ic, ir = image_axes(axis)
    fig, axes = plt.subplots(len(panels), 5, figsize=(16.0, 3.2 * len(panels)), squeeze=False)

    def lognorm(img):
        positive = img[img > 0]
        vmax = float(positive.max()) if positive.size else 1.0
        vmin = max(float(positive.min()) if positive.size else vmax * 1e-6, vmax * 1e-5)
        return LogNorm(vmin=vmin, vmax=vmax)

    for row, panel in zip(axes, panels):
        maps, meta = panel["maps"], panel.get("meta", {})
        comps = meta.get("components", {})
        npix = next(iter(maps.values())).shape[0]
        half = 0.5 * npix * pixel_Mpc
        extent = (-half, half, -half, half)
        subs = np.asarray(comps.get("subhalos", {}).get("centre_Mpc", []), dtype=float).reshape(-1, 3)
        merger = comps.get("merger", {})
        gas_centre = meta.get("gas_centre")

        def markers(ax, field):
            if field in ("dm", "xray") and len(subs):
                ax.scatter(subs[:, ic], subs[:, ir], s=60, facecolors="none", edgecolors="white", linewidths=0.5)
            if merger.get("merger"):
                c, g = merger["centre_Mpc"], merger["gas_centre_Mpc"]
                ax.plot(c[ic], c[ir], "x", color="cyan", ms=7, mew=1.4)
                ax.plot(g[ic], g[ir], "+", color="cyan", ms=9, mew=1.4)
            if gas_centre is not None and field in ("gas", "xray", "detail"):
                ax.plot(gas_centre[ic], gas_centre[ir], "+", color="red", ms=7, mew=1.0)
                if field == "detail":
                    ax.plot(0.0, 0.0, "x", color="red", ms=6, mew=1.0)

        for ax, (field, label, cmap) in zip(row, GALLERY_FIELDS):
            img = np.asarray(maps[field], dtype=float)
            norm = lognorm(img)
            im = ax.imshow(
                np.clip(img, norm.vmin, None),
                origin="lower",
                extent=extent,
                cmap=cmap,
                norm=norm,
                interpolation="nearest",
            )
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).set_label(label, fontsize=8)
            markers(ax, field)
            if zoom_Mpc:
                ax.set_xlim(-zoom_Mpc / 2, zoom_Mpc / 2)
                ax.set_ylim(-zoom_Mpc / 2, zoom_Mpc / 2)
        # Detail: DM with gas contours about the secondary (or the host).
        ax = row[4]
        centre = merger["centre_Mpc"] if merger.get("merger") else [0.0, 0.0, 0.0]
        x = (np.arange(npix) + 0.5) * pixel_Mpc - half
        box = (np.abs(x - centre[ic])[None, :] < detail_Mpc / 2) & (np.abs(x - centre[ir])[:, None] < detail_Mpc / 2)
        dm = np.asarray(maps["dm"], dtype=float)
        dm_box = dm[box & (dm > 0)]
        norm = LogNorm(vmin=float(dm_box.min()), vmax=float(dm_box.max())) if dm_box.size else lognorm(dm)
        ax.imshow(
            np.clip(dm, norm.vmin, None),
            origin="lower",
            extent=extent,
            cmap="magma",
            norm=norm,
            interpolation="nearest",
        )
        lg = np.log10(np.clip(np.asarray(maps["gas"], dtype=float), 1e-6, None))
        levels = np.linspace(np.percentile(lg[box], 50), lg[box].max(), 8)[:-1]
        ax.contour(x, x, lg, levels=levels, colors="cyan", linewidths=0.6)
        markers(ax, "detail")
        ax.set_xlim(centre[ic] - detail_Mpc / 2, centre[ic] + detail_Mpc / 2)
        ax.set_ylim(centre[ir] - detail_Mpc / 2, centre[ir] + detail_Mpc / 2)
        for a in row:
            a.set_xticks([])
            a.set_yticks([])
        row[0].set_ylabel(panel.get("title", ""), fontsize=9)
    for ax, (_, label, _) in zip(axes[0], GALLERY_FIELDS):
        ax.set_title(label.split("[")[0].strip(), fontsize=10)
    axes[0][4].set_title(f"DM + gas contours, {detail_Mpc:g} Mpc box", fontsize=10)
    fig.tight_layout()
    return fig
