import numpy as np
import pytest

from massmaps.evaluation import metrics


def test_pixel_correlation_known_cases():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 16, 16))
    np.testing.assert_allclose(metrics.pixel_correlation(a, 3 * a + 2), 1.0)
    np.testing.assert_allclose(metrics.pixel_correlation(a, -a), -1.0)
    b = rng.normal(size=(200, 32, 32))
    c = rng.normal(size=(200, 32, 32))
    assert abs(metrics.pixel_correlation(b, c).mean()) < 0.01
    mix = metrics.pixel_correlation(b, b + c)  # expected 1/sqrt(2)
    assert mix.mean() == pytest.approx(2**-0.5, abs=0.01)
    assert np.isnan(metrics.pixel_correlation(np.ones((4, 4)), a[0, :4, :4]))


def test_total_mass_error_and_z():
    t = np.random.default_rng(1).uniform(1.0, 2.0, (2, 4, 4))
    np.testing.assert_allclose(metrics.total_mass_error(1.02 * t, t), 0.02)
    z = metrics.standardized_errors(t + 0.5, np.full_like(t, 0.25), t)
    np.testing.assert_allclose(z, 2.0)
    # |z| = 0.5, 1.5 and 2.5 on a third of the pixels each: 1/3 inside 1 sigma, 2/3 inside 2 sigma
    offsets = np.resize([0.5, -1.5, 2.5], t.size).reshape(t.shape) * 0.2
    s = metrics.posterior_summary({"gas": t + offsets}, {"gas": np.full_like(t, 0.2)}, {"gas": t}, {"tsz": t})
    assert s["gas"]["z_within_1sigma"] == pytest.approx(11 / 32) and s["gas"]["z_within_2sigma"] == pytest.approx(
        22 / 32
    )
    assert s["gas"]["corr_tsz_truth"]["median"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="non-finite"):
        metrics.percentiles([0.1, np.nan])


# ---- spectra: the analytic cases of issue 4 ----------------------------------------------------------


def _grf(rng, n, npix, slope, pixel=1.0):
    """Gaussian random fields with P(k) proportional to k^slope (k in 1/length, 2 pi convention)."""
    kx = 2 * np.pi * np.fft.fftfreq(npix, d=pixel)
    k = np.hypot(kx[:, None], kx[None, :])
    amp = np.zeros_like(k)
    amp[k > 0] = k[k > 0] ** (slope / 2)
    white = rng.normal(size=(n, npix, npix))
    return np.real(np.fft.ifft2(np.fft.fft2(white) * amp))


def test_kbins_paper_convention():
    kb = metrics.KBins(128, 0.1, h=0.7)
    assert kb.k_fundamental == pytest.approx(2 * np.pi / 12.8 / 0.7, rel=1e-12)
    assert kb.k_fundamental == pytest.approx(0.701, abs=5e-4)
    assert kb.centres[-1] == pytest.approx(np.pi / 0.1 / 0.7, rel=1e-12)  # Nyquist, 44.88 h/Mpc
    assert kb.centres[-1] == pytest.approx(44.88, abs=0.01)
    assert kb.n_modes[:2].sum() == 20  # the two large-scale bins (docs/physics.md section 9)
    assert kb.scale_mask(2.0, "large").sum() == 2
    # the ambiguity flags move the fundamental: 0.1 Mpc read as 0.1 Mpc/h, or no 2 pi
    assert metrics.KBins(128, 0.1, length_unit="Mpc/h").k_fundamental == pytest.approx(0.491, abs=5e-4)
    assert metrics.KBins(128, 0.1, two_pi=False).k_fundamental == pytest.approx(1 / 12.8 / 0.7)
    with pytest.raises(ValueError, match="length_unit"):
        metrics.KBins(128, 0.1, length_unit="kpc")


def test_identical_and_scaled_maps():
    rng = np.random.default_rng(1)
    kb = metrics.KBins(32, 0.4)
    sim = _grf(rng, 4, 32, -2.0, 0.4) + 3.0
    b, r = metrics.bias_and_correlation(sim, sim, kb)
    np.testing.assert_allclose(b, 1.0, rtol=1e-12)
    np.testing.assert_allclose(r, 1.0, rtol=1e-12)
    b, r = metrics.bias_and_correlation(2.5 * sim, sim, kb)
    np.testing.assert_allclose(b, 2.5, rtol=1e-12)
    np.testing.assert_allclose(r, 1.0, rtol=1e-12)
    # an added constant changes only k = 0, which is in no bin (the [0, 1] normalisation does not matter)
    b, r = metrics.bias_and_correlation(sim + 7.0, sim, kb)
    np.testing.assert_allclose(b, 1.0, rtol=1e-10)


def test_independent_fields_are_uncorrelated():
    rng = np.random.default_rng(2)
    kb = metrics.KBins(64, 0.2)
    a = _grf(rng, 200, 64, -1.5, 0.2)
    b = _grf(rng, 200, 64, -1.5, 0.2)
    _, r = metrics.bias_and_correlation(a, b, kb)
    r_mean = r.mean(axis=0)
    # each bin averages 200 maps x n_modes/2 independent modes: std of r ~ 1/sqrt(100 n_modes)
    assert np.all(np.abs(r_mean) < 4 / np.sqrt(100 * kb.n_modes))
    assert np.all(np.abs(r_mean[kb.n_modes >= 50]) < 0.05)
    # a half-correlated pair: r = 1/sqrt(2) at every k
    _, r_mix = metrics.bias_and_correlation(a + b, a, kb)
    np.testing.assert_allclose(r_mix.mean(axis=0)[kb.n_modes >= 50], 2**-0.5, atol=0.03)


def test_power_law_recovered():
    rng = np.random.default_rng(3)
    npix, pixel, slope = 64, 0.2, -2.0
    kb = metrics.KBins(npix, pixel, h=1.0)  # h = 1: bins in 1/Mpc, like the generator
    maps = _grf(rng, 300, npix, slope, pixel)
    p = metrics.power_spectrum(maps, kb).mean(axis=0)
    # white noise of unit variance per pixel has P = pixel^2; the filter multiplies it by k^slope
    expected = pixel**2 * kb.average(np.broadcast_to(_k_grid(npix, pixel) ** slope, (npix, npix)))
    # cosmic variance of a bin ~ 1/sqrt(300 n_modes / 2): about 1% where n_modes >= 40
    sel = kb.n_modes >= 40
    assert sel.sum() >= 20
    np.testing.assert_allclose(p[sel], expected[sel], rtol=0.05)
    # and the recovered slope between the bins' mean k
    fit = np.polyfit(np.log(kb.k_mean[sel]), np.log(p[sel]), 1)[0]
    assert fit == pytest.approx(slope, abs=0.05)


def _k_grid(npix, pixel):
    kx = 2 * np.pi * np.fft.fftfreq(npix, d=pixel)
    k = np.hypot(kx[:, None], kx[None, :])
    k[0, 0] = 1.0
    return k


def test_scale_average_and_offsets():
    kb = metrics.KBins(32, 0.4)
    per_k = np.tile(np.where(kb.centres < 2.0, 1.0, 3.0), (5, 1))
    np.testing.assert_allclose(metrics.scale_average(per_k, kb, 2.0, "large"), 1.0)
    np.testing.assert_allclose(metrics.scale_average(per_k, kb, 2.0, "small"), 3.0)
    with pytest.raises(ValueError, match="no k bin"):
        metrics.scale_average(per_k, kb, 100.0, "small")
    s = metrics.mean_with_offsets(np.arange(101.0))
    assert s["mean"] == 50 and s["plus"] == pytest.approx(34) and s["minus"] == pytest.approx(34)


# ---- radial profiles, convergence, z-scores ---------------------------------------------------------


def test_projected_nfw_profile_recovered():
    from massmaps.data import profiles

    npix, pixel, sub = 128, 0.1, 8
    rho_s, r_s = 1.0e15, 0.4
    # each pixel is the mean of sub x sub point values of the analytic projected NFW
    u = (np.arange(npix * sub) + 0.5) * pixel / sub - npix * pixel / 2
    fine = profiles.nfw_sigma(np.hypot(u[:, None], u[None, :]), rho_s, r_s)
    image = fine.reshape(npix, sub, npix, sub).mean(axis=(1, 3))
    edges = metrics.radial_bin_edges(6.4, 0.4)
    prof = metrics.radial_profiles(image, pixel, edges)
    m2d = np.concatenate([[0.0], profiles.nfw_mass_2d(edges[1:], rho_s, r_s)])  # M2D(0) = 0
    annulus = np.diff(m2d) / (np.pi * np.diff(edges**2))
    # pixel centres sample the steep inner profile coarsely: 1% beyond 0.8 Mpc = 2 r_s, 3% inside
    np.testing.assert_allclose(prof[2:], annulus[2:], rtol=0.01)
    np.testing.assert_allclose(prof[:2], annulus[:2], rtol=0.03)


def test_radial_profile_centre_and_empty_bins():
    img = np.zeros((4, 4))
    img[1:3, 1:3] = 1.0  # the four pixels touching the centre, at r = pixel / sqrt(2)
    prof = metrics.radial_profiles(img, 1.0, np.array([0.0, 0.5, 1.0, 2.0]))
    assert np.isnan(prof[0]) and prof[1] == 1.0 and prof[2] == 0.0
    with pytest.raises(ValueError):
        metrics.radial_bin_edges(1.0, 2.0)


def test_sample_mean_variance_is_one_over_n():
    rng = np.random.default_rng(4)
    s = rng.normal(scale=2.0, size=(3, 50, 2, 16, 16))
    v = metrics.sample_mean_variance(s)
    assert v.shape == (3, 49, 2)
    n = np.arange(2, 51)
    # E[V(N)] = sigma^2 / N; averaged over 3 maps x 2 fields x 256 pixels
    np.testing.assert_allclose(v.mean(axis=(0, 2)) * n, 4.0, rtol=0.1)
    # the last value equals the direct computation
    np.testing.assert_allclose(v[:, -1], (s.var(axis=1, ddof=1) / 50).mean(axis=(-2, -1)), rtol=1e-10)
    curve = 1.0 / n * 2  # exactly 1/N: V(N)/V(2) = 2/N <= 0.05 from N = 40
    assert metrics.converged_n(curve, 0.05) == 40
    assert metrics.converged_n(np.ones(5), 0.05) is None


def test_variance_ratio_of_independent_samples_is_two_over_n():
    rng = np.random.default_rng(6)
    s = rng.standard_t(df=3, size=(4, 50, 2, 16, 16))  # heavy tails: the first-two-samples reference would be noisy
    ratio = metrics.variance_ratio(metrics.sample_mean_variance(s))
    n = np.arange(2, 51)
    np.testing.assert_allclose(ratio[:, -1], 2 / 50)  # by construction at N = n
    np.testing.assert_allclose(ratio.mean(axis=(0, 2)) * n / 2, 1.0, atol=0.25)
