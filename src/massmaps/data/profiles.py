"""Analytic radial profiles of the mock clusters (docs/physics.md sections 2, 4, 5 and 10).

Units everywhere: radii in physical Mpc, masses in Msun, mass densities in Msun/Mpc^3, pressures in
keV cm^-3 (electron pressure unless the name says otherwise), temperatures in K, z = 0. Every function is
vectorised over its radius argument.

Contents
--------
* NFW: :func:`nfw_mu`, :func:`nfw_shape`, :func:`nfw_rho_s`, :func:`nfw_density`,
  :func:`nfw_enclosed_mass`, :func:`nfw_inverse_cdf` (Lambert W).
* DK14 truncation and outer term: :func:`dk14_truncation_radius`, :func:`f_trans`, :func:`delta_m_outer`.
* Projected NFW (Bartelmann 1996; Wright & Brainerd 2000): :func:`nfw_f`, :func:`nfw_g`,
  :func:`nfw_sigma`, :func:`nfw_mass_2d`.
* Gas density: :class:`Battaglia16GasDensity`.
* Electron pressure: :class:`Arnaud10Pressure` (universal / cool-core / disturbed sets, (1-b) debias),
  :class:`Battaglia12Pressure`, :func:`arnaud10_I`, :func:`arnaud10_Ysph_R500`, :func:`apps05_kT`.
* IGM: :func:`t_igm`.
* Line-of-sight tools: :func:`y_los` (Compton y of any P_e(r)), :func:`y_spherical` (Y_sph(<R)).
* Tables: :func:`enclosed_mass_table` (M(<r) of any rho(r) for inverse-CDF sampling).

References
----------
Navarro, Frenk & White 1997, ApJ 490, 493; Diemer & Kravtsov 2014, ApJ 789, 1; Bartelmann 1996, A&A 313,
697; Wright & Brainerd 2000, ApJ 534, 34; Battaglia et al. 2016, JCAP 08, 058; Arnaud et al. 2010, A&A 517,
A92; Battaglia et al. 2012, ApJ 758, 75; Arnaud, Pointecouteau & Pratt 2005, A&A 441, 893; Hui & Gnedin
1997, MNRAS 292, 27.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import lambertw

from ..constants import (
    G_MPC_KMS2_PER_MSUN,
    KEV_ERG,
    MPC_CM,
    MSUN_G,
    PE_OVER_PTH,
    Y_COEFF_PER_KEV_CM3_MPC,
)

__all__ = [
    "A10_PARAMS",
    "Arnaud10Pressure",
    "Battaglia12Pressure",
    "Battaglia16GasDensity",
    "apps05_kT",
    "arnaud10_I",
    "arnaud10_Ysph_R500",
    "delta_m_outer",
    "dk14_truncation_radius",
    "enclosed_mass_table",
    "f_trans",
    "nfw_density",
    "nfw_enclosed_mass",
    "nfw_f",
    "nfw_g",
    "nfw_inverse_cdf",
    "nfw_mass_2d",
    "nfw_mu",
    "nfw_rho_s",
    "nfw_shape",
    "nfw_sigma",
    "t_igm",
    "y_los",
    "y_spherical",
]

# 1 Msun (km/s)^2 / Mpc^3 in keV cm^-3: the unit of G M rho / R with G in Mpc (km/s)^2 / Msun.
_MSUN_KMS2_PER_MPC3_IN_KEV_CM3 = MSUN_G * 1e10 / MPC_CM**3 / KEV_ERG


# --------------------------------------------------------------------------------------------------
# NFW
# --------------------------------------------------------------------------------------------------
def nfw_mu(x):
    """NFW mass function mu(x) = ln(1 + x) - x / (1 + x), so M(<r) = 4 pi rho_s r_s^3 mu(r / r_s)."""
    x = np.asarray(x, dtype=float)
    return np.log1p(x) - x / (1.0 + x)


def nfw_shape(x):
    """Dimensionless NFW profile 1 / [x (1 + x)^2]."""
    x = np.asarray(x, dtype=float)
    return 1.0 / (x * (1.0 + x) ** 2)


def nfw_rho_s(M: float, R: float, c: float) -> float:
    """rho_s [Msun/Mpc^3] of an NFW halo with M(<R) = M and concentration c = R / r_s."""
    r_s = R / c
    return float(M / (4.0 * np.pi * r_s**3 * nfw_mu(c)))


def nfw_density(r, rho_s: float, r_s: float):
    """NFW density rho_s / [x (1 + x)^2], x = r / r_s."""
    return rho_s * nfw_shape(np.asarray(r, dtype=float) / r_s)


def nfw_enclosed_mass(r, rho_s: float, r_s: float):
    """Untruncated NFW mass inside radius r: 4 pi rho_s r_s^3 mu(r / r_s)."""
    return 4.0 * np.pi * rho_s * r_s**3 * nfw_mu(np.asarray(r, dtype=float) / r_s)


def nfw_inverse_cdf(u, c: float):
    """x = r / r_s with mu(x) / mu(c) = u, for u in [0, 1] (untruncated NFW cut at x = c).

    Closed form x = -1 / W_0(-exp(-1 - u mu(c))) - 1 with W_0 the principal branch of Lambert W.
    """
    u = np.asarray(u, dtype=float)
    w = lambertw(-np.exp(-1.0 - u * nfw_mu(c)), 0).real
    return -1.0 / w - 1.0


# --------------------------------------------------------------------------------------------------
# DK14 truncation and outer term
# --------------------------------------------------------------------------------------------------
def dk14_truncation_radius(R200m: float, nu: float, a: float = 1.9, b: float = 0.18) -> float:
    """DK14 truncation radius r_t = (a - b nu) R200m (mass-selected calibration: a = 1.9, b = 0.18)."""
    return float((a - b * nu) * R200m)


def f_trans(r, r_t: float, beta: float = 4.0, gamma: float = 8.0):
    """DK14 transition term f_trans = [1 + (r / r_t)^beta]^(-gamma / beta)."""
    r = np.asarray(r, dtype=float)
    return (1.0 + (r / r_t) ** beta) ** (-gamma / beta)


def delta_m_outer(r, R200m: float, norm: float = 1.0, slope: float = 1.5, pivot: float = 5.0, max_rho: float = 1000.0):
    """DK14 outer power law as colossus caps it: delta_m = norm / (1 / max_rho + (r / (pivot R200m))^slope).

    This is colossus' ``OuterTermPowerLaw`` divided by rho_m (defaults: norm 1, slope 1.5, pivot 5 R200m,
    max_rho 1000), so delta_m -> norm * max_rho at the centre instead of diverging.
    """
    r = np.asarray(r, dtype=float)
    return norm / (1.0 / max_rho + (r / (pivot * R200m)) ** slope)


# --------------------------------------------------------------------------------------------------
# Projected NFW (untruncated)
# --------------------------------------------------------------------------------------------------
def _nfw_h(x):
    """h(x) = 2/sqrt(1-x^2) artanh sqrt((1-x)/(1+x)) (x<1), 1 (x=1), 2/sqrt(x^2-1) arctan sqrt((x-1)/(x+1)) (x>1).

    Series near x = 1: h = 1 - 2 (x-1)/3 + 7 (x-1)^2/15 + O((x-1)^3).
    """
    x = np.asarray(x, dtype=float)
    out = np.empty_like(x)
    lo = x < 1.0 - 1e-4
    hi = x > 1.0 + 1e-4
    mid = ~(lo | hi)
    xl = x[lo]
    out[lo] = 2.0 / np.sqrt(1.0 - xl**2) * np.arctanh(np.sqrt((1.0 - xl) / (1.0 + xl)))
    xh = x[hi]
    out[hi] = 2.0 / np.sqrt(xh**2 - 1.0) * np.arctan(np.sqrt((xh - 1.0) / (xh + 1.0)))
    e = x[mid] - 1.0
    out[mid] = 1.0 - 2.0 * e / 3.0 + 7.0 * e**2 / 15.0
    return out


def nfw_f(x):
    """Projected NFW shape f(x) with Sigma = 2 rho_s r_s f(x), x = R / r_s (f(1) = 1/3)."""
    x = np.asarray(x, dtype=float)
    near = np.abs(x - 1.0) < 1e-3
    xs = np.where(near, 2.0, x)
    f = (1.0 - _nfw_h(xs)) / (xs**2 - 1.0)
    e = x - 1.0
    # Series about x = 1 (from the series of h): f = 1/3 - 2 e / 5 + 13 e^2 / 35.
    return np.where(near, 1.0 / 3.0 - 0.4 * e + 13.0 / 35.0 * e**2, f)


def nfw_g(x):
    """Cylinder-mass shape g(x) = ln(x / 2) + h(x) with M2D(<R) = 4 pi rho_s r_s^3 g(x)."""
    x = np.asarray(x, dtype=float)
    return np.log(x / 2.0) + _nfw_h(x)


def nfw_sigma(R, rho_s: float, r_s: float):
    """Untruncated NFW surface density Sigma(R) = 2 rho_s r_s f(R / r_s) in Msun/Mpc^2."""
    return 2.0 * rho_s * r_s * nfw_f(np.asarray(R, dtype=float) / r_s)


def nfw_mass_2d(R, rho_s: float, r_s: float):
    """Untruncated NFW mass inside the cylinder of radius R: 4 pi rho_s r_s^3 g(R / r_s) in Msun."""
    return 4.0 * np.pi * rho_s * r_s**3 * nfw_g(np.asarray(R, dtype=float) / r_s)


# --------------------------------------------------------------------------------------------------
# Gas density: Battaglia et al. 2016 AGN fit (M200c, R200c; masses in Msun, no h)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Battaglia16GasDensity:
    """rho_gas(r) = f_b rho_crit rho0 (x/x_c)^g [1 + (x/x_c)^alpha]^(-(beta+g)/alpha), x = r / R200c.

    ``amplitude`` multiplies rho0 (per-cluster scatter). z = 0 only, so the (1+z) factors are 1.
    """

    M200c: float
    R200c: float
    rho_crit: float
    f_b: float
    amplitude: float = 1.0
    x_c: float = 0.5
    gamma: float = -0.2

    @property
    def rho0(self) -> float:
        return 4e3 * (self.M200c / 1e14) ** 0.29 * self.amplitude

    @property
    def alpha(self) -> float:
        return 0.88 * (self.M200c / 1e14) ** -0.03

    @property
    def beta(self) -> float:
        return 3.83 * (self.M200c / 1e14) ** 0.04

    def __call__(self, r):
        y = np.asarray(r, dtype=float) / self.R200c / self.x_c
        a, b, g = self.alpha, self.beta, self.gamma
        return self.f_b * self.rho_crit * self.rho0 * y**g * (1.0 + y**a) ** (-(b + g) / a)


# --------------------------------------------------------------------------------------------------
# Electron pressure: Arnaud et al. 2010
# --------------------------------------------------------------------------------------------------
#: A10 GNFW parameter sets (h70 = 1). "universal" is A10 Eq. 12; the cool-core and morphologically
#: disturbed sets are A10 Appendix C's as recalled, not checked against it (UNSURE; docs/physics.md section 4).
A10_PARAMS: dict[str, dict[str, float]] = {
    "universal": dict(P0=8.403, c500=1.177, gamma=0.3081, alpha=1.0510, beta=5.4905),
    "cool_core": dict(P0=3.249, c500=1.128, gamma=0.7736, alpha=1.2223, beta=5.4905),
    "disturbed": dict(P0=3.202, c500=1.083, gamma=0.3798, alpha=1.4063, beta=5.4905),
}


def _gnfw(x, P0, c500, gamma, alpha, beta):
    cx = c500 * np.asarray(x, dtype=float)
    return P0 / (cx**gamma * (1.0 + cx**alpha) ** ((beta - gamma) / alpha))


@dataclass(frozen=True)
class Arnaud10Pressure:
    """A10 electron pressure P_e(r) [keV cm^-3] (z = 0, h70 = 1).

    P_e = P500 p(x) (M500/3e14)^(alpha_p + alpha'_p(x)), x = r / R500, P500 = 1.65e-3 (M500/3e14)^(2/3),
    p(x) = P0 / [(c500 x)^g (1 + (c500 x)^a)^((b - g)/a)], alpha_p = 0.12,
    alpha'_p(x) = 0.10 - (alpha_p + 0.10) (x/0.5)^3 / [1 + (x/0.5)^3].

    ``M500`` and ``R500`` are the masses the profile is *evaluated* with; for the hydrostatic-bias debias
    build it with :meth:`debiased`. ``P0_factor`` and ``c500_factor`` carry the per-cluster scatter.
    """

    M500: float
    R500: float
    kind: str = "universal"
    P0_factor: float = 1.0
    c500_factor: float = 1.0
    mass_dependent_slope: bool = True

    @classmethod
    def debiased(cls, M500c: float, R500c: float, b: float = 0.2, **kwargs) -> Arnaud10Pressure:
        """A10 evaluated with M500,eff = (1-b) M500c and R500,eff = (1-b)^(1/3) R500c (true masses in)."""
        return cls(M500=(1.0 - b) * M500c, R500=(1.0 - b) ** (1.0 / 3.0) * R500c, **kwargs)

    @property
    def params(self) -> dict[str, float]:
        try:
            p = dict(A10_PARAMS[self.kind])
        except KeyError:
            raise ValueError(f"unknown A10 parameter set {self.kind!r}; choose one of {sorted(A10_PARAMS)}") from None
        p["P0"] *= self.P0_factor
        p["c500"] *= self.c500_factor
        return p

    @property
    def P500(self) -> float:
        return 1.65e-3 * (self.M500 / 3e14) ** (2.0 / 3.0)

    def shape(self, x):
        """The GNFW p(x) of this parameter set (scatter factors included)."""
        return _gnfw(x, **self.params)

    def __call__(self, r):
        x = np.asarray(r, dtype=float) / self.R500
        alpha_p = 0.12
        if self.mass_dependent_slope:
            y3 = (x / 0.5) ** 3
            alpha_pp = 0.10 - (alpha_p + 0.10) * y3 / (1.0 + y3)
        else:
            alpha_pp = 0.0
        return self.P500 * self.shape(x) * (self.M500 / 3e14) ** (alpha_p + alpha_pp)


def arnaud10_I(x_max: float = 1.0, kind: str = "universal", n: int = 20000) -> float:
    """I(x_max) = 3 int_0^x_max p(u) u^2 du of the A10 GNFW shape (A10 quote I(1) = 0.6145, I(5) = 1.1037)."""
    lnu = np.linspace(np.log(1e-8), np.log(x_max), n)
    u = np.exp(lnu)
    integrand = _gnfw(u, **A10_PARAMS[kind]) * u**3
    # The integral below u = 1e-8 (p ~ u^-gamma, gamma < 3) is added analytically.
    g = A10_PARAMS[kind]["gamma"]
    head = integrand[0] / (3.0 - g)
    return float(3.0 * (head + np.trapezoid(integrand, lnu)))


def arnaud10_Ysph_R500(M500: float) -> float:
    """A10 Eq. 22: Y_sph(R500) = 2.925e-5 I(1) (M500 / 3e14)^1.78 Mpc^2 (z = 0, h70 = 1, I(1) = 0.6145)."""
    return 2.925e-5 * 0.6145 * (M500 / 3e14) ** 1.78


def apps05_kT(M500: float) -> float:
    """Arnaud, Pointecouteau & Pratt 2005 M-T relation inverted: kT = 5 keV (M500 / 3.84e14)^(1/1.71)."""
    return 5.0 * (M500 / 3.84e14) ** (1.0 / 1.71)


# --------------------------------------------------------------------------------------------------
# Electron pressure: Battaglia et al. 2012 AGN fit (Delta = 200c, masses in Msun)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Battaglia12Pressure:
    """B12 pressure, returned as *electron* pressure P_e = 0.5176 P_th [keV cm^-3] (z = 0).

    P_th = P200 P0 (x/x_c)^g [1 + (x/x_c)^alpha]^(-beta), x = r / R200c, alpha = 1, g = -0.3,
    P0 = 18.1 (M/1e14)^0.154, x_c = 0.497 (M/1e14)^-0.00865, beta = 4.35 (M/1e14)^0.0393,
    P200 = G M200c 200 rho_crit f_b / (2 R200c).
    """

    M200c: float
    R200c: float
    rho_crit: float
    f_b: float
    P0_factor: float = 1.0

    @property
    def P200(self) -> float:
        """P200 in keV cm^-3."""
        p = G_MPC_KMS2_PER_MSUN * self.M200c * 200.0 * self.rho_crit * self.f_b / (2.0 * self.R200c)
        return p * _MSUN_KMS2_PER_MPC3_IN_KEV_CM3

    def __call__(self, r):
        m = self.M200c / 1e14
        P0 = 18.1 * m**0.154 * self.P0_factor
        x_c = 0.497 * m**-0.00865
        beta = 4.35 * m**0.0393
        y = np.asarray(r, dtype=float) / self.R200c / x_c
        return PE_OVER_PTH * self.P200 * P0 * y**-0.3 * (1.0 + y) ** (-beta)


# --------------------------------------------------------------------------------------------------
# IGM
# --------------------------------------------------------------------------------------------------
def t_igm(rho_gas, rho_b: float, T0: float = 1e4, gamma: float = 1.6):
    """IGM temperature-density relation T = T0 (rho_gas / rho_b)^(gamma - 1) in K (Hui & Gnedin 1997)."""
    return T0 * (np.asarray(rho_gas, dtype=float) / rho_b) ** (gamma - 1.0)


# --------------------------------------------------------------------------------------------------
# Line-of-sight integrals
# --------------------------------------------------------------------------------------------------
def y_los(R, pressure: Callable, r_max: float, n: int = 4001):
    """Compton y(R) = (sigma_T / m_e c^2) 2 int_R^r_max P_e(r) r dr / sqrt(r^2 - R^2).

    ``pressure`` maps r [Mpc] to P_e [keV cm^-3]. Integrated as 2 int_0^l_max P_e(sqrt(R^2 + l^2)) dl with
    l = R sinh t (smooth integrand, Simpson on n points). R > 0 and R < r_max.
    """
    from scipy.integrate import simpson

    R = np.atleast_1d(np.asarray(R, dtype=float))
    if np.any(R <= 0) or np.any(R >= r_max):
        raise ValueError("y_los needs 0 < R < r_max")
    t_max = np.arcsinh(np.sqrt(r_max**2 - R**2) / R)
    s = np.linspace(0.0, 1.0, n)
    t = t_max[:, None] * s[None, :]
    l = R[:, None] * np.sinh(t)
    integrand = pressure(np.sqrt(R[:, None] ** 2 + l**2)) * R[:, None] * np.cosh(t)
    y = 2.0 * Y_COEFF_PER_KEV_CM3_MPC * simpson(integrand, x=t, axis=1)
    return y


def y_spherical(R: float, pressure: Callable, r_min: float = 1e-7, n: int = 20001) -> float:
    """Y_sph(<R) = (sigma_T / m_e c^2) int_0^R 4 pi r^2 P_e dr in Mpc^2 (P_e in keV cm^-3)."""
    from scipy.integrate import simpson

    lnr = np.linspace(np.log(r_min), np.log(R), n)
    r = np.exp(lnr)
    f = 4.0 * np.pi * r**3 * pressure(r)
    return float(Y_COEFF_PER_KEV_CM3_MPC * simpson(f, x=lnr))


# --------------------------------------------------------------------------------------------------
# Tables for inverse-CDF sampling
# --------------------------------------------------------------------------------------------------
def enclosed_mass_table(rho: Callable, r_min: float, r_max: float, n: int = 2000):
    """M(<r) of a spherical density rho(r) on n log-spaced radii in [r_min, r_max], with r = 0 prepended.

    Returns (r, M), each of length n + 1, r[0] = M[0] = 0. Inside r_min the profile is taken as a power
    law rho ~ r^-a with a from the first two grid points (a < 3), so M(<r_min) = 4 pi r_min^3 rho(r_min)/(3-a).
    Between grid points M is integrated with the trapezoid rule in ln r. Linear interpolation of this table
    (M at a radius, or r at a mass) defines the sampled distribution exactly.
    """
    r = np.geomspace(r_min, r_max, n)
    rho_r = np.asarray(rho(r), dtype=float)
    if np.any(rho_r < 0) or not np.all(np.isfinite(rho_r)):
        raise ValueError("density must be finite and non-negative on the table")
    lnr = np.log(r)
    if rho_r[0] > 0 and rho_r[1] > 0:
        a = -np.log(rho_r[1] / rho_r[0]) / (lnr[1] - lnr[0])
        a = min(a, 2.9)
    else:
        a = 0.0
    m0 = 4.0 * np.pi * r_min**3 * rho_r[0] / (3.0 - a)
    f = 4.0 * np.pi * r**3 * rho_r
    M = m0 + np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(lnr))])
    return np.concatenate([[0.0], r]), np.concatenate([[0.0], M])
