"""The observe stage in the workflow and `massmaps predict` on FITS images: a round trip that gives the
pipeline's own samples, images in a CAR projection made outside the pipeline, and bad input."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from _workflow import ROOT, snakemake
from astropy.io import fits
from astropy.wcs import WCS

from massmaps import files, store
from massmaps.predict import PredictError, grid_wcs, model_record, predict

OBSERVED = """
observe:
  redshift: {kind: uniform, range: [0.2, 0.4]}
  tsz: {preset: act_dr6_y}
  xray: {preset: erosita_erass1}
"""
TARGET = "results/tiny/samples/test.zarr"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("observed")
    out = snakemake(d, TARGET, extra=OBSERVED)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return d


def test_observed_inputs_train_the_model_and_only_observe_reruns(run):
    res = run / "results" / "tiny"
    obs = store.open_store(res / "observed" / "maps.zarr")
    clean = store.open_store(res / "dataset" / "maps.zarr")
    units = dict(zip(obs["field"].values, obs["units"].values))
    assert units["tsz"] == "1" and units["xray"] == "counts"
    np.testing.assert_array_equal(
        obs["maps"].sel(field=["gas", "dm"]).values, clean["maps"].sel(field=["gas", "dm"]).values
    )
    z = obs["redshift"].values
    assert ((z >= 0.2) & (z <= 0.4)).all()
    record = model_record(res / "model")
    assert record["inputs"] == {"tsz": "1", "xray": "counts"} and record["observe_exposure_s"] == 200.0
    assert record["npix"] == 16 and record["pixel_Mpc"] == 0.8 and record["training_hash"]
    # another instrument: observe and what follows it rerun, the clean maps stay cached
    dry = snakemake(run, TARGET, "-n", extra=OBSERVED.replace("act_dr6_y", "spt3g_150"))
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "observe_dataset" in dry.stdout and "train_model" in dry.stdout
    assert "project_shard" not in dry.stdout and "assemble_dataset" not in dry.stdout


def _sightline(run, k=0):
    res = run / "results" / "tiny"
    obs = store.open_store(res / "observed" / "maps.zarr")
    splits = files.read_table(res / "split" / "splits.parquet")
    row = splits[splits["split"] == "test"].iloc[k]
    one = obs.isel(sightline=int(row["index"]))
    return one, int(row["sightline_id"])


def _write(path, data, wcs, bunit="y"):
    header = wcs.to_header()
    if bunit is not None:
        header["BUNIT"] = bunit
    fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header).writeto(path, overwrite=True)
    return path


def test_round_trip_gives_the_pipelines_samples(run, tmp_path):
    """A test sightline written as FITS on a TAN WCS at its redshift gives the samples of sample_posterior."""
    res = run / "results" / "tiny"
    one, sid = _sightline(run)
    record = model_record(res / "model")
    z = float(one["redshift"])
    wcs = grid_wcs(record, 150.1, 2.2, z)
    tsz = _write(tmp_path / "tsz.fits", one["maps"].sel(field="tsz").values, wcs, "y")
    xray = _write(tmp_path / "xray.fits", one["maps"].sel(field="xray").values, wcs, "counts")
    out = predict(
        res / "model", tsz, xray, ra=150.1, dec=2.2, redshift=z, out=tmp_path / "post.fits",
        n_samples=3, steps=3, seed=3, sightline_id=sid,
    )  # fmt: skip
    samples = store.open_store(res / "samples" / "test.zarr")
    expected = samples["samples"].sel(sightline=samples["sightline_id"] == sid).values[0]
    with fits.open(out) as hdul:
        got = hdul["SAMPLES"].data
        assert hdul[0].header["TSZINST"] == "act_dr6_y" and hdul[0].header["XRAYUNIT"] == "counts"
        assert hdul[0].header["TRNHASH"] == record["training_hash"]
        assert WCS(hdul["MEAN"].header).wcs.ctype[0] == "RA---TAN"
        np.testing.assert_allclose(hdul["MEAN"].data, got.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_car_images_made_outside_the_pipeline(run, tmp_path):
    """Images on a finer CAR (plate carree) grid, as ACT's maps come, through the console command."""
    from reproject import reproject_interp

    res = run / "results" / "tiny"
    one, sid = _sightline(run)
    record = model_record(res / "model")
    z = float(one["redshift"])
    grid = grid_wcs(record, 30.0, -10.0, z)
    car = WCS(naxis=2)
    step = abs(grid.wcs.cdelt[0]) / 2
    car.wcs.ctype, car.wcs.crval, car.wcs.cdelt = ["RA---CAR", "DEC--CAR"], [30.0, 0.0], [-step, step]
    car.wcs.crpix = [40.5, 40.5 - (-10.0 / step)]
    tsz_car, _ = reproject_interp((one["maps"].sel(field="tsz").values, grid), car, shape_out=(80, 80))
    x_dens, _ = reproject_interp((one["maps"].sel(field="xray").values, grid), car, shape_out=(80, 80))
    tsz_car[0, 0] = np.nan  # a masked pixel outside the model's field
    tsz = _write(tmp_path / "tsz_car.fits", np.nan_to_num(tsz_car, nan=0.0), car, "Compton-y")
    xray = _write(tmp_path / "xray_car.fits", np.nan_to_num(x_dens, nan=0.0) / 4, car, "counts")
    cmd = [sys.executable, "-m", "massmaps.predict", "predict", "--model", str(res / "model"), "--tsz", str(tsz)]
    cmd += ["--xray", str(xray), "--ra", "30", "--dec", "-10", "--z", str(z), "--out", str(tmp_path / "car.fits")]
    cmd += ["--n-samples", "4", "--steps", "3"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    with fits.open(tmp_path / "car.fits") as hdul:
        assert hdul["SAMPLES"].data.shape == (4, 2, 16, 16) and np.isfinite(hdul["SAMPLES"].data).all()
        assert hdul["STD"].data.min() >= 0 and hdul[0].header["REDSHIFT"] == pytest.approx(z)


def test_bad_input_names_the_file_and_keyword(run, tmp_path):
    res = run / "results" / "tiny"
    one, _ = _sightline(run)
    record = model_record(res / "model")
    wcs = grid_wcs(record, 10.0, 5.0, 0.3)
    good_t = _write(tmp_path / "t.fits", one["maps"].sel(field="tsz").values, wcs, "y")
    good_x = _write(tmp_path / "x.fits", one["maps"].sel(field="xray").values, wcs, "counts")
    kw = dict(ra=10.0, dec=5.0, redshift=0.3, out=tmp_path / "o.fits", n_samples=2, steps=2)
    no_wcs = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(np.zeros((16, 16), np.float32)).writeto(no_wcs)
    with pytest.raises(PredictError, match=r"nowcs.fits: no celestial WCS \(keywords CTYPE1"):
        predict(res / "model", no_wcs, good_x, **kw)
    no_unit = _write(tmp_path / "nounit.fits", np.zeros((16, 16)), wcs, None)
    with pytest.raises(PredictError, match=r"nounit.fits: no BUNIT keyword"):
        predict(res / "model", no_unit, good_x, **kw)
    wrong_unit = _write(tmp_path / "uK.fits", np.zeros((16, 16)), wcs, "uK")
    with pytest.raises(PredictError, match=r"uK.fits: BUNIT = 'uK', but the model expects tsz in '1'"):
        predict(res / "model", wrong_unit, good_x, **kw)
    small = _write(tmp_path / "small.fits", np.zeros((8, 8)), grid_wcs({**record, "npix": 8}, 10.0, 5.0, 0.3), "y")
    with pytest.raises(PredictError, match=r"small.fits: the image does not cover the model's field"):
        predict(res / "model", small, good_x, **kw)
    with pytest.raises(PredictError, match="redshift must be > 0"):
        predict(res / "model", good_t, good_x, **{**kw, "redshift": 0.0})
    other = tmp_path / "other.yaml"
    other.write_text((run / "tiny.yaml").read_text().replace("seed: 3", "seed: 4"))
    (tmp_path / "observed.yaml").write_text(OBSERVED)  # (extra.yaml may hold the dry run's other instrument)
    configs = [str(ROOT / "config" / "config.yaml"), str(run / "tiny.yaml"), str(tmp_path / "observed.yaml")]
    predict(res / "model", good_t, good_x, **kw, config_files=configs)  # the model's own config: accepted
    with pytest.raises(PredictError, match=r"model.*trained with training hash .* another config"):
        predict(res / "model", good_t, good_x, **kw, config_files=[*configs[:1], str(other), configs[2]])
    old = tmp_path / "old_model"
    shutil.copytree(res / "model", old)
    meta = old / "massmaps_model.json"
    meta.write_text(meta.read_text().replace('"data"', '"_data"'))
    with pytest.raises(PredictError, match=r"massmaps_model.json: no 'data' record"):
        predict(old, good_t, good_x, **kw)
