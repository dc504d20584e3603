"""``massmaps predict``: posterior gas and DM mass maps of one cluster from tSZ and X-ray FITS images.

The images (any celestial WCS astropy reads: TAN, CAR, ...) are reprojected onto the model's grid, a
gnomonic (TAN) grid of the model's npix x npix pixels of pixel_Mpc physical Mpc centred on the cluster's
RA, Dec, with the pixel's angle from the angular-diameter distance at the cluster's redshift (the model's
cosmology); RA runs to the left (east), Dec up. Each model pixel takes the mean of the image over its
area (:func:`area_mean`), what a detector with the model's pixels would record: an image of finer pixels
is averaged, where an interpolation would pick the few pixels nearest the centre and keep their
single-pixel noise. Counts are turned into counts per unit solid angle first (each pixel's own, from its
corners: a CAR pixel far from the projection's equator is smaller than its reference pixel), averaged so,
and multiplied by the solid angle of each model pixel, which conserves them, and, with an exposure map,
scaled to the exposure the model was trained with. Masked (NaN) pixels inside the grid take the value of
the nearest unmasked pixel; more than ``max_masked`` of them is an error. The inputs are then normalised
as in training, N posterior samples drawn with the pipeline's sampler, and written as FITS: the posterior
mean, std and samples as image extensions with the grid's WCS, and a header naming the model, its hashes,
the instrument and the units.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .store import INPUTS, TARGETS

__all__ = ["PredictError", "area_mean", "grid_wcs", "load_input", "main", "pixel_solid_angles", "predict"]

#: Spellings of BUNIT accepted for each unit the model may expect.
UNIT_ALIASES = {
    "microK": {"microk", "uk", "mk_cmb", "uk_cmb", "muk", "microkelvin"},
    "1": {"1", "y", "compton-y", "compton_y", "comptony", ""},
    "counts": {"counts", "count", "ct", "cts"},
    "erg s-1 cm-2 arcmin-2": {"erg s-1 cm-2 arcmin-2", "erg/s/cm2/arcmin2", "erg/(s cm2 arcmin2)"},
    "erg s-1 cm-2": {"erg s-1 cm-2", "erg/s/cm2", "erg/(s cm2)"},
}


class PredictError(ValueError):
    """Bad input to ``predict``; the message names the file and the keyword."""


def _unit_of(bunit: str) -> str | None:
    key = bunit.strip().lower()
    return next((unit for unit, names in UNIT_ALIASES.items() if key in names or key == unit.lower()), None)


def model_record(model_dir: str | os.PathLike) -> dict:
    """The data record of a model directory (grid, cosmology, input units, observe block, hashes)."""
    from .learning.score import META_FILE

    meta_path = Path(model_dir) / META_FILE
    if not meta_path.is_file():
        raise PredictError(f"{model_dir}: not a massmaps model directory (no {META_FILE})")
    record = json.loads(meta_path.read_text()).get("data")
    if not record:
        raise PredictError(
            f"{meta_path}: no 'data' record (grid, cosmology, input units); the model was trained by an older "
            "massmaps: train it again"
        )
    return record


def pixel_deg(record: Mapping, redshift: float) -> float:
    from .observe.observe import angular_pixel_arcmin

    return angular_pixel_arcmin(float(record["pixel_Mpc"]), redshift, record["cosmology"]) / 60.0


def grid_wcs(record: Mapping, ra: float, dec: float, redshift: float):
    """The model's grid on the sky: TAN, centred on (ra, dec) between the four central pixels."""
    from astropy.wcs import WCS

    n = int(record["npix"])
    step = pixel_deg(record, redshift)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [float(ra), float(dec)]
    w.wcs.crpix = [n / 2 + 0.5, n / 2 + 0.5]
    w.wcs.cdelt = [-step, step]
    w.wcs.cunit = ["deg", "deg"]
    return w


def _read_image(path: Path, what: str, target_wcs=None, n: int = 0):
    """(header, data, celestial WCS) of the first image HDU of ``path``; with ``target_wcs`` (the model's n x n
    grid) only the cut-out around that grid is read (memory-mapped), so that a survey's full map costs no
    more than a cut-out of it."""
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    if not path.is_file():
        raise PredictError(f"{path}: {what} FITS file not found")
    try:
        with fits.open(path) as hdul:
            hdu = next((h for h in hdul if h.is_image and h.header.get("NAXIS", 0) >= 2), None)
            if hdu is None:
                raise PredictError(f"{path}: no image HDU ({what})")
            header = hdu.header.copy()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                wcs = WCS(header).celestial
            if not wcs.has_celestial or not header.get("CTYPE1"):
                raise PredictError(
                    f"{path}: no celestial WCS (keywords CTYPE1/CTYPE2, CRVAL, CRPIX, CDELT or CD) ({what})"
                )
            data = hdu.data
            while data.ndim > 2 and data.shape[0] == 1:  # degenerate leading axes (NAXIS3 = 1, ...)
                data = data[0]
            if data.ndim != 2:
                raise PredictError(f"{path}: expected a 2-D image ({what}), got shape {hdu.data.shape}")
            window = _cutout(wcs, data.shape, target_wcs, n) if target_wcs is not None else None
            if window is not None:
                data, wcs = data[window], wcs.slice(window)
            data = np.array(data, dtype=np.float64)
    except OSError as err:
        raise PredictError(f"{path}: not a readable FITS file ({err})") from None
    return header, data, wcs


def _cutout(wcs, shape: tuple[int, int], target_wcs, n: int, margin: int = 3) -> tuple[slice, slice] | None:
    """The (y, x) slices of an image on ``wcs`` that hold the model's n x n grid on ``target_wcs`` with
    ``margin`` pixels to spare, or None where the grid does not map into the image's pixels (then the whole
    image is read, and the coverage check names what is missing)."""
    yy, xx = np.mgrid[-0.5:n:1.0, -0.5:n:1.0]
    with np.errstate(invalid="ignore"):
        px, py = wcs.world_to_pixel_values(*target_wcs.pixel_to_world_values(xx, yy))
    if not (np.isfinite(px).all() and np.isfinite(py).all()):
        return None
    x0, x1 = max(int(np.floor(px.min())) - margin, 0), min(int(np.ceil(px.max())) + margin + 1, shape[1])
    y0, y1 = max(int(np.floor(py.min())) - margin, 0), min(int(np.ceil(py.max())) + margin + 1, shape[0])
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def load_input(
    path: str | os.PathLike,
    field: str,
    record: Mapping,
    target_wcs,
    *,
    exposure: str | os.PathLike | None = None,
    max_masked: float = 0.05,
) -> tuple[np.ndarray, int]:
    """One input map on the model's grid, in the units the model expects; returns (map, masked pixels)."""
    from scipy import ndimage

    path = Path(path)
    n = int(record["npix"])
    header, data, wcs = _read_image(path, field, target_wcs, n)
    expected = record["inputs"][field]
    if "BUNIT" not in header:
        raise PredictError(f"{path}: no BUNIT keyword; the model expects {field} in {expected!r}")
    unit = _unit_of(str(header["BUNIT"]))
    if unit != expected:
        raise PredictError(f"{path}: BUNIT = {header['BUNIT']!r}, but the model expects {field} in {expected!r}")
    masked = ~np.isfinite(data)
    if masked.all():
        raise PredictError(f"{path}: every pixel around the cluster is masked (NaN)")
    if masked.any():  # nearest unmasked pixel, on the image's own grid, before any interpolation
        idx = ndimage.distance_transform_edt(masked, return_distances=False, return_indices=True)
        data = data[tuple(idx)]
    if unit == "counts":
        data = data / pixel_solid_angles(wcs, data.shape)
    # the mask goes through the same sampling as the image: model pixels that draw on a masked image pixel
    grids, footprint = area_mean(np.stack([data, masked.astype(np.float64)]), wcs, target_wcs, n)
    data_grid, touched = grids
    if np.any(footprint < 1):
        outside = int(np.sum(footprint < 1))
        raise PredictError(
            f"{path}: the image does not cover the model's field ({n} x {n} pixels of {record['pixel_Mpc']} Mpc "
            f"around the cluster); {outside} pixels fall outside it"
        )
    n_masked = int(np.sum(touched > 0))
    if n_masked > max_masked * n * n:
        raise PredictError(f"{path}: {n_masked} of {n * n} pixels are masked (NaN), more than max_masked {max_masked}")
    if unit == "counts":
        if exposure is not None:
            _, e_data, e_wcs = _read_image(Path(exposure), "exposure map", target_wcs, n)
            e_grid, e_foot = area_mean(e_data, e_wcs, target_wcs, n)
            if np.any(e_foot < 1) or not np.all(np.isfinite(e_grid) & (e_grid > 0)):
                raise PredictError(f"{exposure}: the exposure map must cover the model's field with values > 0 s")
            data_grid = data_grid * float(record["observe_exposure_s"]) / e_grid
        data_grid = data_grid * pixel_solid_angles(target_wcs, (n, n))
    return data_grid, n_masked


def area_mean(data: np.ndarray, wcs, target_wcs, n: int, max_points: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """Each model pixel's mean of the image over its area (..., n, n), and the fraction of its area the image
    covers (n, n); ``data`` (..., ny, nx) may stack several images on the same grid, sampled once.

    The image's value (its own pixel's: no interpolation) is read at k x k points spread evenly over each
    model pixel and averaged, k = 4 x (model pixel / image pixel) within 4 <= k <= 64: about 16 points in
    each image pixel, fewer where the image's pixels are more than 16 times finer (4 arcsec against 1.5
    arcmin: about 8). An image of finer pixels is averaged, as a detector with the model's pixels would
    record it; an interpolation at the model pixel's centre would keep the noise of the few image pixels
    next to it. The same image on the model's grid, or on a grid whose pixel edges fall on the model's,
    comes back exactly (``reproject_exact``'s spherical polygons lose a quarter of a pixel's overlap where
    edges coincide). The points are read a band of model rows at a time, at most ``max_points`` at once
    (a 128-pixel model on a Chandra image takes 8192 x 8192 points: 9 GB in one pass, 1.8 GB in bands)."""
    from reproject import reproject_interp

    side_in = np.sqrt(np.median(pixel_solid_angles(wcs, data.shape[-2:])))
    side_out = np.sqrt(np.mean(pixel_solid_angles(target_wcs, (n, n))))
    k = int(np.clip(np.ceil(4 * side_out / side_in), 4, 64))
    rows = max(1, min(n, max_points // (k * k * n)))
    fine = target_wcs.deepcopy()  # k times finer; its reference pixel moves with each band
    fine.wcs.cdelt = np.asarray(target_wcs.wcs.cdelt) / k
    totals, covers = [], []
    for row in range(0, n, rows):
        band = min(rows, n - row)
        fine.wcs.crpix = (np.asarray(target_wcs.wcs.crpix) - 0.5 - [0, row]) * k + 0.5
        values, footprint = reproject_interp((data, wcs), fine, shape_out=(band * k, n * k), order="nearest-neighbor")
        values = np.where(footprint > 0, np.nan_to_num(values), 0.0)
        blocks = (*values.shape[:-2], band, k, n, k)
        covers.append(footprint.reshape(blocks).mean(axis=(-3, -1)).reshape(-1, band, n)[0])
        totals.append(values.reshape(blocks).sum(axis=(-3, -1)))
    total, cover = np.concatenate(totals, axis=-2), np.concatenate(covers, axis=0)
    return np.divide(total, cover * k * k, out=np.zeros_like(total), where=cover > 0), cover


def pixel_solid_angles(wcs, shape: tuple[int, int]) -> np.ndarray:
    """Solid angle (sr) of each pixel of an image of ``shape`` (ny, nx) on ``wcs``, from its four corners on
    the unit sphere (half the cross product of the diagonals). The reference point's pixel area is not
    enough for counts: a CAR pixel at declination d covers cos(d) of the area of one on the projection's
    equator, so counts per pixel of a plate-carree map far from its equator would be read too faint."""
    ny, nx = shape
    yy, xx = np.mgrid[-0.5:ny:1.0, -0.5:nx:1.0]  # the (ny + 1) x (nx + 1) pixel corners
    lon, lat = (np.radians(a) for a in wcs.pixel_to_world_values(xx, yy))
    v = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)
    diagonal_1, diagonal_2 = v[1:, 1:] - v[:-1, :-1], v[1:, :-1] - v[:-1, 1:]
    return 0.5 * np.linalg.norm(np.cross(diagonal_1, diagonal_2), axis=-1)


def predict(
    model_dir: str | os.PathLike,
    tsz: str | os.PathLike,
    xray: str | os.PathLike,
    *,
    ra: float,
    dec: float,
    redshift: float,
    out: str | os.PathLike,
    n_samples: int = 50,
    sampler: str = "dpmpp_2m_sde",
    steps: int | None = None,
    sampler_kwargs: Mapping | None = None,
    seed: int = 0,
    sightline_id: int = 0,
    exposure: str | os.PathLike | None = None,
    max_masked: float = 0.05,
    device: str = "auto",
    config_files: Sequence[str] = (),
    quicklook: bool = True,
    precision: str = "float32",
) -> Path:
    """Write the posterior FITS file ``out`` (and ``out`` with .png, a quick look); returns ``out``."""
    from .learning import samplers, score

    if not redshift > 0:
        raise PredictError(f"redshift must be > 0, got {redshift}")
    record = model_record(model_dir)
    if config_files:
        _check_config(model_dir, record, config_files)
    target = grid_wcs(record, ra, dec, redshift)
    inputs, masked = [], {}
    for field, path in zip(INPUTS, (tsz, xray)):
        grid, masked[field] = load_input(
            path, field, record, target, exposure=exposure if field == "xray" else None, max_masked=max_masked
        )
        inputs.append(grid)
    trained = score.load_model(model_dir, device=device)
    norm = trained.normaliser
    cond = norm.apply(np.stack(inputs)[None], INPUTS, field_axis=1).astype(np.float32)
    steps = samplers.get_sampler(sampler).default_steps if steps is None else int(steps)
    u = samplers.draw_posterior_samples(
        trained.denoiser, cond, n_samples, sampler=sampler, steps=steps, seed=seed,
        sightline_ids=[int(sightline_id)], sampler_kwargs=dict(sampler_kwargs or {}), precision=precision,
    )  # fmt: skip
    samples = norm.invert(u[0], TARGETS, field_axis=1).astype(np.float32)
    if not np.isfinite(samples).all():
        raise PredictError(f"{model_dir}: non-finite posterior samples for {tsz}, {xray}")
    meta = dict(
        model=str(model_dir), record=record, ra=ra, dec=dec, redshift=redshift, sampler=sampler, steps=steps,
        precision=precision, seed=seed, sightline_id=sightline_id, masked=masked, inputs=(str(tsz), str(xray)),
    )  # fmt: skip
    out = write_posterior_fits(out, samples, target, meta)
    if quicklook:
        _quicklook(out.with_suffix(".png"), np.stack(inputs), samples, meta)
    return out


def _check_config(model_dir, record: Mapping, config_files: Sequence[str]) -> None:
    from . import config as config_mod

    merged = config_mod.load_merged(config_files)
    expected = config_mod.training_hash(merged)
    if record.get("training_hash") != expected:
        raise PredictError(
            f"{model_dir}: the model was trained with training hash {record.get('training_hash')!r}, but "
            f"{', '.join(config_files)} gives {expected!r}: a model directory from another config"
        )


def write_posterior_fits(out, samples: np.ndarray, wcs, meta: Mapping) -> Path:
    """Primary header (provenance) + MEAN, STD (2, y, x) and SAMPLES (n, 2, y, x) extensions, written atomically."""
    from astropy.io import fits

    out = Path(out)
    record = meta["record"]
    header = fits.Header()
    cards = {
        "MODEL": (Path(meta["model"]).name, "model directory"),
        "CFGHASH": (record.get("config_hash", ""), "data config hash of the training set"),
        "TRNHASH": (record.get("training_hash", ""), "training hash of the model"),
        "TSZINST": (str(record.get("observe", {}).get("tsz", {}).get("preset", "none")), "tSZ instrument preset"),
        "XRAYINST": (str(record.get("observe", {}).get("xray", {}).get("preset", "none")), "X-ray instrument preset"),
        "TSZUNIT": (record["inputs"]["tsz"], "units of the tSZ input"),
        "XRAYUNIT": (record["inputs"]["xray"], "units of the X-ray input"),
        "REDSHIFT": (float(meta["redshift"]), "cluster redshift"),
        "RA_CL": (float(meta["ra"]), "[deg] cluster RA (grid centre)"),
        "DEC_CL": (float(meta["dec"]), "[deg] cluster Dec (grid centre)"),
        "PIXMPC": (float(record["pixel_Mpc"]), "[Mpc] physical pixel side"),
        "SAMPLER": (meta["sampler"], "posterior sampler"),
        "STEPS": (int(meta["steps"]), "sampler steps"),
        "PRECISN": (meta["precision"], "network forward pass (float32 or bf16)"),
        "NSAMPLE": (int(samples.shape[0]), "posterior samples"),
        "SEED": (int(meta["seed"]), "sampling seed"),
        "SEEDKEY": (int(meta["sightline_id"]), "sightline id the seeds are keyed by"),
        "NMASKSZ": (int(meta["masked"]["tsz"]), "masked tSZ pixels filled from the nearest"),
        "NMASKX": (int(meta["masked"]["xray"]), "masked X-ray pixels filled from the nearest"),
        "FIELDS": (",".join(TARGETS), "axis 3 of MEAN/STD (FITS order)"),
    }
    for key, (value, comment) in cards.items():
        header[key] = (value, comment)
    wcs_header = wcs.to_header()
    hdus = [fits.PrimaryHDU(header=header)]
    for name, data, what in (
        ("MEAN", samples.mean(axis=0), "posterior mean"),
        ("STD", samples.std(axis=0, ddof=1), "posterior standard deviation"),
        ("SAMPLES", samples, "posterior samples"),
    ):
        hdu = fits.ImageHDU(data=np.asarray(data, dtype=np.float32), name=name, header=wcs_header.copy())
        hdu.header["BUNIT"] = ("1", "surface density over the cosmic mean")
        hdu.header["CONTENT"] = what
        hdu.header["FIELDS"] = ",".join(TARGETS)
        hdus.append(hdu)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _quicklook(path: Path, inputs: np.ndarray, samples: np.ndarray, meta: Mapping) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean, std = samples.mean(axis=0), samples.std(axis=0, ddof=1)
    panels = [
        (inputs[0], f"tSZ [{meta['record']['inputs']['tsz']}]"),
        (inputs[1], f"X-ray [{meta['record']['inputs']['xray']}]"),
        (mean[0], "gas mean"),
        (std[0], "gas std"),
        (mean[1], "DM mean"),
        (std[1], "DM std"),
    ]
    fig, axes = plt.subplots(1, 6, figsize=(18, 3.2))
    for ax, (img, title) in zip(axes, panels):
        im = ax.imshow(img, origin="lower", cmap="viridis")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"z = {meta['redshift']:g}, {samples.shape[0]} samples ({meta['sampler']}, {meta['steps']} steps)")
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="massmaps predict", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a trained model directory (results/<run>/model)")
    p.add_argument("--tsz", required=True, help="tSZ FITS image with a WCS and BUNIT (y or microK)")
    p.add_argument("--xray", required=True, help="X-ray FITS image with a WCS and BUNIT (counts or brightness)")
    p.add_argument("--exposure", help="exposure map (s) of a counts image, rescaled to the model's exposure")
    p.add_argument("--ra", type=float, required=True, help="cluster RA in degrees")
    p.add_argument("--dec", type=float, required=True, help="cluster Dec in degrees")
    p.add_argument("--z", type=float, required=True, help="cluster redshift (> 0)")
    p.add_argument("--out", required=True, help="output FITS file (a quick-look PNG is written beside it)")
    p.add_argument("--n-samples", type=int, default=50)
    p.add_argument("--sampler", default="dpmpp_2m_sde")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sightline-id", type=int, default=0, help="the key of the sampling seeds (default 0)")
    p.add_argument("--max-masked", type=float, default=0.05, help="largest fraction of NaN pixels filled")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["float32", "bf16"], default="float32", help="the network's forward pass")
    p.add_argument("--config", nargs="*", default=[], help="config files the model must have been trained with")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "predict":
        print("usage: massmaps predict --model DIR --tsz FITS --xray FITS --ra DEG --dec DEG --z Z --out FITS")
        return 2
    args = build_parser().parse_args(argv[1:])
    try:
        out = predict(
            args.model, args.tsz, args.xray, ra=args.ra, dec=args.dec, redshift=args.z, out=args.out,
            n_samples=args.n_samples, sampler=args.sampler, steps=args.steps, seed=args.seed,
            sightline_id=args.sightline_id, exposure=args.exposure, max_masked=args.max_masked,
            device=args.device, config_files=args.config, precision=args.precision,
        )  # fmt: skip
    except (PredictError, FileNotFoundError) as err:
        print(f"massmaps predict: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
