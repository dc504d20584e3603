"""The evaluation driver on synthetic stores: exact answers where the posterior mean is the truth."""

import numpy as np
import pytest
import xarray as xr

from massmaps.evaluation import evaluate, metrics, tables

NPIX, PIXEL = 32, 0.4


def _stores(n_maps=6, n_samples=8, noise=0.0, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    u = (np.arange(NPIX) + 0.5) * PIXEL - NPIX * PIXEL / 2
    r = np.hypot(u[:, None], u[None, :])
    mass = np.geomspace(2.5e14, 9e14, n_maps)
    base = np.stack([(m / 3e14) * 50 / (1 + (r / 0.5) ** 2) + 1 for m in mass])  # (map, y, x)
    bumps = 1 + 0.2 * rng.normal(size=(n_maps, 4, NPIX, NPIX))
    truth = base[:, None] * bumps  # gas, dm, tsz, xray
    maps = xr.Dataset(
        {"maps": (("sightline", "field", "y", "x"), truth.astype(np.float32))},
        coords={
            "sightline": np.arange(n_maps),
            "sightline_id": ("sightline", np.arange(n_maps) + 100),
            "field": np.array(["gas", "dm", "tsz", "xray"], dtype=object),
            "y": u,
            "x": u,
        },
        attrs={"pixel_Mpc": PIXEL, "config_hash": "test"},
    )
    target = truth[:, :2] * scale
    samples = target[:, None] + noise * rng.normal(size=(n_maps, n_samples, 2, NPIX, NPIX))
    smp = xr.Dataset(
        {
            "samples": (("sightline", "sample", "field", "y", "x"), samples),
            "mean": (("sightline", "field", "y", "x"), samples.mean(axis=1)),
            "std": (("sightline", "field", "y", "x"), samples.std(axis=1, ddof=1)),
        },
        coords={
            "sightline": np.arange(n_maps),
            "sightline_id": ("sightline", np.arange(n_maps) + 100),
            "halo_id": ("sightline", np.arange(n_maps)),
            "M200m_Msun": ("sightline", mass),
            "field": np.array(["gas", "dm"], dtype=object),
        },
        attrs={"sampler": "test"},
    )
    return smp, maps


def test_perfect_posterior_mean():
    smp, maps = _stores(noise=1e-6)
    ev = evaluate.evaluate(smp, maps, {"chunk_sightlines": 4})
    np.testing.assert_allclose(ev["b"], 1.0, atol=1e-5)
    np.testing.assert_allclose(ev["r"], 1.0, atol=1e-8)
    np.testing.assert_allclose(ev["mass_error"], 0.0, atol=1e-6)
    np.testing.assert_allclose(ev["profile_gen"], ev["profile_sim"], rtol=1e-5)
    assert ev["k"].attrs["units"] == "h/Mpc"
    assert ev["k"].values[0] == pytest.approx(0.701, abs=1e-3)
    assert list(ev["mass_bin"].values) == ["low"] * 4 + ["high"] * 2  # 2.5e14 .. 9e14, geometric
    t = tables.table1(ev)
    assert set(t["mass_bin"]) == {"low", "high", "all"} and len(t) == 3 * 2 * 2 * 2
    np.testing.assert_allclose(t.loc[t["statistic"] == "r", "mean"], 1.0, atol=1e-8)
    paper = t[(t["mass_bin"] == "high") & (t["field"] == "dm") & (t["statistic"] == "b") & (t["scale"] == "small")]
    assert paper["paper_mean"].iloc[0] == 0.888
    # the perfect mean beats the baselines (the noisy inputs) at every k
    m = tables.baseline_margins(ev)
    assert (m["margin"] > 0).all()
    md = tables.table1_markdown(t)
    assert "| high | DM |" in md and "1.000 +0.000/-0.000" in md
    assert r"\begin{tabular}" in tables.table1_latex(t)


def test_scaled_mean_and_noise():
    smp, maps = _stores(noise=0.5, scale=1.1, n_samples=20)
    ev = evaluate.evaluate(smp, maps)
    # b is the amplitude ratio where the signal dominates the noise of the 20-sample mean
    assert np.median(ev["b"].values[..., :3]) == pytest.approx(1.1, rel=0.02)
    np.testing.assert_allclose(ev["mass_error"], 0.1, atol=0.01)
    # samples are independent: the variance ratio follows 2/N
    n = ev["n_samples"].values
    assert np.mean(ev["V_ratio"].values.mean(axis=(0, 2)) * n / 2) == pytest.approx(1.0, abs=0.1)
    # z = (truth - mean) / std, the fractions inside 1 and 2 sigma recomputed here from the stores
    assert ev["z_pixels"].values.tolist() == [6 * NPIX * NPIX] * 2
    truth = maps["maps"].values[:, :2]
    z = (truth - smp["mean"].values) / smp["std"].values
    for i, f in enumerate(["gas", "dm"]):
        want = [np.mean(np.abs(z[:, i]) < 1), np.mean(np.abs(z[:, i]) < 2)]
        np.testing.assert_allclose(ev["z_fraction"].sel(field=f).values, want, rtol=1e-12)
        assert want[1] - want[0] > 0.05  # the two thresholds tell different pixels apart
        assert ev["z_sum"].sel(field=f).values.sum() < 0  # the samples are 10% too high: mean z < 0
    s = tables.summary(ev)
    assert s["fields"]["gas"]["high"]["mass_error"]["median"] == pytest.approx(0.1, abs=0.01)


def test_mass_bins_and_errors():
    labels = evaluate.mass_bin_labels([1e14, 2e14, 6e14, 1e15, 2e15], {"low": [2e14, 6e14], "high": [6e14, 1e15]})
    assert labels.tolist() == ["", "low", "high", "high", ""]
    with pytest.raises(ValueError, match="overlap"):
        evaluate.mass_bin_labels([3e14], {"a": [1e14, 5e14], "b": [2e14, 6e14]})
    with pytest.raises(ValueError, match="unknown evaluation key"):
        evaluate.EvalConfig.from_mapping({"k_spilt": 2})
    smp, maps = _stores(n_samples=1)
    with pytest.raises(ValueError, match="at least 2"):
        evaluate.evaluate(smp, maps)
    smp, maps = _stores()
    with pytest.raises(ValueError, match="lacks"):
        evaluate.evaluate(smp.assign_coords(sightline_id=("sightline", np.arange(6) + 999)), maps)


def test_no_named_bin_falls_back_to_all():
    smp, maps = _stores()
    ev = evaluate.evaluate(smp, maps, {"mass_bins": {"huge": [1e16, 2e16]}})
    table = tables.table1(ev)
    assert set(table["mass_bin"]) == {"huge", "all"} and tables.empty_bins(ev) == ["huge"]
    assert (table.loc[table["mass_bin"] == "huge", "n"] == 0).all()  # shown empty, not dropped
    assert "| huge | Gas | 0 | - |" in tables.table1_markdown(table)
    assert metrics.converged_n(ev["V_ratio"].sel(field="gas").mean("sightline").values) is None  # 8 samples


def test_linear_baselines_exact_cases():
    """An input that is a scaled copy of a target has r = 1 at every k; independent fields have r near 0;
    maps are grouped by the mass bins, 'all' holding every map."""
    _, maps = _stores(n_maps=8, seed=3)
    arr = maps["maps"].values.copy()
    arr[:, 2] = 3.0 * arr[:, 0] + 7.0  # tSZ = a * gas + c: r(tSZ, gas) = 1 at every k > 0
    rng = np.random.default_rng(5)
    arr[:, 3] = rng.normal(size=arr[:, 3].shape)  # X-ray independent of everything
    mass = np.geomspace(2.5e14, 9e14, 8)
    maps = maps.assign(maps=(maps["maps"].dims, arr)).assign_coords(M200m_Msun=("sightline", mass))
    per_k, per_scale = evaluate.linear_baselines(maps, {})
    assert set(per_k["mass_bin"]) == {"low", "high", "all"}
    assert (per_k.loc[per_k["mass_bin"] == "all", "n_maps"] == 8).all()
    sz_gas = per_k[(per_k["input"] == "tsz") & (per_k["target"] == "gas")]
    np.testing.assert_allclose(sz_gas["mean"], 1.0, atol=1e-6)
    x_gas = per_scale[
        (per_scale["input"] == "xray") & (per_scale["target"] == "gas") & (per_scale["mass_bin"] == "all")
    ]
    assert (x_gas["mean"].abs() < 0.15).all(), x_gas
    sz_dm = per_scale[(per_scale["input"] == "tsz") & (per_scale["target"] == "dm")]
    # the shared profile correlates on large scales, the independent bumps decorrelate small ones
    assert (sz_dm.loc[sz_dm["scale"] == "large", "mean"] > 0.95).all()
    assert (sz_dm.loc[sz_dm["scale"] == "small", "mean"] < 0.8).all()
    with pytest.raises(ValueError, match="xray"):
        evaluate.linear_baselines(maps.sel(field=["gas", "dm", "tsz"]), {})


@pytest.mark.parametrize("where", ["samples", "dataset", "baselines"])
def test_non_finite_values_fail_naming_the_sightline(where):
    """A NaN map or sample fails the evaluation and the baselines, naming the source and the sightline,
    instead of being dropped from Table 1's means."""
    smp, maps = _stores()
    if where == "samples":
        smp["samples"][3, 1, 0, 2, 2] = np.nan
    else:
        maps["maps"][3, 2, 5, 5] = np.nan
    sources = {"samples": "s.zarr", "dataset": "d.zarr"}
    with pytest.raises(ValueError) as err:
        if where == "baselines":
            evaluate.linear_baselines(maps, source="d.zarr")
        else:
            evaluate.evaluate(smp, maps, sources=sources)
    message = str(err.value)
    assert "first sightline_id 103" in message and ("s.zarr" if where == "samples" else "d.zarr") in message, message
