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


def _toy_gaussian(npix: int = 8, offset: float = 1.0):
    """Covariance (flattened over channel, y, x; torch float64) of two correlated channels, each a constant
    offset of variance ``offset`` per pixel, a smooth squared-exponential part and white noise."""
    import torch

    y, x = torch.meshgrid(torch.arange(npix), torch.arange(npix), indexing="ij")
    d2 = (y.reshape(-1, 1) - y.reshape(-1)) ** 2 + (x.reshape(-1, 1) - x.reshape(-1)) ** 2
    per_channel = offset + 0.3 * torch.exp(-d2 / (2 * 2.0**2)) + 0.05 * torch.eye(npix * npix)
    return torch.kron(torch.tensor([[1.0, 0.7], [0.7, 1.0]]), per_channel).double()


def _gain(cov, sigma: float):
    """K = C (C + sigma^2 I)^-1 (torch linear algebra: one thread under ``one_torch_thread``)."""
    import torch

    return torch.linalg.solve(cov + sigma**2 * torch.eye(len(cov), dtype=cov.dtype), cov).T


def _linear_denoiser(cov):
    """D(x) = m + K (x - m), K = C (C + sigma^2 I)^-1: the exact denoiser of x0 ~ N(m, C), the mean m taken
    from the condition (channel k: (k + 1) cond), so a condition paired with the wrong map shows."""
    import torch

    gains = {}

    def denoise(x, sigma, cond):
        assert cond.shape[0] == x.shape[0]
        if sigma not in gains:
            gains[sigma] = _gain(cov, sigma)
        m = torch.cat([cond, 2 * cond], dim=1).to(torch.float64)
        return m + ((x - m).flatten(1) @ gains[sigma].T).reshape(x.shape)

    return denoise


def _toy_maps(n: int, cov, npix: int = 8):
    """``n`` maps x0 ~ N(m, C), m from a random amplitude per map (the condition) times a centred Gaussian."""
    import torch

    gen = torch.Generator().manual_seed(3)
    c = (torch.arange(npix, dtype=torch.float64) + 0.5 - npix / 2) ** 2
    cond = 5 * torch.rand(n, 1, 1, 1, generator=gen, dtype=torch.float64) * torch.exp(-(c[:, None] + c) / 8)
    m = torch.cat([cond, 2 * cond], dim=1)
    z = torch.randn(n, len(cov), generator=gen, dtype=torch.float64)
    return m + (z @ torch.linalg.cholesky(cov).T).reshape(m.shape), cond.float()


_TOY_SIGMAS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def _expected(true_cov, model_cov, mode: np.ndarray, channel: int, sigma: float) -> tuple[float, float]:
    """E[e_u^2] / sigma^2 and J_u of the linear denoiser of ``model_cov`` on maps of ``true_cov``, the mode in
    ``channel`` alone: e = (K - I)(x0 - m) + sigma K n."""
    import torch

    n = len(true_cov)
    k = _gain(model_cov, sigma)
    w = torch.zeros(n, dtype=torch.float64)
    w[channel * mode.size : (channel + 1) * mode.size] = torch.as_tensor(mode.ravel())
    a = (k - torch.eye(n, dtype=torch.float64)).T @ w
    e2 = a @ true_cov @ a + sigma**2 * (k.T @ w) @ (k.T @ w)
    return float(e2) / sigma**2, float(w @ k @ w)


def _toy_table(model_cov, true_cov, modes: dict):
    import torch

    dm = _load("denoiser_modes")
    x0, cond = _toy_maps(1000, true_cov)
    return dm.mode_calibration(
        _linear_denoiser(model_cov),
        x0,
        cond,
        _TOY_SIGMAS,
        modes,
        draws=4,
        generator=torch.Generator().manual_seed(0),
        fields=["gas", "dm"],
        batch=333,
    )


def _with_expected(t, true_cov, model_cov, modes):
    """The table with the exact J_true and J_model (and ratio) of each row, and their deficit per field and mode."""
    out = t.copy()
    for i, row in t.iterrows():
        c = ["gas", "dm"].index(row["field"])
        j_true, j = _expected(true_cov, model_cov, modes[row["mode"]], c, row["sigma"])
        out.loc[i, ["J_true", "J_model", "ratio"]] = j_true, j, j_true / j
    return out


@pytest.mark.usefixtures("one_torch_thread")
def test_denoiser_modes_exact_denoiser_is_calibrated_along_every_mode():
    dm = _load("denoiser_modes")
    cov = _toy_gaussian()
    modes = dm.annulus_modes(8, 0.5, 4)
    assert list(modes) == ["ann1", "ann2", "ann3", "ann4", "all"]
    t = _toy_table(cov, cov, modes)
    assert len(t) == 2 * len(modes) * len(_TOY_SIGMAS) and set(t["n"]) == {4000}
    exact = _with_expected(t, cov, cov, modes)
    np.testing.assert_allclose(exact["ratio"], 1.0, rtol=1e-9)
    np.testing.assert_allclose(t["J_model"], exact["J_model"], rtol=1e-6)  # each mode in its channel alone
    np.testing.assert_allclose(t["ratio"], 1.0, atol=0.15)
    np.testing.assert_allclose(t["J_true"], t["e2"] / t["sigma"] ** 2)
    np.testing.assert_allclose(t["rms"], np.sqrt(t["e2"]))
    assert (t["mean"].abs() < 4 * t["mean_se"]).all()  # no mean error, within its noise
    spread = dm.spread_factors(t)
    assert len(spread) == 2 * len(modes)
    np.testing.assert_allclose(spread["deficit"], 0.0, atol=0.25)
    np.testing.assert_allclose(np.exp(spread["deficit"]), spread["spread_factor"])


@pytest.mark.usefixtures("one_torch_thread")
def test_denoiser_modes_finds_a_mean_error_along_a_mode_with_its_sign():
    """The exact denoiser plus a constant offset of -0.2 along ann2 in the gas and +0.2 over the whole DM
    map: the mean error along each mode is the offset's projection on it (nil on the other annuli) within 4
    standard errors, and those are small beside the offsets."""
    import torch

    dm = _load("denoiser_modes")
    cov = _toy_gaussian()
    modes = dm.annulus_modes(8, 0.5, 4)
    exact = _linear_denoiser(cov)
    shift = torch.zeros(1, 2, 8, 8, dtype=torch.float64)
    shift[0, 0] = -0.2 * torch.as_tensor(modes["ann2"])
    shift[0, 1] = 0.2 * torch.as_tensor(modes["all"])
    x0, cond = _toy_maps(1000, cov)

    def table(response: bool):
        return dm.mode_calibration(
            lambda x, sigma, c: exact(x, sigma, c) + shift,
            x0,
            cond,
            (0.1, 1.0),
            modes,
            draws=4,
            generator=torch.Generator().manual_seed(0),
            fields=["gas", "dm"],
            batch=500,
            response=response,
        ).set_index(["field", "mode", "sigma"])

    t = table(response=True)
    want = pd.Series(0.0, index=t.index)
    for field in ("gas", "dm"):  # the offset's projection on each mode (the annuli are disjoint)
        for m, u in modes.items():
            want.loc[(field, m)] = float((shift[0, ["gas", "dm"].index(field)].numpy() * u).sum())
    assert (np.abs(t["mean"] - want) < 4 * t["mean_se"]).all()
    assert (t.loc[("gas", "ann2"), "mean"] < -0.12).all() and (t.loc[("dm", "all"), "mean"] > 0.12).all()
    assert (t["mean_se"] < 0.02).all()
    alone = table(response=False)
    pd.testing.assert_series_equal(alone["mean"], t["mean"])  # the same draws, without the response
    assert alone["J_model"].isna().all() and alone["ratio"].isna().all()


def _expected_pixel_error(true_cov, model_cov, channel: int, npix: int, sigma: float) -> float:
    """E of the sum over ``channel``'s pixels of (D - x0)^2 for the linear denoiser of ``model_cov`` on maps of
    ``true_cov``: the channel's diagonal of (K - I) C (K - I)^T + sigma^2 K K^T."""
    import torch

    k = _gain(model_cov, sigma)
    a = k - torch.eye(len(true_cov), dtype=torch.float64)
    cov_e = a @ true_cov @ a.T + sigma**2 * k @ k.T
    return float(torch.diagonal(cov_e)[channel * npix**2 : (channel + 1) * npix**2].sum())


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_denoiser_modes_pixel_error_is_the_plain_squared_error(scale):
    """pixel_e2 is the field's summed squared pixel error: the closed form of the linear denoiser, one value
    per field and sigma on every mode's row; a too-wide model (scale 4) errs more than the exact one."""
    dm = _load("denoiser_modes")
    cov = _toy_gaussian()
    modes = dm.annulus_modes(8, 0.5, 4)
    t = _toy_table(scale * cov, cov, modes)
    assert t.groupby(["field", "sigma"])["pixel_e2"].nunique().eq(1).all()
    for (field, sigma), row in t.groupby(["field", "sigma"]).first().iterrows():
        expected = _expected_pixel_error(cov, scale * cov, ["gas", "dm"].index(field), 8, sigma)
        assert row["pixel_e2"] == pytest.approx(expected, rel=0.1), (field, sigma)
    if scale != 1.0:
        exact = _toy_table(cov, cov, modes)
        small = t[t["sigma"] <= 1.0]  # above, both come near the prior's own error
        exact = exact[exact["sigma"] <= 1.0]
        worse = (
            small.groupby(["field", "sigma"])["pixel_e2"].first()
            > exact.groupby(["field", "sigma"])["pixel_e2"].first()
        )
        assert worse.all()


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("scale", [0.25, 4.0])
def test_denoiser_modes_tells_too_narrow_from_too_wide_coherent_modes(scale):
    """The exact denoiser of a prior whose offset variance is ``scale`` times the truth's: 1/4 shrinks the
    coherent modes too much (ratio > 1, samples too narrow), 4 too little (ratio < 1)."""
    dm = _load("denoiser_modes")
    true_cov, model_cov = _toy_gaussian(), _toy_gaussian(offset=scale)
    modes = dm.annulus_modes(8, 0.5, 4)
    t = _toy_table(model_cov, true_cov, modes)
    expected = _with_expected(t, true_cov, model_cov, modes)
    np.testing.assert_allclose(t["J_model"], expected["J_model"], rtol=1e-6)
    np.testing.assert_allclose(t["ratio"], expected["ratio"], rtol=0.15)
    spread = dm.spread_factors(t).set_index(["field", "mode"])
    np.testing.assert_allclose(
        spread["deficit"], dm.spread_factors(expected).set_index(["field", "mode"])["deficit"], atol=0.25
    )
    whole = t[t["mode"] == "all"].set_index(["field", "sigma"])["ratio"]
    for f in ("gas", "dm"):
        if scale < 1:
            assert whole[(f, 3.0)] > 1.4 and whole[(f, 10.0)] > 2
            assert spread.loc[(f, "all"), "spread_factor"] > 2
        else:
            assert whole[(f, 10.0)] < 0.85 and whole[(f, 30.0)] < 0.6
            assert spread.loc[(f, "all"), "spread_factor"] < 1


@pytest.mark.usefixtures("one_torch_thread")
def test_denoiser_modes_follows_a_models_coloured_noise():
    """For a model trained on pyramid noise (x = x0 + sigma A z) the exact denoiser K = C (C + sigma^2 A^2)^-1
    is calibrated when the check draws that noise and differentiates along A^2 u; the white check calls the
    same denoiser miscalibrated."""
    import torch

    from massmaps.learning import score

    dm = _load("denoiser_modes")
    cov = _toy_gaussian()
    basis = torch.eye(64, dtype=torch.float64).reshape(64, 1, 8, 8)
    A = score.colour_noise(basis, "pyramid", 0.8).reshape(64, 64)
    torch.testing.assert_close(A, A.T)  # the check relies on the map's symmetry
    sigma_cov = torch.block_diag(A @ A, A @ A)

    def denoise(x, sigma, cond):
        m = torch.cat([cond, 2 * cond], dim=1).to(torch.float64)
        k = cov @ torch.linalg.inv(cov + sigma**2 * sigma_cov)
        return m + ((x - m).flatten(1) @ k.T).reshape(x.shape)

    x0, cond = _toy_maps(1000, cov)
    modes = dm.annulus_modes(8, 0.5, 4)
    common = dict(draws=4, fields=["gas", "dm"], batch=500)
    colour = lambda z: score.colour_noise(z, "pyramid", 0.8)  # noqa: E731
    sigmas = (0.1, 1.0, 3.0)
    t = dm.mode_calibration(denoise, x0, cond, sigmas, modes, generator=torch.Generator().manual_seed(0),
                            colour=colour, **common)  # fmt: skip
    np.testing.assert_allclose(t["ratio"], 1.0, atol=0.15)
    assert (t.loc[t["mode"] == "all", "noise_var"] > 10).all()  # a map's mean: 18.6 at discount 0.8 on 8 x 8
    np.testing.assert_allclose(dm.spread_factors(t)["deficit"], 0.0, atol=0.25)
    white = dm.mode_calibration(denoise, x0, cond, sigmas, modes, generator=torch.Generator().manual_seed(0), **common)
    assert np.abs(white["ratio"] - 1).max() > 0.5
    np.testing.assert_allclose(white["noise_var"], 1.0)


def test_denoiser_modes_annuli_are_those_of_the_tarp_summary():
    from massmaps.evaluation import metrics

    dm = _load("denoiser_modes")
    rng = np.random.default_rng(0)
    for npix, pixel in ((32, 0.4), (8, 0.5)):
        modes = dm.annulus_modes(npix, pixel)
        annuli = [m for m in modes if m != "all"]
        for m in modes.values():
            assert m.shape == (npix, npix) and np.sum(m**2) == pytest.approx(1.0)
            assert m.min() >= 0 and np.ptp(m[m > 0]) < 1e-12  # an indicator, normalised
        supports = np.stack([modes[m] > 0 for m in annuli])
        assert supports.sum(axis=0).max() == 1  # disjoint
        np.testing.assert_array_equal(modes["all"], 1 / npix)
        # the mean over each support is the summary's annulus mean
        maps = rng.uniform(1, 10, size=(5, npix, npix))
        summary = 10 ** calibration.summary_vector(maps, pixel)
        edges = metrics.radial_bin_edges(npix * pixel / 2, npix * pixel / 2 / calibration.SUMMARY_ANNULI)
        assert np.isnan(metrics.radial_profiles(maps, pixel, edges)).any() == (len(annuli) < len(edges) - 1)
        for name in annuli:
            k = int(name[3:]) - 1
            mean = (maps * supports[annuli.index(name)]).sum(axis=(-2, -1)) / supports[annuli.index(name)].sum()
            np.testing.assert_allclose(mean, summary[:, k], rtol=1e-6)
        # the supports cover the pixels whose centres lie within half the field of view, and no other
        c = (np.arange(npix) + 0.5) * pixel - npix * pixel / 2
        inside = np.hypot(c[:, None], c[None, :]) < npix * pixel / 2
        np.testing.assert_array_equal(supports.any(axis=0), inside)
    assert list(dm.annulus_modes(32, 0.4)) == [f"ann{k}" for k in range(1, calibration.SUMMARY_ANNULI + 1)] + ["all"]
    assert "ann1" not in dm.annulus_modes(8, 0.5)  # no pixel centre within 2/3 pixel of the middle


def _posterior_summaries(shift_of, n_clusters: int = 150, views: int = 2, n: int = 50, seed: int = 0):
    """Summaries of maps whose samples are exact draws of the posterior N(mu, 1) per annulus (2 fields, 6
    annuli) and whose truth is mu + N(0, 1) + ``shift_of(property)``, the property uniform per cluster and
    shared by its ``views`` views, as is a part of the truth's error (so that views are not independent)."""
    rng = np.random.default_rng(seed)
    prop = rng.uniform(0, 1, n_clusters)
    clusters = np.repeat(np.arange(n_clusters), views)
    mu = rng.normal(size=(len(clusters), 2, 6))
    shared = rng.normal(size=(n_clusters, 2, 6))[clusters]
    truth = mu + np.sqrt(0.5) * (shared + rng.normal(size=mu.shape)) + shift_of(prop[clusters])[:, None, None]
    gen = mu[:, None] + rng.normal(size=(len(clusters), n, 2, 6))
    return truth, gen, prop, clusters


def test_calibration_by_halo_finds_the_group_with_an_offset_and_its_sign():
    cbh = _load("calibration_by_halo")
    truth, gen, prop, clusters = _posterior_summaries(lambda p: np.where(p > 2 / 3, 0.8, 0.0))
    z = cbh.annulus_z(truth, gen)
    groups, names = cbh.group_labels(prop[clusters], 3)
    assert len(names) == 3 and np.bincount(groups).tolist() == pytest.approx([100, 100, 100], abs=4)
    t = cbh.z_by_group(z[:, 0], groups, names, clusters, n_boot=400, seed=1)
    assert set(t["clusters"]) == {50} or abs(t["clusters"] - 50).max() <= 2  # 150 clusters in thirds
    low, high = t[t["group"] == names[0]], t[t["group"] == names[2]]
    assert (high["z_mean_lo"] > 0.3).all() and high["z_mean"].between(0.5, 1.1).all()  # found, with its sign
    assert ((low["z_mean_lo"] < 0) & (low["z_mean_hi"] > 0)).mean() >= 5 / 6  # none where there is none
    assert 0.85 < low["z_std"].mean() < 1.2
    # exact draws and no offset: every group's interval holds 0 for most annuli, the std is about 1
    truth, gen, prop, clusters = _posterior_summaries(lambda p: 0 * p, seed=2)
    t = cbh.z_by_group(cbh.annulus_z(truth, gen)[:, 1], *cbh.group_labels(prop[clusters], 2), clusters, 400, 1)
    assert ((t["z_mean_lo"] < 0) & (t["z_mean_hi"] > 0)).mean() >= 0.8
    assert 0.85 < t["z_std"].mean() < 1.2
    # the bootstrap is over clusters: views that share their error give a wider interval than maps alone
    views = cbh.z_by_group(z[:, 0], groups, names, clusters, 400, 1)
    alone = cbh.z_by_group(z[:, 0], groups, names, np.arange(len(clusters)), 400, 1)
    assert (views["z_mean_hi"] - views["z_mean_lo"]).mean() > 1.1 * (alone["z_mean_hi"] - alone["z_mean_lo"]).mean()
    np.testing.assert_array_equal(cbh.group_labels(np.array([True, False, True]), 3)[0], [1, 0, 1])
    with pytest.raises(ValueError, match="summary_gen"):
        cbh.annulus_z(truth, gen[:, :, :1])


def test_calibration_by_halo_reads_a_runs_outputs_and_names_what_is_missing(tmp_path, capsys):
    import xarray as xr

    cbh = _load("calibration_by_halo")
    truth, gen, prop, clusters = _posterior_summaries(lambda p: 0.5 * (p > 0.5), n_clusters=40)
    run = tmp_path / "run"
    (run / "catalog").mkdir(parents=True)
    halo_id = 1000 + clusters
    ev = xr.Dataset(
        {
            "summary_sim": (("sightline", "field", "annulus"), truth),
            "summary_gen": (("sightline", "sample", "field", "annulus"), gen),
        },
        coords={"field": ["gas", "dm"], "halo_id": ("sightline", halo_id)},
    )
    with pytest.raises(SystemExit, match="not a finished run"):
        cbh.main(["--results", str(run)])
    ev.to_zarr(run / "metrics" / "evaluation.zarr")
    catalog = pd.DataFrame({"halo_id": 1000 + np.arange(40), "c200m": 4 + prop, "test_only": prop > 0.9})
    catalog.to_parquet(run / "catalog" / "halos.parquet")
    with pytest.raises(SystemExit, match="no column"):
        cbh.main(["--results", str(run), "--properties", "spin"])
    assert cbh.main(["--results", str(run), "--properties", "c200m", "test_only", "--groups", "2",
                     "--n-boot", "50", "--out", str(tmp_path / "t.csv")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "80 maps of 40 clusters" in out and "| gas: c200m |" in out and "| dm: test_only |" in out
    t = pd.read_csv(tmp_path / "t.csv")
    assert set(t["property"]) == {"c200m", "test_only", "all"} and set(t["field"]) == {"gas", "dm"}
    high = t[(t["property"] == "c200m") & (t["group"] == t.loc[t["property"] == "c200m", "group"].iloc[-1])]
    assert high["z_mean"].mean() > 0.25  # the offset group, through the CLI
    catalog.iloc[:-1].to_parquet(run / "catalog" / "halos.parquet")
    with pytest.raises(SystemExit, match="not in the catalogue"):
        cbh.main(["--results", str(run), "--properties", "c200m"])
