import numpy as np
import pytest

from massmaps import metrics


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
    t = np.ones((2, 4, 4))
    np.testing.assert_allclose(metrics.total_mass_error(1.02 * t, t), 0.02)
    z = metrics.standardized_errors(t + 0.5, np.full_like(t, 0.25), t)
    np.testing.assert_allclose(z, 2.0)
    s = metrics.posterior_summary({"gas": t + 0.1}, {"gas": np.full_like(t, 0.2)}, {"gas": t}, {"tsz": t})
    assert s["gas"]["z_within_1sigma"] == 1.0 and s["gas"]["z_within_2sigma"] == 1.0
    assert s["gas"]["total_mass_error"]["median"] == pytest.approx(0.1)
