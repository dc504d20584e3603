"""How good is the observe stage's X-ray band from the emission-weighted temperature?

The observe stage turns the projected bolometric X-ray map S and the emission-weighted temperature map
T_ew into band surface brightness as S x f_band(T_ew) and into photon counts as S x f_band(T_ew) /
<E>(T_ew) (massmaps.observe.spectra). The exact maps project each gas particle's own band emission,
eps x f_band(T_i), and photon emission, eps x f_band(T_i) / <E>(T_i). Gas at several temperatures along a
line of sight (a cool core, a merging group, the hot outskirts) makes the two differ; this script measures
by how much on mock clusters at the laptop grid, per band and redshift:

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

from massmaps.data import mock  # noqa: E402
from massmaps.observe.spectra import band_fraction, mean_photon_energy_keV  # noqa: E402
from massmaps.projection.observables import project_fields  # noqa: E402

BANDS = {"erosita 0.2-2.3 keV": (0.2, 2.3), "0.5-2 keV": (0.5, 2.0), "chandra 0.5-7 keV": (0.5, 7.0)}


def project_xray(cluster, emissivity, grid) -> tuple[np.ndarray, np.ndarray]:
    """(S, T_ew) of ``cluster`` with its gas emissivity replaced by ``emissivity``."""
    gas = dataclasses.replace(cluster.gas, xray_emissivity=emissivity)
    maps = project_fields(dataclasses.replace(cluster, gas=gas), None, 2, fields=("xray", "xray_kT"), **grid)
    return maps["xray"], maps["xray_kT"]


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
    rows = []
    for m in args.masses:
        for seed in args.seeds:
            cl = mock.make_cluster(halo_row(m, s=0.6, q=0.8, seed=seed))
            eps, T = cl.gas.xray_emissivity, cl.gas.temperature_keV
            S, T_ew = project_xray(cl, eps, grid)
            for z in args.redshifts:
                for band_name, band in BANDS.items():
                    f_i = band_fraction(T, band, z)
                    exact_band, _ = project_xray(cl, eps * f_i, grid)
                    exact_photons, _ = project_xray(cl, eps * f_i / mean_photon_energy_keV(T, band, z), grid)
                    f_ew = band_fraction(T_ew, band, z)
                    approx_band = S * f_ew
                    approx_photons = approx_band / mean_photon_energy_keV(T_ew, band, z)
                    eb, ep = errors(approx_band, exact_band), errors(approx_photons, exact_photons)
                    rows.append((m, seed, z, band_name, eb, ep))
                    print(
                        f"M {m:.1e} seed {seed} z {z:.1f} {band_name:20s} band: total {eb['total']:+.2%}, "
                        f"mean |err| {eb['mean_abs']:.2%}, max {eb['max_abs']:.2%}; photons: total "
                        f"{ep['total']:+.2%}, mean |err| {ep['mean_abs']:.2%}, max {ep['max_abs']:.2%}",
                        flush=True,
                    )
    for band_name in BANDS:
        sel = [r for r in rows if r[3] == band_name]
        worst = {k: max(abs(r[4][k]) for r in sel) for k in ("total", "mean_abs", "max_abs")}
        worst_p = {k: max(abs(r[5][k]) for r in sel) for k in ("total", "mean_abs", "max_abs")}
        print(
            f"{band_name}: over {len(sel)} cases the largest |total| {worst['total']:.2%}, flux-weighted mean "
            f"|err| {worst['mean_abs']:.2%}, pixel max {worst['max_abs']:.2%} (band); photons "
            f"{worst_p['total']:.2%}, {worst_p['mean_abs']:.2%}, {worst_p['max_abs']:.2%}"
        )


if __name__ == "__main__":
    main()
