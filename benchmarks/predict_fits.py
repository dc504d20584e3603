"""``massmaps predict`` on FITS images made outside the pipeline, against the pipeline's own posterior.

A run trained on observed inputs (a run with ``observe:`` presets, or a variant of the observing ablation)
holds, per test sightline, the observed tSZ and X-ray maps on the model's grid, the true gas and DM maps,
and the pipeline's posterior samples. For ``--maps`` test clusters in the evaluation range (one view each,
evenly in log mass) this script writes what a survey would hand a user, with astropy alone:

- the tSZ map (in the model's units) on a plate-carree (CAR) grid of 0.5 arcmin pixels (ACT's) whose
  equator is Dec 0 while the cluster sits at a seeded Dec in [-60, 60] and RA in [0, 360), each pixel the
  value of the model pixel under its centre, with a masked disc (NaN) of a point source 2 Mpc north;
- the X-ray counts as an X-ray image comes: integer counts on a TAN grid of 4 arcsec pixels turned by 20
  degrees, each model pixel's counts spread over the image pixels in it, then thinned by an exposure that
  runs from 0.7 to 1 times the model's across the image, with that exposure map;

and runs the console command ``massmaps predict`` on them with the pipeline's sampler, seed and sightline
id, and compares:

- the total mass in the field of each posterior mean with the truth's, for ``predict`` and the pipeline;
- the two posterior means, pixel by pixel, in units of the pipeline's posterior std (median and largest);
- the z std of the truth under each posterior (pixels pooled over the maps);
- and, for the first map, the round trip: the same maps on the model's own TAN grid give the pipeline's
  samples (largest absolute difference).

The images' pixels do not nest in the model's (the grids differ in projection, orientation and size), and
the thinned counts are noisier where the exposure is short, so the inputs ``predict`` gets differ from the
pipeline's: its posterior is not expected to equal the pipeline's, only to agree within its spread.

    python benchmarks/predict_fits.py --variant-dir results/default/ablation/observing/all_z0.3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from reproject import reproject_interp

from massmaps import store
from massmaps.predict import grid_wcs, model_record


def car_grid(ra: float, dec: float, step: float, n_field: int) -> tuple[WCS, tuple[int, int]]:
    """A CAR grid of ``step`` degrees with its equator at Dec 0 and its reference meridian 0.3 deg east of
    the cluster, three times the model's field (``n_field`` steps on a side) around (ra, dec)."""
    n_dec = 3 * n_field + 8
    n_ra = int(np.ceil(3 * n_field / np.cos(np.radians(dec)))) + 8
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---CAR", "DEC--CAR"]
    w.wcs.crval = [ra + 0.3, 0.0]
    w.wcs.cdelt = [-step, step]
    w.wcs.crpix = [(n_ra + 1) / 2 - 0.3 / step, (n_dec + 1) / 2 - dec / step]
    w.wcs.cunit = ["deg", "deg"]
    return w, (n_dec, n_ra)


def xray_image(counts, tan: WCS, ra: float, dec: float, pixel_deg: float, npix: int, record, rng):
    """A counts image as an X-ray telescope's: integer counts on a TAN grid of ``pixel_deg`` pixels turned by
    20 degrees, its reference 1 arcmin east of the cluster; each model pixel's counts spread over the image
    pixels whose centres fall in it, then thinned by an exposure that runs from 0.7 to 1 times the model's
    across the image. Returns (WCS, counts, exposure map in s)."""
    side = int(np.ceil(1.6 * npix * abs(tan.wcs.cdelt[0]) / pixel_deg))
    w = WCS(naxis=2)
    w.wcs.ctype, w.wcs.cunit = ["RA---TAN", "DEC--TAN"], ["deg", "deg"]
    w.wcs.crval = [ra + 1 / 60 / np.cos(np.radians(dec)), dec]
    w.wcs.crpix = [(side + 1) / 2 - 1 / 60 / pixel_deg, (side + 1) / 2]
    w.wcs.cdelt = [-pixel_deg, pixel_deg]
    turn = np.radians(20.0)
    w.wcs.pc = [[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]
    yy, xx = np.mgrid[:side, :side]
    mx, my = tan.world_to_pixel_values(*w.pixel_to_world_values(xx, yy))
    ix, iy = np.round(mx).astype(int), np.round(my).astype(int)
    inside = (ix >= 0) & (ix < npix) & (iy >= 0) & (iy < npix)
    owner = np.where(inside, iy * npix + ix, -1).ravel()
    image = np.zeros(side * side)
    members = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[members], np.arange(npix * npix + 1))
    for p_ in range(npix * npix):
        pixels = members[bounds[p_] : bounds[p_ + 1]]
        n = int(round(counts.ravel()[p_]))
        if n and len(pixels):
            np.add.at(image, pixels[rng.integers(0, len(pixels), n)], 1.0)
    image = image.reshape(side, side)
    g = np.broadcast_to(np.linspace(0.7, 1.0, side), (side, side))
    return w, rng.binomial(image.astype(np.int64), g).astype(np.float64), float(record["observe_exposure_s"]) * g


def padded(image: np.ndarray, tan: WCS, pad: int = 3) -> tuple[np.ndarray, WCS]:
    """The model-grid image padded by its edge values, on the same TAN grid extended by ``pad`` pixels."""
    w = tan.deepcopy()
    w.wcs.crpix = [c + pad for c in tan.wcs.crpix]
    return np.pad(image, pad, mode="edge"), w


def write(path: Path, data: np.ndarray, w: WCS, bunit: str) -> Path:
    header = w.to_header()
    header["BUNIT"] = bunit
    fits.PrimaryHDU(np.asarray(data, np.float32), header=header).writeto(path, overwrite=True)
    return path


def run_predict(model: Path, tsz: Path, xray: Path, out: Path, *, ra, dec, z, sid, attrs, n, exposure=None):
    cmd = [sys.executable, "-m", "massmaps.predict", "predict", "--model", str(model), "--tsz", str(tsz)]
    cmd += ["--xray", str(xray), "--ra", repr(ra), "--dec", repr(dec), "--z", repr(z), "--out", str(out)]
    cmd += ["--n-samples", str(n), "--sampler", attrs["sampler"], "--steps", str(attrs["steps"])]
    cmd += ["--seed", str(attrs["seed"]), "--sightline-id", str(sid)]
    if exposure is not None:
        cmd += ["--exposure", str(exposure)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"massmaps predict failed:\n{done.stderr[-3000:]}")
    with fits.open(out) as hdul:
        return hdul["SAMPLES"].data.astype(np.float64), dict(hdul[0].header)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--variant-dir", required=True, help="a run's results folder with observe presets, or an ablation variant's"
    )
    ap.add_argument("--maps", type=int, default=12, help="test clusters (one view each, evenly in log mass)")
    ap.add_argument("--seed", type=int, default=0, help="the sky positions")
    ap.add_argument("--out", help="where the FITS files go (default: <variant-dir>/predict_fits)")
    ap.add_argument("--tsz-arcmin", type=float, default=0.5, help="the CAR tSZ map's pixel (ACT's: 0.5)")
    ap.add_argument("--xray-arcsec", type=float, default=4.0, help="the X-ray counts image's pixel (4 arcsec)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*consolidated.*")
    vdir = Path(args.variant_dir)
    out_dir = Path(args.out) if args.out else vdir / "predict_fits"
    out_dir.mkdir(parents=True, exist_ok=True)
    record = model_record(vdir / "model")
    if record["inputs"]["xray"] != "counts":
        raise SystemExit(f"{vdir / 'model'}: the model's X-ray input is {record['inputs']['xray']!r}, not counts")
    if (vdir / "observed" / "maps.zarr").is_dir():  # a run's results folder
        maps, samples = (store.open_store(vdir / p) for p in ("observed/maps.zarr", "samples/test.zarr"))
    else:  # a variant of the observing ablation
        maps, samples = (store.open_store(vdir / p) for p in ("maps.zarr", "samples.zarr"))
    attrs = {k: samples.attrs[k] for k in ("sampler", "steps", "seed")}
    n_samples, npix = samples.sizes["sample"], int(record["npix"])
    order = np.argsort(samples["log10_M200m"].values, kind="stable")
    _, first = np.unique(samples["halo_id"].values[order], return_index=True)
    one_view = order[np.sort(first)]  # one view per cluster, in log mass order
    pick = one_view[np.unique(np.linspace(0, len(one_view) - 1, min(args.maps, len(one_view))).round().astype(int))]
    rng = np.random.default_rng(args.seed)
    sky = [(float(rng.uniform(0, 360)), float(rng.uniform(-60, 60))) for _ in pick]
    rows, z_pipe, z_pred = [], [], []
    print(f"{len(pick)} maps, {n_samples} samples each, {attrs}; FITS in {out_dir}", flush=True)
    for j, (i, (ra, dec)) in enumerate(zip(pick, sky)):
        sid = int(samples["sightline_id"].values[i])
        one = maps.isel(sightline=int(np.flatnonzero(maps["sightline_id"].values == sid)[0]))
        z = float(one["redshift"])
        tan = grid_wcs(record, ra, dec, z)
        tsz, counts = (one["maps"].sel(field=f).values.astype(np.float64) for f in ("tsz", "xray"))
        truth = one["maps"].sel(field=["gas", "dm"]).values.astype(np.float64)
        pipe = samples["samples"].isel(sightline=int(i)).values.astype(np.float64)  # (n, 2, y, x)
        if j == 0:  # the round trip on the model's own grid
            a = write(out_dir / f"tan_tsz_{sid}.fits", tsz, tan, record["inputs"]["tsz"])
            b = write(out_dir / f"tan_xray_{sid}.fits", counts, tan, "counts")
            got, _ = run_predict(vdir / "model", a, b, out_dir / f"tan_post_{sid}.fits", ra=ra, dec=dec, z=z,
                                 sid=sid, attrs=attrs, n=n_samples)  # fmt: skip
            round_trip = float(np.abs(got - pipe).max())
        step = abs(tan.wcs.cdelt[0])  # the model pixel, degrees
        car, shape = car_grid(ra, dec, args.tsz_arcmin / 60, int(np.ceil(npix * step / (args.tsz_arcmin / 60))))
        t_car, _ = reproject_interp(padded(tsz, tan), car, shape_out=shape, order="nearest-neighbor")
        t_car = np.nan_to_num(t_car, nan=0.0)  # beyond the padded field: far outside the model's grid
        x0, y0 = car.world_to_pixel_values(ra, dec)  # the cluster's centre on the CAR grid
        north = 2.0 / float(record["pixel_Mpc"]) * step / (args.tsz_arcmin / 60)  # 2 Mpc, in CAR pixels
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        t_car[(yy - y0 - north) ** 2 + (xx - x0) ** 2 <= 2.0**2] = np.nan  # a masked point source
        xw, c_fine, exposure = xray_image(counts, tan, ra, dec, args.xray_arcsec / 3600, npix, record, rng)
        a = write(out_dir / f"car_tsz_{sid}.fits", t_car, car, record["inputs"]["tsz"])
        b = write(out_dir / f"tan_counts_{sid}.fits", c_fine, xw, "counts")
        e = write(out_dir / f"tan_exposure_{sid}.fits", exposure, xw, "s")
        t0 = time.perf_counter()
        got, header = run_predict(vdir / "model", a, b, out_dir / f"car_post_{sid}.fits", ra=ra, dec=dec, z=z,
                                  sid=sid, attrs=attrs, n=n_samples, exposure=e)  # fmt: skip
        seconds = time.perf_counter() - t0
        m_pred, m_pipe, s_pipe = got.mean(0), pipe.mean(0), pipe.std(0, ddof=1)
        diff = np.abs(m_pred - m_pipe) / s_pipe
        mass = [(m.sum(axis=(-2, -1)) / truth.sum(axis=(-2, -1)) - 1) * 100 for m in (m_pred, m_pipe)]
        z_pipe.append((truth - m_pipe) / s_pipe)
        z_pred.append((truth - m_pred) / got.std(0, ddof=1))
        rows.append(
            (float(one["log10_M200m"]), z, ra, dec, header["NMASKSZ"], mass, np.median(diff, axis=(-2, -1)),
             diff.max(axis=(-2, -1)), seconds)
        )  # fmt: skip
        print(f"  {j + 1}/{len(pick)} sightline {sid}: {seconds:.1f} s", flush=True)
    print(f"\nround trip on the model's TAN grid: largest |predict - pipeline| over the samples {round_trip:.2e}\n")
    print("| log10 M200m | z | RA, Dec | masked tSZ pixels | mass error gas: predict / pipeline | mass error DM: "
          "predict / pipeline | mean difference / pipeline std, gas: median / max | DM: median / max |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for lm, z, ra, dec, nmask, mass, med, mx, _ in rows:
        print(
            f"| {lm:.2f} | {z:.2f} | {ra:.1f}, {dec:+.1f} | {nmask} | {mass[0][0]:+.1f}% / {mass[1][0]:+.1f}% | "
            f"{mass[0][1]:+.1f}% / {mass[1][1]:+.1f}% | {med[0]:.2f} / {mx[0]:.2f} | {med[1]:.2f} / {mx[1]:.2f} |"
        )
    zp, zq = np.stack(z_pipe), np.stack(z_pred)
    print(
        f"\nz std of the truth, gas / DM: pipeline {zp[:, 0].std():.3f} / {zp[:, 1].std():.3f}, "
        f"predict {zq[:, 0].std():.3f} / {zq[:, 1].std():.3f}"
    )
    gas_err = np.array([[r[5][0][0], r[5][1][0]] for r in rows])
    dm_err = np.array([[r[5][0][1], r[5][1][1]] for r in rows])
    print(
        f"median total-mass error in the field, predict / pipeline: gas {np.median(gas_err[:, 0]):+.2f}% / "
        f"{np.median(gas_err[:, 1]):+.2f}%, DM {np.median(dm_err[:, 0]):+.2f}% / {np.median(dm_err[:, 1]):+.2f}%; "
        f"median seconds per predict call {np.median([r[-1] for r in rows]):.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
