"""Wendland C2 kernel, column kernel and corner tables (docs/physics.md sections 7 and 10.4)."""

import math

import numpy as np
import pytest
from scipy import integrate

from massmaps.projection import kernels as K

# docs/physics.md section 7: F(s) to six decimals
F_CHECKS = [
    (0.0, 2.228169),
    (0.1, 2.072352),
    (0.25, 1.451194),
    (0.5, 0.408992),
    (0.75, 0.027195),
    (0.9, 0.000538),
]


@pytest.mark.parametrize("s, expected", F_CHECKS)
def test_column_kernel_reference_values(s, expected):
    assert K.column_kernel(s) == pytest.approx(expected, abs=6e-7)
    assert K.column_kernel_unit(s) == pytest.approx(float(K.column_kernel(s)), rel=1e-13, abs=1e-16)


def test_column_kernel_centre_is_seven_over_pi():
    assert K.column_kernel(0.0) == pytest.approx(7.0 / math.pi, rel=1e-14)
    assert K.F0 == 7.0 / math.pi


def test_column_kernel_is_line_of_sight_integral_of_w():
    def w(r):
        return K.KERNEL_NORM_3D * (1 - r) ** 4 * (1 + 4 * r) if r < 1 else 0.0

    for s in [0.0, 0.05, 0.3, 0.6, 0.95, 0.999]:
        zmax = math.sqrt(1 - s * s)
        direct = 2 * integrate.quad(lambda z: w(math.hypot(s, z)), 0, zmax, epsabs=1e-15)[0]
        # closed form: round-off cancellation near s = 1 leaves ~1e-15 absolute
        assert K.column_kernel(s) == pytest.approx(direct, rel=1e-11, abs=1e-14)


def test_column_kernel_vanishes_outside_support():
    assert np.all(K.column_kernel([1.0, 1.5, 10.0]) == 0.0)
    assert K.column_kernel_unit(1.0) == 0.0


def test_normalisations():
    two_d = integrate.quad(lambda s: 2 * math.pi * s * K.column_kernel(s), 0, 1, epsabs=1e-14)[0]
    assert two_d == pytest.approx(1.0, abs=1e-10)
    three_d = integrate.quad(lambda r: 4 * math.pi * r * r * K.wendland_c2(r, 1.0), 0, 1)[0]
    assert three_d == pytest.approx(1.0, abs=1e-12)
    # with a physical support radius: int W d^3r = 1 and int W2D d^2R = 1
    H = 2.7
    assert integrate.quad(lambda r: 4 * math.pi * r * r * K.wendland_c2(r, H), 0, H)[0] == pytest.approx(1.0, abs=1e-12)
    assert integrate.quad(lambda R: 2 * math.pi * R * K.projected_kernel(R, H), 0, H, epsabs=1e-14)[0] == pytest.approx(
        1.0, abs=1e-10
    )


def test_wendland_values():
    assert K.wendland_c2(0.0, 1.0) == pytest.approx(21 / (2 * math.pi))
    assert K.wendland_c2(0.5, 2.0) == pytest.approx(21 / (2 * math.pi * 8) * 0.75**4 * 2.0)
    assert K.wendland_c2(2.0, 2.0) == 0.0
    assert K.w3d_unit(0.25) == pytest.approx(float(K.wendland_c2(0.25, 1.0)), rel=1e-15)


def test_marginal_is_integral_of_column_kernel():
    for x in [0.0, 0.2, 0.55, 0.9]:
        ymax = math.sqrt(1 - x * x)
        direct = 2 * integrate.quad(lambda y: K.column_kernel(math.hypot(x, y)), 0, ymax)[0]
        assert K.marginal_1d(x) == pytest.approx(direct, rel=1e-10)
    assert integrate.quad(K.marginal_1d, -1, 1)[0] == pytest.approx(1.0, abs=1e-13)


def test_marginal_cdf_endpoints_exact():
    assert K.marginal_cdf(-1.0) == 0.0
    assert K.marginal_cdf(1.0) == 1.0
    assert K.marginal_cdf(0.0) == 0.5
    u = np.linspace(-1, 1, 11)
    direct = [integrate.quad(K.marginal_1d, -1, ui)[0] for ui in u]
    np.testing.assert_allclose(K.marginal_cdf(u), direct, atol=1e-13)
    assert K.half_cdf_unit(0.3) == pytest.approx(float(K.marginal_cdf(0.3)) - 0.5, rel=1e-15)


def test_corner_table_identities():
    assert K.corner(1.0, 1.0) == 1.0
    assert K.corner(0.0, 0.0) == pytest.approx(0.25, abs=1e-15)
    v = np.linspace(-1, 1, 17)
    np.testing.assert_allclose(K.corner(-1.0, v), 0.0, atol=1e-9)
    np.testing.assert_allclose(K.corner(v, -1.0), 0.0, atol=1e-9)
    np.testing.assert_allclose(K.corner(1.0, v), K.marginal_cdf(v), atol=1e-9)
    rng = np.random.default_rng(3)
    u, w = rng.uniform(-1, 1, (2, 50))
    np.testing.assert_allclose(K.corner(u, w), K.corner(w, u), atol=1e-15)
    # point symmetry of the kernel: C(-u, -v) = 1 - M(u) - M(v) + C(u, v)
    np.testing.assert_allclose(K.corner(-u, -w), 1 - K.marginal_cdf(u) - K.marginal_cdf(w) + K.corner(u, w), atol=1e-12)


@pytest.mark.parametrize("u, v", [(0.3, 0.4), (-0.2, 0.7), (0.85, -0.1)])
def test_corner_against_direct_integration(u, v):
    def f(y, x):
        return K.column_kernel(math.hypot(x, y))

    direct = integrate.dblquad(f, -1, u, lambda x: -1.0, lambda x: v, epsabs=1e-12, epsrel=1e-12)[0]
    assert K.corner(u, v) == pytest.approx(direct, abs=2e-9)


def test_correction_table_matches_bicubic_and_vanishes_on_edges():
    kt = K.correction_table()
    n = kt.shape[0] - 1
    assert kt.dtype == np.float32
    assert np.all(kt[n, :] == 0) and np.all(kt[:, n] == 0) and np.all(kt[0, :] == 0)
    assert np.abs(kt).max() < 1.5e-3
    rng = np.random.default_rng(5)
    u, v = rng.uniform(-1, 1, (2, 400))
    exact = K.corner(u, v) - K.marginal_cdf(u) * K.marginal_cdf(v)
    approx = np.array([K.correction_bilinear(*K.fold_linear(a, n), *K.fold_linear(b, n), kt) for a, b in zip(u, v)])
    np.testing.assert_allclose(approx, exact, atol=1.6e-7)


def test_column_kernel_table():
    s, f = K.column_kernel_table(1000)
    assert s.size == 1001 and f[0] == pytest.approx(7 / math.pi)
    with pytest.raises(ValueError, match="n >= 1000"):
        K.column_kernel_table(100)


def test_correction_modes_reproduce_the_correction():
    # K(u, v) = sum_r s_r phi_r(u) phi_r(v): within 2e-8 of K on the table's nodes at rank 7, zero on
    # the edges u = 0 and u = 1, float32 values (the same bytes however LAPACK runs), and the same
    # bytes when recomputed
    modes = K.correction_modes()
    n = K.CORRECTION_MODES_SIZE
    assert modes.shape == (n + 2, K.CORRECTION_MODES + 1) and not modes.flags.writeable
    phi, signs = modes[: n + 1], modes[n + 1]
    assert signs[0] == 1.0 and set(np.abs(signs[1:])) == {1.0}
    assert np.all(phi[:, 0] == 0.0) and np.all(phi[0] == 0.0) and np.all(phi[n] == 0.0)
    assert np.array_equal(phi, phi.astype(np.float32))
    recon = (phi * signs) @ phi.T
    exact = K._correction_nodes(n)
    assert np.abs(recon - exact).max() < 2e-8
    # fewer modes are worse: the rank is what buys the accuracy
    low = K.correction_modes(n, 4)
    assert np.abs((low[: n + 1] * low[n + 1]) @ low[: n + 1].T - exact).max() > 1e-7
    K.correction_modes.cache_clear()
    assert K.correction_modes().tobytes() == modes.tobytes()
    with pytest.raises(ValueError, match="rank"):
        K.correction_modes(8, 0)
