"""Analytic checks of massmaps.data.profiles (docs/physics.md section 10)."""

import numpy as np
import pytest
from scipy.integrate import quad

from massmaps import constants as C
from massmaps.data import profiles as P

X_REF = np.array([0.1, 0.5, 1.0, 2.0, 5.0])


def test_projected_nfw_reference_values():
    # docs/physics.md section 10.2, rho_s = r_s = 1.
    two_f = np.array([4.057176, 1.388512, 0.666667, 0.263600, 0.060039])
    four_pi_g = np.array([0.157958, 1.688890, 3.856026, 7.597625, 15.027195])
    # The reference values carry six decimals.
    np.testing.assert_allclose(P.nfw_sigma(X_REF, 1.0, 1.0), two_f, rtol=0, atol=6e-7)
    np.testing.assert_allclose(P.nfw_mass_2d(X_REF, 1.0, 1.0), four_pi_g, rtol=0, atol=6e-7)


def test_projected_nfw_against_quadrature_and_continuity():
    rho_s, r_s = 2.5e15, 0.3
    R = np.array([0.01, 0.1, 0.2999, 0.3, 0.3001, 0.9, 3.0])
    direct = [2 * quad(lambda l: P.nfw_density(np.hypot(r, l), rho_s, r_s), 0, np.inf, limit=200)[0] for r in R]
    np.testing.assert_allclose(P.nfw_sigma(R, rho_s, r_s), direct, rtol=1e-7)
    # dM2D/dR = 2 pi R Sigma across x = 1, where the formula switches branch.
    x = np.linspace(0.99, 1.01, 2001)
    dg = np.gradient(P.nfw_g(x), x)
    np.testing.assert_allclose(dg, x * P.nfw_f(x), rtol=1e-5)


def test_lambert_w_inverse_cdf():
    c = 7.3
    u = np.concatenate([np.geomspace(1e-8, 1, 200), 1 - np.geomspace(1e-12, 1e-2, 20)])
    x = P.nfw_inverse_cdf(u, c)
    assert np.max(np.abs(P.nfw_mu(x) / P.nfw_mu(c) - u)) < 1e-10
    assert P.nfw_inverse_cdf(1.0, c) == pytest.approx(c, rel=1e-10)


def test_arnaud10_I_and_Ysph():
    assert P.arnaud10_I(1.0) == pytest.approx(0.6145, rel=1e-3)
    assert P.arnaud10_I(5.0) == pytest.approx(1.1037, rel=1e-3)
    rho_c = 1.35993e11
    for M500 in (1e14, 3e14, 1e15):
        R500 = np.cbrt(3 * M500 / (4 * np.pi * 500 * rho_c))
        prof = P.Arnaud10Pressure(M500, R500)
        assert P.y_spherical(R500, prof) == pytest.approx(P.arnaud10_Ysph_R500(M500), rel=0.01)


def test_arnaud10_debias_and_types():
    p = P.Arnaud10Pressure.debiased(4e14, 1.1, b=0.2, kind="cool_core")
    assert p.M500 == pytest.approx(3.2e14)
    assert p.R500 == pytest.approx(1.1 * 0.8 ** (1 / 3))
    # At the pivot mass and x where alpha'_p vanishes only alpha_p acts; at M500 = 3e14 the mass term is 1.
    u = P.Arnaud10Pressure(3e14, 1.0)
    assert u(0.5) == pytest.approx(
        1.65e-3 * 8.403 / (1.177 * 0.5) ** 0.3081 / (1 + (1.177 * 0.5) ** 1.051) ** ((5.4905 - 0.3081) / 1.051)
    )
    # Cool-core profiles are more peaked than disturbed ones.
    cc, md = P.Arnaud10Pressure(3e14, 1.0, kind="cool_core"), P.Arnaud10Pressure(3e14, 1.0, kind="disturbed")
    assert cc(0.02) > u(0.02) > md(0.02)
    with pytest.raises(ValueError, match="universal"):
        P.Arnaud10Pressure(3e14, 1.0, kind="nope")(0.5)


def test_y_los_against_spherical_Y():
    # Y_cyl(<R_max) = Y_sph(<R_max) when the LOS integral is cut at r_max = R_max.
    prof = P.Arnaud10Pressure(3e14, 0.9)
    r_max = 4.5
    R = np.geomspace(1e-4, r_max * (1 - 1e-9), 800)
    y = P.y_los(R, prof, r_max)
    Ycyl = np.trapezoid(2 * np.pi * R * y, R)
    assert Ycyl == pytest.approx(P.y_spherical(r_max, prof), rel=2e-3)
    # Direct quadrature at one radius.
    Rq = 0.3
    direct = (
        2 * C.Y_COEFF_PER_KEV_CM3_MPC * quad(lambda r: prof(r) * r / np.sqrt(r * r - Rq * Rq), Rq, r_max, limit=400)[0]
    )
    assert P.y_los(Rq, prof, r_max)[0] == pytest.approx(direct, rel=1e-6)


def test_battaglia_profiles():
    rho_c, f_b = 1.35993e11, 0.15
    g = P.Battaglia16GasDensity(M200c=1e14, R200c=0.853, rho_crit=rho_c, f_b=f_b)
    x = 0.37
    y = x / 0.5
    assert g(x * 0.853) == pytest.approx(f_b * rho_c * 4e3 * y**-0.2 * (1 + y**0.88) ** (-(3.83 - 0.2) / 0.88))
    b12 = P.Battaglia12Pressure(M200c=6.79e14, R200c=1.813, rho_crit=rho_c, f_b=f_b)
    # P200 by hand in cgs: G M 200 rho_c f_b / (2 R).
    M_g, R_cm = 6.79e14 * C.MSUN_G, 1.813 * C.MPC_CM
    P200 = C.G_CGS * M_g * 200 * rho_c * C.MSUN_PER_MPC3_IN_G_PER_CM3 * f_b / (2 * R_cm) / C.KEV_ERG
    assert b12.P200 == pytest.approx(P200, rel=1e-4)
    # B12 is 0.7-0.95 of A10 at the true mass inside R500 (docs/physics.md section 4).
    a10 = P.Arnaud10Pressure(4.64e14, 1.177)
    ratio = b12(np.array([0.3, 0.6, 1.0]) * 1.177) / a10(np.array([0.3, 0.6, 1.0]) * 1.177)
    assert np.all((ratio > 0.6) & (ratio < 1.05))


def test_dk14_pieces():
    assert P.dk14_truncation_radius(2.0, 1.0) == pytest.approx(2 * 1.72)
    assert P.f_trans(1.0, 1.0) == pytest.approx(2.0**-2)
    # colossus caps the outer term at max_rho: delta_m(0) = 1000 * norm, and delta_m(5 R200m) = norm / (1 + 1e-3).
    assert P.delta_m_outer(0.0, 1.5) == pytest.approx(1000.0)
    assert P.delta_m_outer(7.5, 1.5) == pytest.approx(1 / 1.001)


def test_enclosed_mass_table_nfw():
    rho_s, r_s = 1e15, 0.25
    r, M = P.enclosed_mass_table(lambda r: P.nfw_density(r, rho_s, r_s), 1e-3, 12.5, 2000)
    assert r[0] == 0 and M[0] == 0 and np.all(np.diff(M) > 0)
    exact = P.nfw_enclosed_mass(r[1:], rho_s, r_s)
    # The power-law head inside r_min is good to ~0.1% of the (tiny) inner mass; the trapezoid in ln r
    # to ~1e-5 beyond 0.01 Mpc; the table is good to 1e-6 of the total everywhere.
    np.testing.assert_allclose(M[1:], exact, rtol=2e-3)
    far = r[1:] > 0.01
    np.testing.assert_allclose(M[1:][far], exact[far], rtol=3e-5)
    assert np.max(np.abs(M[1:] - exact)) < 1e-6 * exact[-1]


def test_units_and_composition():
    assert C.KEV_K == pytest.approx(1.160452e7, rel=1e-6)
    assert C.Y_COEFF_PER_KEV_CM3_MPC == pytest.approx(4.017124e-3, rel=1e-5)
    assert C.PE_OVER_PTH == pytest.approx(0.5176, abs=1e-4)
    assert C.MU_E / C.MU == pytest.approx(1 / C.PE_OVER_PTH)
    # sum Z^2 n_i = mu_e n_e for H + He (m_He = 4 m_p).
    X, rho = C.X_H, 1.0
    n_H, n_He = X * rho / C.M_P_G, (1 - X) * rho / (4 * C.M_P_G)
    n_e = n_H + 2 * n_He
    assert n_H + 4 * n_He == pytest.approx(C.MU_E * n_e, rel=1e-14)
    assert rho / (C.MU * C.M_P_G) == pytest.approx(n_H + n_He + n_e, rel=1e-14)


def test_t_igm_and_apps05():
    assert P.t_igm(6.1197e9, 6.1197e9) == pytest.approx(1e4)
    assert P.t_igm(10 * 6.1197e9, 6.1197e9) == pytest.approx(1e4 * 10**0.6)
    assert P.apps05_kT(3.84e14) == pytest.approx(5.0)
