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
    for path in paths:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
        # Fixed metadata keeps PDF/PNG bytes identical between runs.
        metadata = {"CreationDate": None} if path.suffix == ".pdf" else {"Software": None}
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata=metadata)
        os.replace(tmp, path)
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
    ax.hist(catalog["log10_M200m"], bins=edges, histtype="stepfilled", alpha=0.55, color=HALO_COLOUR,
            label=f"clusters ({len(catalog):,})")
    ax.hist(plan["log10_M200m"], bins=edges, histtype="step", lw=2.0, color=IMAGE_COLOUR,
            label=f"images ({len(plan):,})")
    if expected_per_bin is not None:
        centres, counts = expected_per_bin
        ax.plot(centres, counts, "--", color="0.25", lw=1.2, label="Tinker et al. 2008 expectation")
    if target_per_bin:
        ax.axhline(target_per_bin, color=IMAGE_COLOUR, ls=":", lw=1, label=f"target {target_per_bin:,} per {bin_dex:g} dex")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5)
    ax.set_xlabel(r"$\log_{10}\,(M_{200m}/M_\odot)$")
    ax.set_ylabel(f"number per {bin_dex:g} dex")
    ax.legend(frameon=False, fontsize=9)
    ax.set_title("Halo mass function and sightline plan", fontsize=10)
    return fig


GALLERY_FIELDS = (
    ("gas", r"$\Sigma_{\rm gas}/\bar\Sigma_{\rm gas}$", "viridis"),
    ("dm", r"$\Sigma_{\rm DM}/\bar\Sigma_{\rm DM}$", "magma"),
    ("tsz", r"tSZ [$\mu$K]", "cividis"),
    ("xray", r"$S_X$ [erg s$^{-1}$ cm$^{-2}$]", "inferno"),
)


def figure_substructure_gallery(
    panels: Sequence[dict], *, pixel_Mpc: float, axis: int = 2, zoom_Mpc: float | None = None, detail_Mpc: float = 3.0
):
    """Maps of a few mock clusters (rows): gas, DM, tSZ and X-ray (log colour scale), then a detail panel.

    Each entry of ``panels`` is a dict with ``maps`` ({field: (npix, npix) array} from
    :func:`massmaps.observables.project_fields` with ``rotation=None`` along ``axis``), ``title`` and
    ``meta`` (the cluster's meta). Markers from the meta, projected on the image plane: subhalo centres
    (white circles, DM and X-ray), the merger secondary's DM centre (cyan x) and gas centre (cyan +), the
    host gas centre (red +; the map centre is the host DM centre). ``zoom_Mpc`` shows the central
    zoom_Mpc x zoom_Mpc of the four maps (None: the whole map). The fifth panel shows the DM map with gas
    contours in a ``detail_Mpc`` box about the merger secondary (about the host without one), where the
    gas-DM offset is visible.
    """
    from matplotlib.colors import LogNorm

    from .observables import image_axes

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
            im = ax.imshow(np.clip(img, norm.vmin, None), origin="lower", extent=extent, cmap=cmap, norm=norm,
                           interpolation="nearest")
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
        ax.imshow(np.clip(dm, norm.vmin, None), origin="lower", extent=extent, cmap="magma", norm=norm,
                  interpolation="nearest")
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
