"""How good are the observe stage's X-ray band maps, against each particle's own band emission?

The observe stage turns the projected X-ray spectrum, the bolometric map split over 11 temperature nodes
S_k (massmaps.projection.observables), into band surface brightness as sum_k S_k f_band(T_k) and into photon
counts as sum_k S_k f_band(T_k) / <E>(T_k) (massmaps.observe). Before the spectrum it used one map and the
emission-weighted temperature T_ew: S x f_band(T_ew) and S x f_band(T_ew) / <E>(T_ew). The exact maps
project each gas particle's own band emission, eps x f_band(T_i), and photon emission,
eps x f_band(T_i) / <E>(T_i). This script measures both methods on mock clusters at the laptop grid, per band
and redshift:

- the total band flux (and photon count) of the map, approximate / exact - 1;
- the flux-weighted mean of |approximate / exact - 1| over pixels, and its largest value over the pixels
  that hold at least 1% of the peak.

    python benchmarks/band_approximation.py
    python benchmarks/band_approximation.py --masses 2e14 5e14 9e14 --seeds 1 2 3 --npix 32 --pixel-mpc 0.4
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from _halos import halo_row  # noqa: E402

from massmaps.constants import KEV_ERG  # noqa: E402
from massmaps.data import mock  # noqa: E402
from massmaps.observe.observe import SR_PER_ARCMIN2, band_photon_brightness, band_surface_brightness  # noqa: E402
from massmaps.observe.spectra import band_fraction, mean_photon_energy_keV  # noqa: E402
from massmaps.projection.observables import XRAY_NODE_FIELDS, XRAY_NODES_KEV, project_fields  # noqa: E402

BANDS = {"erosita 0.2-2.3 keV": (0.2, 2.3), "0.5-2 keV": (0.5, 2.0), "chandra 0.5-7 keV": (0.5, 7.0)}


def project_xray(cluster, emissivity, grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, T_ew, node maps S_k) of ``cluster`` with its gas emissivity replaced by ``emissivity``."""
    gas = dataclasses.replace(cluster.gas, xray_emissivity=emissivity)
    fields = ("xray", "xray_kT", "xray_spectrum")
    maps = project_fields(dataclasses.replace(cluster, gas=gas), None, 2, fields=fields, **grid)
    return maps["xray"], maps["xray_kT"], np.stack([maps[f] for f in XRAY_NODE_FIELDS])


def errors(approx: np.ndarray, exact: np.ndarray) -> dict:
    """Total, flux-weighted mean and largest (pixels >= 1% of the peak) relative errors."""
    rel = np.divide(approx - exact, exact, out=np.zeros_like(exact), where=exact > 0)
    bright = exact >= 0.01 * exact.max()
    return {
        "total": approx.sum() / exact.sum() - 1,
        "mean_abs": float((np.abs(rel) * exact).sum() / exact.sum()),
        "max_abs": float(np.abs(rel[bright]).max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--masses", type=float, nargs="+", default=[2e14, 4e14, 8e14])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--redshifts", type=float, nargs="+", default=[0.1, 0.3])
    ap.add_argument("--npix", type=int, default=32)
    ap.add_argument("--pixel-mpc", type=float, default=0.4)
    args = ap.parse_args()
    grid = {"npix": args.npix, "pixel_Mpc": args.pixel_mpc}
    nodes = np.array(XRAY_NODES_KEV)
    rows = []
    for m in args.masses:
        for seed in args.seeds:
            cl = mock.make_cluster(halo_row(m, s=0.6, q=0.8, seed=seed))
            eps, T = cl.gas.xray_emissivity, cl.gas.temperature_keV
            S, T_ew, S_k = project_xray(cl, eps, grid)
            for z in args.redshifts:
                for band_name, band in BANDS.items():
                    f_i = band_fraction(T, band, z)
                    # the common factor 4 pi (1 + z)^4 / sr-per-arcmin^2 of the observed maps cancels in ratios
                    exact = {
                        "band": project_xray(cl, eps * f_i, grid)[0],
                        "photons": project_xray(cl, eps * f_i / mean_photon_energy_keV(T, band, z), grid)[0],
                    }
                    scale = 4 * np.pi * (1 + z) ** 4
                    for method, (src, kT) in {"T_ew": (S, T_ew), "spectrum": (S_k, nodes)}.items():
                        approx = {
                            "band": band_surface_brightness(src, kT, band, z),
                            "photons": band_photon_brightness(src, kT, band, z),
                        }
                        for what in ("band", "photons"):
                            ref = exact[what] / scale * (1.0 if what == "band" else 1.0 / KEV_ERG)
                            e = errors(approx[what] / SR_PER_ARCMIN2, ref)
                            rows.append((m, seed, z, band_name, method, what, e))
                            print(
                                f"M {m:.1e} seed {seed} z {z:.1f} {band_name:20s} {method:8s} {what:7s}: total "
                                f"{e['total']:+.2%}, mean |err| {e['mean_abs']:.2%}, max {e['max_abs']:.2%}",
                                flush=True,
                            )
    print("\nlargest over the masses, seeds and redshifts:")
    for band_name in BANDS:
        for method in ("T_ew", "spectrum"):
            parts = []
            for what in ("band", "photons"):
                sel = [r[6] for r in rows if r[3] == band_name and r[4] == method and r[5] == what]
                worst = {k: max(abs(e[k]) for e in sel) for k in ("total", "mean_abs", "max_abs")}
                parts.append(
                    f"{what}: |total| {worst['total']:.2%}, mean |err| {worst['mean_abs']:.2%}, "
                    f"pixel max {worst['max_abs']:.2%}"
                )
            print(f"{band_name:20s} {method:8s} over {len(sel)} cases; " + "; ".join(parts))


if __name__ == "__main__":
    main()
