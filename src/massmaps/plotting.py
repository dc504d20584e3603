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
