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
#: The data record of a model on the tiny run's grid, for the tests that need no trained model.
MODEL_RECORD = {
    "npix": 16, "pixel_Mpc": 0.8, "inputs": {"tsz": "1", "xray": "counts"}, "observe_exposure_s": 200.0,
    "cosmology": {"Om0": 0.3, "Ob0": 0.045, "H0": 70.0, "sigma8": 0.8, "ns": 0.96},
}  # fmt: skip


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


def test_exposure_map_and_masked_pixels(run, tmp_path):
    """Counts of twice the model's exposure with a 400 s exposure map give the round trip's samples; a few NaN
    pixels inside the field take their nearest neighbour's value, too many are an error naming the file."""
    res = run / "results" / "tiny"
    one, sid = _sightline(run)
    record = model_record(res / "model")
    z = float(one["redshift"])
    wcs = grid_wcs(record, 150.1, 2.2, z)
    tsz_map = one["maps"].sel(field="tsz").values
    counts = one["maps"].sel(field="xray").values
    kw = dict(ra=150.1, dec=2.2, redshift=z, n_samples=3, steps=3, seed=3, sightline_id=sid, quicklook=False)
    tsz = _write(tmp_path / "tsz.fits", tsz_map, wcs, "y")
    ref = predict(res / "model", tsz, _write(tmp_path / "x.fits", counts, wcs, "counts"), out=tmp_path / "a.fits", **kw)
    double = _write(tmp_path / "x2.fits", 2 * counts, wcs, "counts")
    expo = _write(tmp_path / "expo.fits", np.full_like(counts, 2 * record["observe_exposure_s"]), wcs, "s")
    got = predict(res / "model", tsz, double, exposure=expo, out=tmp_path / "b.fits", **kw)
    with fits.open(ref) as a, fits.open(got) as b:
        np.testing.assert_allclose(b["SAMPLES"].data, a["SAMPLES"].data, rtol=1e-4, atol=1e-5)
    masked = tsz_map.copy()
    masked[5, 6] = masked[10, 2] = np.nan
    out = predict(res / "model", _write(tmp_path / "m.fits", masked, wcs, "y"), double, exposure=expo,
                  out=tmp_path / "c.fits", **kw)  # fmt: skip
    with fits.open(out) as c:
        assert c[0].header["NMASKSZ"] == 2 and c[0].header["NMASKX"] == 0
        assert np.isfinite(c["SAMPLES"].data).all()
    masked[:4] = np.nan  # 64 + 2 of 256 pixels
    with pytest.raises(PredictError, match=r"m2.fits: 66 of 256 pixels are masked \(NaN\), more than max_masked"):
        predict(res / "model", _write(tmp_path / "m2.fits", masked, wcs, "y"), double, exposure=expo,
                out=tmp_path / "d.fits", **kw)  # fmt: skip


@pytest.mark.parametrize("dec", [-40.0, 0.0, 65.0])
def test_counts_on_a_car_grid_keep_their_surface_density(tmp_path, dec):
    """A sky of uniform count density seen in a plate-carree image whose equator is far from the cluster (as
    survey mosaics come): each CAR pixel holds density x its own solid angle, cos(dec) of the reference
    pixel's at dec, and the model's pixels must get density x their own solid angle back, not cos(dec) of it."""
    from massmaps.predict import load_input, pixel_solid_angles

    record = MODEL_RECORD
    target = grid_wcs(record, 30.0, dec, 0.3)
    step = abs(target.wcs.cdelt[0]) / 2  # degrees
    n_ra = int(np.ceil(2.6 * 16 / np.cos(np.radians(dec)))) + 8
    n_dec = 2 * 16 + 16
    car = WCS(naxis=2)
    car.wcs.ctype, car.wcs.crval, car.wcs.cdelt = ["RA---CAR", "DEC--CAR"], [30.0, 0.0], [-step, step]
    car.wcs.crpix = [(n_ra + 1) / 2, (n_dec + 1) / 2 - dec / step]
    _, lat = car.pixel_to_world_values(*np.meshgrid(np.arange(n_ra), np.arange(n_dec)))
    s = np.radians(step)
    area = s * (np.sin(np.radians(lat) + s / 2) - np.sin(np.radians(lat) - s / 2))  # exact for CAR pixels
    np.testing.assert_allclose(pixel_solid_angles(car, (n_dec, n_ra)), area, rtol=1e-5)
    density = 3.0e9  # counts per steradian
    image = _write(tmp_path / "counts_car.fits", density * area, car, "counts")
    got, masked = load_input(image, "xray", record, target)
    model_pixel_sr = np.radians(abs(target.wcs.cdelt[0])) ** 2
    assert masked == 0
    np.testing.assert_allclose(got, density * model_pixel_sr, rtol=2e-3)


def test_finer_images_are_averaged_over_the_model_pixel(tmp_path):
    """An image of pixels 4 times finer than the model's: each model pixel is the mean of the 16 image
    pixels in it (not an interpolation at its centre, whose noise would be a single fine pixel's), and
    counts add up."""
    from massmaps.predict import load_input

    record = MODEL_RECORD
    target = grid_wcs(record, 200.0, 30.0, 0.2)
    fine = target.deepcopy()
    fine.wcs.cdelt = [c / 4 for c in target.wcs.cdelt]
    fine.wcs.crpix = [32.5, 32.5]
    rng = np.random.default_rng(2)
    y = 1e-5 + 1e-6 * rng.standard_normal((64, 64))
    got, _ = load_input(_write(tmp_path / "y.fits", y, fine, "y"), "tsz", record, target)
    np.testing.assert_allclose(got, y.reshape(16, 4, 16, 4).mean(axis=(1, 3)), rtol=1e-6)
    counts = rng.poisson(3.0, (64, 64)).astype(float)
    got, _ = load_input(_write(tmp_path / "c.fits", counts, fine, "counts"), "xray", record, target)
    np.testing.assert_allclose(got, counts.reshape(16, 4, 16, 4).sum(axis=(1, 3)), rtol=1e-5)


def test_area_means_read_in_bands_of_rows_equal_one_pass():
    """The points of the area mean are read a few model rows at a time (a bound on memory): any band
    height, one row included, gives the same means and coverage as a single pass, on a grid turned
    against the model's that covers part of it."""
    from massmaps.predict import area_mean

    target = grid_wcs(MODEL_RECORD, 200.0, 30.0, 0.2)
    image = WCS(naxis=2)
    image.wcs.ctype, image.wcs.crval = ["RA---TAN", "DEC--TAN"], [200.01, 30.0]
    image.wcs.cdelt = [c / 3 for c in target.wcs.cdelt]
    image.wcs.crpix = [30.5, 20.5]
    turn = np.radians(20.0)
    image.wcs.pc = [[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]
    rng = np.random.default_rng(9)
    data = rng.gamma(2.0, 1.0, size=(2, 40, 60))
    whole, cover = area_mean(data, image, target, 16)
    assert 0.1 < cover.mean() < 0.9  # part of the model grid lies off the image
    for max_points in (12 * 12 * 16, 5 * 12 * 12 * 16):  # bands of 1 and 5 rows (k = 12 here)
        banded, banded_cover = area_mean(data, image, target, 16, max_points=max_points)
        np.testing.assert_array_equal(banded, whole)
        np.testing.assert_array_equal(banded_cover, cover)


def test_a_survey_map_is_read_as_its_cut_out_around_the_cluster(tmp_path):
    """A large CAR map (as a survey's full map) gives the same model-grid input as a cut-out of it made by
    hand, for an intensive map and for counts; only the window around the cluster is read."""
    from massmaps.predict import _read_image, load_input

    record = MODEL_RECORD
    target = grid_wcs(record, 41.0, -35.0, 0.3)
    step = abs(target.wcs.cdelt[0]) / 2
    big = WCS(naxis=2)
    big.wcs.ctype, big.wcs.crval, big.wcs.cdelt = ["RA---CAR", "DEC--CAR"], [40.0, 0.0], [-step, step]
    shape = (1200, 900)
    big.wcs.crpix = [450.5, 600.5 + 35.0 / step]
    rng = np.random.default_rng(5)
    sky = rng.gamma(2.0, 1.0, size=shape) * 1e-5
    sky[rng.random(shape) < 0.002] = np.nan  # a few masked pixels everywhere
    x0, y0 = (int(round(float(c))) for c in big.world_to_pixel_values(41.0, -35.0))
    window = (slice(y0 - 60, y0 + 60), slice(x0 - 70, x0 + 70))  # wider than the field (32 x 39 pixels here)
    assert np.isfinite(sky[window]).any()
    for unit, field in (("y", "tsz"), ("counts", "xray")):
        whole = _write(tmp_path / f"whole_{field}.fits", sky, big, unit)
        cut = _write(tmp_path / f"cut_{field}.fits", sky[window], big.slice(window), unit)
        got, got_masked = load_input(whole, field, record, target, max_masked=1.0)
        ref, ref_masked = load_input(cut, field, record, target, max_masked=1.0)
        np.testing.assert_allclose(got, ref, rtol=1e-12)
        assert got_masked == ref_masked
        _, data, _ = _read_image(whole, field, target, 16)
        assert data.size < sky.size / 20


ABLATION = (
    OBSERVED
    + """
ablation:
  n_samples: 3
  observing:
    main: {redshift: {kind: uniform, range: [0.2, 0.4]}, tsz: {preset: act_dr6_y}, xray: {preset: erosita_erass1}}
    ideal: {tsz: {preset: none}, xray: {preset: none}}
    beam: {redshift: {kind: fixed, value: 0.3}, tsz: {preset: act_dr6_y, noise_arcmin: 0.0},
           xray: {preset: erosita_erass1, output: surface_brightness}}
"""
)


def _job_counts(text: str) -> dict:
    import re

    stats = text.split("Job stats:")[1].split("total")[0]
    return {name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)\s*$", stats, flags=re.M)}


def test_observing_ablation_in_the_workflow_and_its_report(run, tmp_path):
    """ablation.observing on a copy of the observed run: the variant equal to the run's instruments reuses
    its maps and model (its samples are the run's bytes), the ideal one trains on the clean maps, the beam
    one observes and trains; one table, a Markdown table and the r(k) figure, all in the HTML report.
    Changing one variant reruns that variant's four jobs and the table, nothing else."""
    import pandas as pd

    work = tmp_path / "ablation"
    shutil.copytree(run, work, symlinks=True)
    out = snakemake(work, "observing_ablation", extra=ABLATION)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    jobs = _job_counts(out.stdout + out.stderr)
    assert jobs["ablation_train_model"] == 2 and jobs["ablation_observe_dataset"] == 1, jobs
    assert "train_model" not in jobs and "project_shard" not in jobs, jobs
    res = work / "results" / "tiny"
    abl = res / "ablation" / "observing"
    main = store.open_store(abl / "main" / "samples.zarr")
    np.testing.assert_array_equal(
        main["samples"].values, store.open_store(res / "samples" / "test.zarr")["samples"].values
    )
    assert not (abl / "main" / "model").exists() and not (abl / "ideal" / "maps.zarr").exists()
    ideal, observed = model_record(abl / "ideal" / "model"), model_record(res / "model")
    assert ideal["inputs"] != observed["inputs"] and ideal["training_hash"] != observed["training_hash"]
    beam = store.open_store(abl / "beam" / "maps.zarr")
    assert (beam["redshift"].values == 0.3).all()
    table = pd.read_csv(abl / "ablation.csv")
    assert list(dict.fromkeys(table["variant"])) == ["main", "ideal", "beam"]
    assert {"r_small", "b_large", "mass_error_median", "max_coverage_error", "z_std", "tarp_ks_p"} <= set(
        table["statistic"]
    )
    assert np.isfinite(table.loc[table["statistic"] == "r_small", "value"]).all()
    curves = pd.read_csv(abl / "r_of_k.csv")
    assert np.isnan(curves.loc[curves["variant"] == "ideal", "k_beam_half"]).all()
    assert (curves.loc[curves["variant"] == "beam", "k_beam_half"] > 0).all()
    assert "| beam |" in (abl / "ablation.md").read_text()
    assert (abl / "r_of_k.png").stat().st_size > 10_000
    report = work / "report.html"
    out = snakemake(work, "observing_ablation", "--report", str(report), extra=ABLATION)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Observing ablation" in report.read_text(errors="replace")
    # another redshift for one variant: that variant's jobs and the table, nothing before them
    dry = snakemake(work, "observing_ablation", "-n", extra=ABLATION.replace("value: 0.3}", "value: 0.25}"))
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert _job_counts(dry.stdout + dry.stderr) == {
        "ablation_observe_dataset": 1,
        "ablation_train_model": 1,
        "ablation_sample_posterior": 1,
        "ablation_evaluate_posterior": 1,
        "observing_ablation": 1,
    }
