"""The benchmark scripts that judge finished runs, on synthetic metrics with known verdicts."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from massmaps.evaluation import calibration

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _metrics(folder: Path, changes: dict | None = None) -> Path:
    """A run's metrics csv files that meet every goal, but for ``changes``: (bin, field, statistic) -> value."""
    changes = changes or {}
    good = {
        "mass_error_median": 0.01,
        "b_large": 1.02,
        "max_coverage_error": 0.03,
        "z_std": 1.0,
        "z_mean": 0.02,
        "tarp_ks_p": 0.4,
    }
    rows = []
    for b in ("low", "high", "all"):
        for f in ("gas", "dm"):
            for s, v in good.items():
                rows.append({"mass_bin": b, "field": f, "statistic": s, "value": changes.get((b, f, s), v)})
    (folder / "metrics").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "metrics" / "calibration.csv", index=False)
    t1 = [
        {"mass_bin": b, "field": f, "statistic": "r", "scale": "small", "mean": 0.9}
        for b in ("low", "high")
        for f in ("gas", "dm")
    ]
    pd.DataFrame(t1).to_csv(folder / "metrics" / "table1.csv", index=False)
    margin = [
        {"mass_bin": b, "field": f, "k": k, "margin": changes.get((b, f, "margin"), 0.01) if k == 2 else 0.02}
        for b in ("low", "high")
        for f in ("gas", "dm")
        for k in (1, 2, 3)
    ]
    pd.DataFrame(margin).to_csv(folder / "metrics" / "r_margin.csv", index=False)
    return folder


def test_goals_flags_exactly_the_missed_goals(tmp_path):
    goals = _load("goals")
    good = _metrics(tmp_path / "good")
    assert all(met for _, _, met, _ in goals.goals(good))
    bad = _metrics(
        tmp_path / "bad",
        {
            ("high", "dm", "mass_error_median"): -0.031,
            ("all", "gas", "tarp_ks_p"): 0.009,
            ("all", "dm", "z_mean"): -0.11,
            ("low", "gas", "margin"): -0.001,
        },
    )
    missed = {g for g, _, met, _ in goals.goals(bad) if not met}
    assert missed == {
        "mass error, dm high",
        "TARP KS p, gas",
        "mean z, dm",
        "smallest r margin over the baselines, gas low",
    }
    text = goals.table({"good": good, "bad": bad})
    assert text.splitlines()[-1] == "| goals missed | 0 | 4 |"
    assert "| TARP KS p, gas | 0.400 | 0.009 MISS |" in text


def test_goals_names_a_folder_that_is_not_a_finished_run(tmp_path):
    goals = _load("goals")
    with pytest.raises(SystemExit, match="not a finished run.*calibration.csv"):
        goals.goals(tmp_path)


def test_goals_names_the_file_and_row_that_is_missing(tmp_path):
    goals = _load("goals")
    run = _metrics(tmp_path / "run")
    cal = pd.read_csv(run / "metrics" / "calibration.csv")
    cal[cal.statistic != "tarp_ks_p"].to_csv(run / "metrics" / "calibration.csv", index=False)
    with pytest.raises(SystemExit, match=r"calibration.csv: expected one row for all/gas/tarp_ks_p, found 0"):
        goals.goals(run)


def test_profile_recalibration_fits_the_widening_and_widening_accepts_only_a_centred_posterior():
    """Summaries whose samples are half as spread as the truth's posterior: the fitted alpha is about 2, and
    widening by it makes TARP accept; a posterior shifted by one posterior std is still rejected after it."""
    recal = _load("profile_recalibration")
    rng = np.random.default_rng(0)
    maps, n, d = 120, 50, 6
    centre = rng.normal(size=(maps, 1, d))
    truth = centre[:, 0] + rng.normal(size=(maps, d))
    narrow = centre + 0.5 * rng.normal(size=(maps, n, d))
    alpha, per_annulus = recal.fit_alpha(calibration.profile_z(list(zip(narrow, truth))), n)
    assert 1.7 < alpha < 2.3 and np.all((per_annulus > 1.5) & (per_annulus < 2.6))
    groups = np.arange(maps)
    assert recal.tarp_p(narrow, truth, groups, 0) < 0.01
    assert recal.tarp_p(recal.widen(narrow, alpha), truth, groups, 0) > 0.05
    shifted = recal.widen(narrow, alpha) + 1.0
    assert recal.tarp_p(shifted, truth, groups, 0) < 0.01


def test_numerics_worker_repeats_its_bytes_and_tells_precisions_apart(tmp_path):
    """benchmarks/numerics.py's rows: the same settings in the same process give the same digest (what lets
    a differing row be read as the machine setting's doing), and bfloat16 another one."""
    numerics = _load("numerics")
    digests = []
    for i, precision in enumerate(("float32", "float32", "bf16")):
        out = tmp_path / f"{i}.json"
        numerics.worker(precision, 2, str(out))
        digests.append(json.loads(out.read_text())["digest"])
    assert digests[0] == digests[1] != digests[2]


def _sample_store(values: np.ndarray, sightlines) -> xr.Dataset:
    samples = xr.DataArray(values, dims=("sightline", "sample", "field", "y", "x"))
    ds = xr.Dataset(
        {"samples": samples, "mean": samples.mean("sample"), "std": samples.std("sample")},
        coords={"sightline": list(sightlines), "sample": np.arange(values.shape[1]), "field": ["gas", "dm"]},
    )
    ds.attrs["sampler"] = "test"
    return ds


def test_ensemble_pools_the_first_samples_of_each_run_and_refuses_other_maps():
    ens = _load("ensemble")
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 4, 2, 2, 2)).astype(np.float32)
    b = (a + 10).astype(np.float32)
    pooled = ens.pooled_samples([_sample_store(a, [5, 6, 7]), _sample_store(b, [5, 6, 7])], 2)
    assert pooled.sizes["sample"] == 4
    np.testing.assert_array_equal(pooled["samples"].values[:, :2], a[:, :2])
    np.testing.assert_array_equal(pooled["samples"].values[:, 2:], b[:, :2])
    both = np.concatenate([a[:, :2], b[:, :2]], axis=1)
    np.testing.assert_allclose(pooled["mean"].values, both.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(pooled["std"].values, both.std(axis=1, ddof=1), rtol=1e-5)
    assert pooled.attrs["sampler"] == "test"
    with pytest.raises(ValueError, match="other test maps"):
        ens.pooled_samples([_sample_store(a, [5, 6, 7]), _sample_store(b, [5, 6, 8])], 2)
    with pytest.raises(ValueError, match="at least --per-run 5"):
        ens.pooled_samples([_sample_store(a, [5, 6, 7]), _sample_store(b, [5, 6, 7])], 5)


def test_ensemble_residuals_tell_shared_errors_from_independent_ones():
    ens = _load("ensemble")
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(400, 1, 1))
    shared = rng.normal(scale=0.1, size=(400, 1, 1))

    def evaluation(own_scale):
        mean = truth + shared + rng.normal(scale=own_scale, size=truth.shape)
        gen = mean[:, None] + rng.normal(scale=0.05, size=(400, 30, 1, 1))
        gen -= gen.mean(axis=1, keepdims=True) - mean[:, None]  # the samples' mean is exactly ``mean``
        return xr.Dataset(
            {
                "summary_sim": (("sightline", "field", "annulus"), truth),
                "summary_gen": (("sightline", "sample", "field", "annulus"), gen),
            },
            coords={"field": ["gas"]},
        )

    t = ens.residual_table([evaluation(0.0), evaluation(0.0), evaluation(0.1)], ["a", "b", "c"])
    corr = t.set_index("run")["corr_with_run_1"]
    assert corr["a"] == pytest.approx(1.0) and corr["b"] == pytest.approx(1.0)
    assert corr["c"] == pytest.approx(2**-0.5, abs=0.08)  # half of c's residual variance is its own
    rms = t.set_index("run")
    assert rms.loc["b", "rms_mean_difference"] == pytest.approx(0.0, abs=1e-12)
    assert rms.loc["c", "rms_mean_difference"] == pytest.approx(0.1, rel=0.15)
    assert rms.loc["a", "rms_residual"] == pytest.approx(0.1, rel=0.15)
    assert rms.loc["a", "rms_spread"] == pytest.approx(0.05, rel=0.1)
