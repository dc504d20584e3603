"""Tests of the observe stage (massmaps.observe): instrument models against analytic cases, the stage over
a store (seeded per sightline), the projected X-ray temperature, and bad settings."""

import numpy as np
import pytest
from astropy import units as u
from astropy.cosmology import FlatLambdaCDM
from scipy.integrate import quad
from scipy.optimize import brentq

from massmaps import store
from massmaps.constants import KEV_ERG, T_CMB_K
from massmaps.data.particles import Cluster, ParticleSet
from massmaps.observe import instruments as inst
from massmaps.observe.observe import (
    SR_PER_ARCMIN2,
    angular_pixel_arcmin,
    band_surface_brightness,
    convolve,
    king_kernel,
    observe_tsz,
    observe_xray,
)
from massmaps.observe.spectra import band_fraction, mean_photon_energy_keV, sz_spectral_function
from massmaps.observe.stage import observe_store
from massmaps.projection.observables import XRAY_NODE_FIELDS, XRAY_NODES_KEV, project_fields, spline_weights


# ------------------------------------------------------------------------------------------- spectra and geometry
def test_sz_spectral_function_values_and_null():
    # x coth(x/2) - 4: -1.53 at 98 GHz, -0.95 at 150 GHz, +0.04 at 220 GHz, the null near 217 GHz
    assert sz_spectral_function(98) == pytest.approx(-1.53, abs=0.005)
    assert sz_spectral_function(150) == pytest.approx(-0.95, abs=0.005)
    assert sz_spectral_function(220) == pytest.approx(0.04, abs=0.005)
    assert brentq(sz_spectral_function, 200, 240) == pytest.approx(217.5, abs=0.5)
    # Rayleigh-Jeans limit: f -> -2
    assert sz_spectral_function(1.0) == pytest.approx(-2.0, abs=1e-3)


@pytest.mark.parametrize("kT", [0.5, 2.0, 8.0])
@pytest.mark.parametrize("z", [0.1, 0.5, 1.0])
def test_band_fraction_and_photon_energy_equal_direct_integrals(kT, z):
    """Against scipy's quadrature of the bremsstrahlung spectrum g T^-1/2 exp(-E / kT) (constant g)."""
    band = (0.5, 2.0)
    spectrum = lambda e: kT**-0.5 * np.exp(-e / kT)  # noqa: E731  (rest frame, per unit energy)
    total = quad(spectrum, 0, np.inf)[0]
    inside = quad(spectrum, band[0] * (1 + z), band[1] * (1 + z))[0]
    assert band_fraction(np.array([kT]), band, z)[0] == pytest.approx(inside / total, rel=1e-9)
    # observed frame: energy flux over photon flux in the band
    tau = kT / (1 + z)
    energy = quad(lambda e: np.exp(-e / tau), *band)[0]
    photons = quad(lambda e: np.exp(-e / tau) / e, *band)[0]
    assert mean_photon_energy_keV(np.array([kT]), band, z)[0] == pytest.approx(energy / photons, rel=1e-9)


def test_empty_pixels_emit_nothing():
    assert band_fraction(np.array([0.0]), (0.5, 2.0), 0.3)[0] == 0.0
    with pytest.raises(ValueError, match="0 < E1 < E2"):
        band_fraction(np.array([1.0]), (2.0, 0.5), 0.3)


@pytest.mark.parametrize("z", [0.05, 0.3, 1.0, 2.5])
def test_angular_pixel_agrees_with_astropy(z):
    cosmo = {"Om0": 0.3, "Ob0": 0.045, "H0": 70.0}
    ref = FlatLambdaCDM(H0=70, Om0=0.3, Ob0=0.045, Tcmb0=T_CMB_K)
    expected = (100 * u.kpc * ref.arcsec_per_kpc_proper(z)).to_value(u.arcmin)
    assert angular_pixel_arcmin(0.1, z, cosmo) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="redshift > 0"):
        angular_pixel_arcmin(0.1, 0.0, cosmo)


# ----------------------------------------------------------------------------------------------- instrument models
def _point_source(n=65):
    img = np.zeros((n, n))
    img[n // 2, n // 2] = 1.0
    return img


@pytest.mark.parametrize("fwhm_pix", [2.0, 4.5, 8.0])
def test_beam_on_a_point_source_has_the_given_fwhm(fwhm_pix):
    """The second moment of the beam-smoothed point source: sigma^2 + 1/12 per axis (pixel-integrated Gaussian)."""
    tsz = _point_source() * T_CMB_K * 1e6  # y = 1 in one pixel
    pix_arcmin = 0.7
    beam = inst.TSZInstrument(unit="y", beam_fwhm_arcmin=fwhm_pix * pix_arcmin)
    img = observe_tsz(tsz, beam, pix_arcmin, np.random.default_rng(0))
    r = np.arange(img.shape[0]) - img.shape[0] // 2
    assert img.sum() == pytest.approx(1.0, rel=1e-6)  # flux kept (the beam is well inside the map)
    var = (img.sum(axis=0) * r**2).sum() / img.sum()
    fwhm = np.sqrt(8 * np.log(2) * (var - 1 / 12))
    assert fwhm == pytest.approx(fwhm_pix, rel=2e-3)
    # microK at 150 GHz: the same shape times f(x) T_cmb
    dt = inst.TSZInstrument(unit="microK", frequency_GHz=150, beam_fwhm_arcmin=fwhm_pix * pix_arcmin)
    img_t = observe_tsz(tsz, dt, pix_arcmin, np.random.default_rng(0))
    np.testing.assert_allclose(img_t, img * sz_spectral_function(150) * T_CMB_K * 1e6, rtol=1e-12, atol=1e-9)


def test_white_noise_power_spectrum_is_flat_at_its_level():
    """P(k) of noise of w microK-arcmin in pixels of p arcmin is flat at w^2 (microK rad)^2."""
    w, p, n = 10.0, 0.5, 64
    noise_only = inst.TSZInstrument(unit="microK", frequency_GHz=150, noise_arcmin=w)
    rng = np.random.default_rng(1)
    maps = np.stack([observe_tsz(np.zeros((n, n)), noise_only, p, rng) for _ in range(200)])
    assert maps.std() == pytest.approx(w / p, rel=0.01)
    pix_rad = p / (180 * 60 / np.pi)
    power = np.abs(np.fft.fft2(maps)) ** 2 * pix_rad**2 / n**2
    w_rad = w / (180 * 60 / np.pi)
    assert power.mean() == pytest.approx(w_rad**2, rel=0.01)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n)))
    low, high = power.mean(axis=0)[k < 0.25].mean(), power.mean(axis=0)[k >= 0.25].mean()
    assert low / high == pytest.approx(1.0, abs=0.03)


def test_counts_have_the_expected_poisson_mean_and_variance():
    """Expected counts from the band surface brightness, area, exposure and mean photon energy, computed here
    from the photon spectrum directly; then mean and variance of the draws equal it."""
    n, kT, z, pix = 16, 3.0, 0.3, 0.4
    s_src = np.full((n, n), 2e-4)  # erg s^-1 cm^-2, source frame
    xr_inst = inst.XrayInstrument(
        output="counts", band_keV=(0.5, 2.0), effective_area_cm2=500.0, exposure_s=2e4, background_per_s_arcmin2=1e-3
    )
    # photons s^-1 cm^-2 arcmin^-2 from the spectrum: bolometric I times the photon-number integral over the band
    i_bol = 2e-4 / (4 * np.pi * (1 + z) ** 4) * SR_PER_ARCMIN2
    tau = kT / (1 + z)
    norm = quad(lambda e: np.exp(-e * (1 + z) / kT), 0, np.inf)[0]  # observed-frame energy integral
    photons = quad(lambda e: np.exp(-e * (1 + z) / kT) / (e * KEV_ERG), 0.5, 2.0)[0] / norm * i_bol
    assert tau > 0
    expected = photons * pix**2 * 500.0 * 2e4 + 1e-3 * 2e4 * pix**2
    rng = np.random.default_rng(2)
    draws = np.stack([observe_xray(s_src, np.full((n, n), kT), xr_inst, z, pix, rng) for _ in range(400)])
    assert np.all(draws == np.round(draws)) and draws.min() >= 0
    m, v = draws.mean(), draws.var()
    se = np.sqrt(expected / draws.size)
    assert abs(m - expected) < 4 * se, (m, expected)
    assert v == pytest.approx(expected, rel=0.03)
    # the surface-brightness output is the band's, with the (1 + z)^-4 dimming
    sb = observe_xray(s_src, np.full((n, n), kT), inst.XrayInstrument(), z, pix, rng)
    np.testing.assert_allclose(sb, i_bol * band_fraction(np.array([kT]), (0.5, 2.0), z)[0], rtol=1e-12)


def test_king_psf_encircled_energy_is_analytic():
    """1 - (1 + R^2 / rc^2)^(1 - slope) within radius R (XMM-Newton EPIC-pn on axis at 1 keV)."""
    core, slope, n = 3.0, 1.51, 201
    k = king_kernel(core, slope, n)
    r = np.arange(-(n - 1), n)
    rr = np.hypot(r[:, None], r[None, :])
    for R in (5.0, 15.0, 60.0):
        analytic = 1 - (1 + R**2 / core**2) ** (1 - slope)
        assert k[rr <= R].sum() == pytest.approx(analytic, abs=0.01 + 0.5 / R)
    psf_sb = convolve(_point_source(33), king_kernel(core, slope, 33))
    assert psf_sb.max() == psf_sb[16, 16]


# ----------------------------------------------------------------------------------------------------- the stage
def _clean_store(path, n=5, npix=16):
    """A store of random maps; each pixel's X-ray spectrum is gas at one temperature (its xray_kT)."""
    rng = np.random.default_rng(0)
    k = len(XRAY_NODE_FIELDS)
    maps = np.empty((n, 5 + k, npix, npix), dtype=np.float32)
    maps[:, :2] = rng.random((n, 2, npix, npix))
    maps[:, 2] = 50.0 * rng.random((n, npix, npix))  # microK
    maps[:, 3] = 1e-4 * rng.random((n, npix, npix))  # erg s-1 cm-2
    maps[:, 4] = 1.0 + 4.0 * rng.random((n, npix, npix))  # keV
    weights = spline_weights(maps[:, 4].astype(np.float64).ravel()).reshape(n, npix, npix, k)
    maps[:, 5:] = np.moveaxis(weights, -1, 1) * maps[:, 3:4]
    ids = np.arange(10, 10 + n)
    ds = store.maps_dataset(
        maps,
        fields=["gas", "dm", "tsz", "xray", "xray_kT", *XRAY_NODE_FIELDS],
        units=["1", "1", "microK", "erg s-1 cm-2", "keV"] + ["erg s-1 cm-2"] * k,
        long_names=["gas", "dm", "tsz", "xray", "kT", *XRAY_NODE_FIELDS],
        pixel_Mpc=0.4,
        sightline_coords={"sightline_id": ids, "halo_id": ids // 2},
        attrs={"config_hash": "abc", "massmaps_version": "0", "pixel_Mpc": 0.4, "npix": npix},
    )
    store.write_store(ds, path, chunk_sightlines=2)
    return ds


OBSERVE = {
    "redshift": {"kind": "uniform", "range": [0.1, 0.6]},
    "tsz": {"preset": "spt3g_150"},
    "xray": {"preset": "erosita_erass1"},
}
COSMO = {"Om0": 0.3, "Ob0": 0.045, "H0": 70.0}


def test_stage_is_seeded_per_sightline_and_keeps_the_targets(tmp_path):
    clean = _clean_store(tmp_path / "clean.zarr")
    a = observe_store(tmp_path / "clean.zarr", tmp_path / "a.zarr", OBSERVE, cosmology=COSMO, seed=3)
    b = observe_store(
        tmp_path / "clean.zarr", tmp_path / "b.zarr", OBSERVE, cosmology=COSMO, seed=3, chunk_sightlines=3
    )
    np.testing.assert_array_equal(a["maps"].values, b["maps"].values)
    np.testing.assert_array_equal(
        a["maps"].sel(field=["gas", "dm", "xray_kT"]).values, clean["maps"].sel(field=["gas", "dm", "xray_kT"]).values
    )
    z = a["redshift"].values
    assert np.all((z > 0.1) & (z < 0.6)) and np.unique(z).size == z.size
    units = dict(zip(a["field"].values, a["units"].values))
    assert units["tsz"] == "microK" and units["xray"] == "counts"
    x = a["maps"].sel(field="xray").values
    assert np.all(x == np.round(x)) and x.min() >= 0
    # a sightline's observation depends on its id and the seed alone: a store of a subset gives the same maps
    store.write_store(clean.isel(sightline=[3, 1]), tmp_path / "small.zarr")
    c = observe_store(tmp_path / "small.zarr", tmp_path / "c.zarr", OBSERVE, cosmology=COSMO, seed=3)
    np.testing.assert_array_equal(c["maps"].values, a["maps"].values[[3, 1]])
    d = observe_store(tmp_path / "clean.zarr", tmp_path / "d.zarr", OBSERVE, cosmology=COSMO, seed=4)
    assert not np.array_equal(d["maps"].sel(field="tsz").values, a["maps"].sel(field="tsz").values)


def test_stage_without_noise_is_the_smoothed_map(tmp_path):
    clean = _clean_store(tmp_path / "clean.zarr", n=1)
    obs = {"redshift": {"kind": "fixed", "value": 0.2}, "tsz": {"preset": "act_dr6_y", "noise_arcmin": 0}}
    out = observe_store(tmp_path / "clean.zarr", tmp_path / "o.zarr", obs, cosmology=COSMO, seed=0)
    pix = angular_pixel_arcmin(0.4, 0.2, COSMO)
    beam = inst.TSZInstrument(unit="y", beam_fwhm_arcmin=1.6)
    expected = observe_tsz(clean["maps"].sel(field="tsz").values[0].astype(float), beam, pix, np.random.default_rng())
    np.testing.assert_allclose(out["maps"].sel(field="tsz").values[0], expected, rtol=1e-6)
    # the X-ray map stays the clean one (preset none)
    np.testing.assert_array_equal(out["maps"].sel(field="xray").values, clean["maps"].sel(field="xray").values)
    assert out["pixel_arcmin"].values[0] == pytest.approx(pix)


def test_stage_without_the_xray_spectrum_names_store_and_field(tmp_path):
    clean = _clean_store(tmp_path / "clean.zarr", n=1)
    store.write_store(clean.sel(field=["gas", "dm", "tsz", "xray", "xray_kT"]), tmp_path / "nokT.zarr")
    with pytest.raises(ValueError, match=r"nokT.zarr.*'xray_node_0.0625keV'.*xray_spectrum.*projection.fields"):
        observe_store(tmp_path / "nokT.zarr", tmp_path / "o.zarr", OBSERVE, cosmology=COSMO, seed=0)


@pytest.mark.parametrize(
    "block, message",
    [
        ({"tsz": {"preset": "none", "beam_fwhm_arcmin": 1.0}}, "preset none .* takes no settings"),
        ({"tsz": {"preset": "act_dr6_yy"}}, "unknown preset 'act_dr6_yy'"),
        ({"tsz": {"preset": "custom", "unit": "microK"}}, "needs frequency_GHz"),
        ({"xray": {"preset": "custom", "output": "counts"}}, "effective_area_cm2 > 0"),
        ({"xray": {"preset": "xmm_pn", "psf": {"shape": "king", "slope": 0.5}}}, "slope > 1"),
        ({"xray": {"preset": "xmm_pn", "band_keV": [2.0, 0.5]}}, "0 < E1 < E2"),
        ({"redshift": {"kind": "uniform", "range": [0.5, 0.1]}}, "0 < z1 < z2"),
    ],
)
def test_bad_instrument_settings_name_the_key(block, message):
    with pytest.raises(ValueError, match=message):
        inst.from_config(block)


def test_presets_build():
    for name in inst.TSZ_PRESETS:
        if name != "custom":
            assert inst.from_config({"tsz": {"preset": name}})[0] is not None
    for name in inst.XRAY_PRESETS:
        if name != "custom":
            assert inst.from_config({"xray": {"preset": name}})[1].output == "counts"
    assert inst.is_ideal({}) and not inst.is_ideal({"xray": {"preset": "xmm_pn", "output": "surface_brightness"}})
    # the ACT y preset's noise is 10 microK-arcmin at 150 GHz in y
    act = inst.from_config({"tsz": {"preset": "act_dr6_y"}})[0]
    assert act.noise_arcmin == pytest.approx(10 / (abs(sz_spectral_function(150)) * T_CMB_K * 1e6), rel=2e-3)


# ------------------------------------------------------------------------------------- projected X-ray temperature
def test_projected_temperature_is_the_emission_weighted_mean():
    n = 2
    pos = np.array([[0.01, 0.01, 0.3], [0.01, 0.01, -0.3]])
    one = np.ones(n)
    gas = ParticleSet(
        pos=pos, mass=1e12 * one, hsml=0.3 * one, density=1e14 * one, pressure_e=1e-2 * one,
        temperature_keV=np.array([2.0, 6.0]), xray_emissivity=np.array([1e-25, 3e-25]),
    )  # fmt: skip
    dm = ParticleSet(pos=pos, mass=1e12 * one, hsml=0.3 * one)
    out = project_fields(Cluster(dm=dm, gas=gas), None, 2, npix=8, pixel_Mpc=0.2, fields=("xray_kT", "tsz"))
    kT = out["xray_kT"]
    lit = kT > 0
    np.testing.assert_allclose(kT[lit], (2.0 * 1 + 6.0 * 3) / 4, rtol=1e-12)
    assert set(out) == {"xray_kT", "tsz"} and not lit.all()  # pixels the kernels miss stay 0
    # the other maps are the same bytes with or without the temperature
    ref = project_fields(Cluster(dm=dm, gas=gas), None, 2, npix=8, pixel_Mpc=0.2, fields=("tsz",))
    np.testing.assert_array_equal(ref["tsz"], out["tsz"])
    assert band_surface_brightness(np.ones((2, 2)), np.zeros((2, 2)), (0.5, 2), 0.3).sum() == 0


def test_spline_weights_interpolate_the_band_and_sum_to_one():
    nodes = np.array(XRAY_NODES_KEV)
    np.testing.assert_allclose(spline_weights(nodes), np.eye(nodes.size), atol=1e-12)  # a node is itself
    w = spline_weights(np.array([0.0, 0.01, 0.0625, 0.3, 3.3, 64.0, 200.0]))
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(w[0], w[2])  # clamped to the end nodes
    np.testing.assert_array_equal(w[-1], w[-2])
    # above 0.5 keV the band fraction and the photon rate of any band and redshift interpolate within 0.6%
    kT = np.geomspace(0.5, 40.0, 300)
    for band in ((0.2, 2.3), (0.5, 2.0), (0.5, 7.0)):
        for z in (0.05, 0.3, 1.0):
            f, f_nodes = band_fraction(kT, band, z), band_fraction(nodes, band, z)
            np.testing.assert_allclose(spline_weights(kT) @ f_nodes, f, rtol=6e-3)
            rate = f / mean_photon_energy_keV(kT, band, z)
            rate_nodes = f_nodes / mean_photon_energy_keV(nodes, band, z)
            np.testing.assert_allclose(spline_weights(kT) @ rate_nodes, rate, rtol=6e-3)


def test_xray_spectrum_gives_the_band_of_every_particle():
    """On a mock cluster, the band brightness and photon rate from the spectrum's node maps equal the
    projection of each particle's own band emission within 1% in every pixel above 1% of the peak; the
    emission-weighted temperature alone is several times further off. The nodes sum to the bolometric map."""
    import dataclasses

    from _halos import halo_row

    from massmaps.data import mock
    from massmaps.observe.observe import band_photon_brightness

    cl = mock.make_cluster(halo_row(4e14, s=0.6, q=0.8, seed=1))
    grid = {"npix": 16, "pixel_Mpc": 0.8}
    maps = project_fields(cl, None, 2, fields=("xray", "xray_kT", "xray_spectrum"), **grid)
    node_maps = np.stack([maps[f] for f in XRAY_NODE_FIELDS])
    np.testing.assert_allclose(node_maps.sum(axis=0), maps["xray"], rtol=1e-9, atol=1e-12 * maps["xray"].max())
    eps, kT = cl.gas.xray_emissivity, cl.gas.temperature_keV
    band, z = (0.5, 2.0), 0.3

    def exact(per_particle):
        gas = dataclasses.replace(cl.gas, xray_emissivity=eps * per_particle)
        return project_fields(dataclasses.replace(cl, gas=gas), None, 2, fields=("xray",), **grid)["xray"]

    dimming = 4 * np.pi * (1 + z) ** 4 / SR_PER_ARCMIN2
    exact_sb = exact(band_fraction(kT, band, z)) / dimming
    exact_photons = exact(band_fraction(kT, band, z) / (mean_photon_energy_keV(kT, band, z) * KEV_ERG)) / dimming
    bright = exact_sb >= 0.01 * exact_sb.max()
    nodes = np.array(XRAY_NODES_KEV)
    for exact_map, fn in ((exact_sb, band_surface_brightness), (exact_photons, band_photon_brightness)):
        spectrum = fn(node_maps, nodes, band, z)
        single = fn(maps["xray"], maps["xray_kT"], band, z)
        err = np.abs(spectrum / exact_map - 1)[bright].max()
        err_single = np.abs(single / exact_map - 1)[bright].max()
        assert err < 0.01, err
        assert err_single > 3 * err, (err_single, err)


# --------------------------------------------------------------------------------- sky random field and high-pass
def test_sky_random_field_has_the_tabulated_power(tmp_path):
    """The flat-sky power of the drawn field, averaged in ell bins, equals the table's C_ell."""
    from massmaps.observe.observe import gaussian_random_field, load_cl

    ell = np.linspace(2, 40000, 4000)
    cl = 1e-3 * (ell / 3000.0) ** -2.5 + 2e-5  # microK^2, a falling spectrum with a floor
    table = tmp_path / "cl.txt"
    np.savetxt(table, np.column_stack([ell, cl]), header="ell C_ell")
    n, p = 64, 0.5
    rng = np.random.default_rng(5)
    maps = np.stack([gaussian_random_field(*load_cl(str(table)), n, p, rng) for _ in range(300)])
    pix_rad = p / (180 * 60 / np.pi)
    power = (np.abs(np.fft.fft2(maps)) ** 2 * pix_rad**2 / n**2).mean(axis=0)
    f = np.fft.fftfreq(n)
    ell_grid = 2 * np.pi * np.hypot(f[:, None], f[None, :]) / pix_rad
    for lo, hi in ((1000, 3000), (3000, 8000), (8000, 20000)):
        sel = (ell_grid >= lo) & (ell_grid < hi)
        expected = np.interp(ell_grid[sel], ell, cl).mean()
        assert power[sel].mean() == pytest.approx(expected, rel=0.05), (lo, hi)
    bad = tmp_path / "bad.txt"
    bad.write_text("100 1\n50 2\n")
    with pytest.raises(ValueError, match=r"bad.txt: sky_cl_file: expected finite values, ell increasing"):
        load_cl(str(bad))


def test_highpass_transfer_is_one_half_at_its_multipole():
    from massmaps.observe.observe import highpass

    n, p = 64, 1.0
    pix_rad = p / (180 * 60 / np.pi)
    x = np.arange(n)
    for m in (2, 8, 20):  # a pure mode of m cycles across the map
        mode = np.cos(2 * np.pi * m * x / n)[None, :] * np.ones((n, 1))
        ell = 2 * np.pi * (m / n) / pix_rad
        out = highpass(mode, ell, p)
        np.testing.assert_allclose(out, 0.5 * mode, atol=1e-12)
    assert abs(highpass(np.ones((n, n)) + mode, 100.0, p).mean()) < 1e-12  # the mean goes


def test_shipped_cmb_spectrum_is_the_primary_cmb():
    """config/spectra/cmb_tt_lensed.txt loads as a sky_cl_file and has the primary CMB's first acoustic peak
    (D_ell ~ 5000 microK^2 near ell 220) and its damping tail; a field drawn from it over a 48 arcmin map
    (12.8 Mpc at z = 0.3) has the rms the table's C_ell gives over the map's multipoles."""
    from pathlib import Path

    from massmaps.observe.observe import gaussian_random_field, load_cl

    ell, cl = load_cl(str(Path(__file__).resolve().parents[1] / "config" / "spectra" / "cmb_tt_lensed.txt"))
    d_ell = ell * (ell + 1) * cl / (2 * np.pi)
    assert 200 <= ell[np.argmax(d_ell)] <= 240 and 4000 < d_ell.max() < 6500
    assert d_ell[ell == 3000][0] < 0.05 * d_ell.max() and ell[-1] >= 10000
    n, p = 32, 1.5
    rng = np.random.default_rng(1)
    rms = np.std([gaussian_random_field(ell, cl, n, p, rng) for _ in range(200)])
    pix_rad = p / (180 * 60 / np.pi)
    f = np.fft.fftfreq(n)
    ell_grid = 2 * np.pi * np.hypot(f[:, None], f[None, :]) / pix_rad
    grid_cl = np.interp(ell_grid, ell, cl, left=0.0, right=0.0)
    grid_cl[0, 0] = 0.0
    assert rms == pytest.approx(np.sqrt(grid_cl.sum() / (n * pix_rad) ** 2), rel=0.05)
    assert 20 < rms < 200  # microK: the primary CMB on sub-degree scales
