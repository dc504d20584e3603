"""Draws of substructure and environment halos (docs/physics.md sections 3 and 5): pure functions, no particles.

The mock's ``subhalos``, ``merger`` and ``neighbours`` components (:mod:`massmaps.data.mock`) call these to decide
*which* halos a cluster has; they are separate so that the distributions can be tested by counting draws.

Contents
--------
* Subhalo mass function (Giocoli et al. 2008 shape, Gao et al. 2004 amplitude):
  :func:`subhalo_amplitude`, :func:`subhalo_dndlnpsi`, :func:`expected_subhalos`, :func:`draw_subhalo_masses`.
* Subhalo radial distribution (Gao et al. 2004): :func:`gao_cdf`, :func:`draw_gao_radii`.
* Tidal (Jacobi) radius (King 1962; van den Bosch et al. 2018): :func:`tidal_radius`.
* Ram-pressure stripping radius (McCarthy et al. 2008): :func:`stripping_radius`.
* Neighbour halos from the biased mass function (Tinker et al. 2008, 2010): :class:`NeighbourModel`.
* Mass of a (stretched, rotated, shifted) radial profile inside a sphere: :func:`mass_inside_sphere`
  (the part of a satellite that enters the host's mass closure).

Units: Msun (no h), physical Mpc, km/s, z = 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import cosmology as cosmo_mod
from ..constants import G_MPC_KMS2_PER_MSUN
from ..cosmology import PAPER, CosmologyParams

__all__ = [
    "NeighbourModel",
    "draw_gao_radii",
    "draw_subhalo_masses",
    "expected_subhalos",
    "fibonacci_sphere",
    "gao_cdf",
    "isotropic_directions",
    "mass_inside_sphere",
    "median_concentration",
    "stripping_radius",
    "subhalo_amplitude",
    "subhalo_dndlnpsi",
    "tidal_radius",
]


def isotropic_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    """n unit vectors drawn uniformly on the sphere, shape (n, 3)."""
    d = rng.standard_normal((n, 3))
    return d / np.linalg.norm(d, axis=1)[:, None]


# --------------------------------------------------------------------------------------------------
# Concentrations (a cached table: colossus' diemer19 costs a root find per mass)
# --------------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _c200m_table(params: CosmologyParams, model: str):
    lg = np.arange(9.0, 17.0 + 1e-9, 0.05)
    chunks = [cosmo_mod.concentration_200m(10.0 ** lg[i : i + 64], params, model) for i in range(0, lg.size, 64)]
    return lg, np.log10(np.concatenate(chunks))


def median_concentration(M, params: CosmologyParams = PAPER, model: str = "diemer19") -> np.ndarray:
    """Median c200m of M200m [Msun], interpolated in log-log on 0.05 dex nodes over 1e9-1e17 Msun."""
    lg, lc = _c200m_table(params, model)
    return 10.0 ** np.interp(np.log10(np.asarray(M, dtype=float)), lg, lc)


# --------------------------------------------------------------------------------------------------
# Subhalo mass function
# --------------------------------------------------------------------------------------------------
def subhalo_amplitude(M200m: float, log10_A0: float = -3.2, mass_slope: float = 0.1, h: float = 0.7) -> float:
    """A of dN/dln psi = A psi^-alpha exp(-beta psi^3): A = 10^log10_A0 (M200m h / Msun)^mass_slope.

    From Gao et al. (2004) dN/dm = 10^-3.2 m^-1.9 M (Msun/h), so A = 0.016 at M = 1e14 Msun/h.
    """
    return float(10.0**log10_A0 * (M200m * h) ** mass_slope)


def subhalo_dndlnpsi(psi, A: float, alpha: float = 0.9, beta: float = 12.2715):
    """dN/dln psi = A psi^-alpha exp(-beta psi^3), psi = m / M200m (Giocoli et al. 2008 shape)."""
    psi = np.asarray(psi, dtype=float)
    return A * psi ** (-alpha) * np.exp(-beta * psi**3)


def _psi_table(psi_min: float, psi_max: float, A: float, alpha: float, beta: float, n: int = 2001):
    lnpsi = np.linspace(np.log(psi_min), np.log(psi_max), n)
    f = subhalo_dndlnpsi(np.exp(lnpsi), A, alpha, beta)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(lnpsi))])
    return lnpsi, cum


def expected_subhalos(
    M200m: float, m_min: float, psi_max: float = 0.5, *, A: float, alpha: float = 0.9, beta: float = 12.2715
) -> float:
    """Expected number of subhalos with m_min <= m <= psi_max M200m (0 when m_min >= psi_max M200m)."""
    psi_min = m_min / M200m
    if psi_min >= psi_max:
        return 0.0
    return float(_psi_table(psi_min, psi_max, A, alpha, beta)[1][-1])


def draw_subhalo_masses(
    rng: np.random.Generator,
    M200m: float,
    m_min: float,
    psi_max: float = 0.5,
    *,
    A: float,
    alpha: float = 0.9,
    beta: float = 12.2715,
) -> np.ndarray:
    """Subhalo masses [Msun]: N ~ Poisson(expected), psi by inverse CDF of dN/dln psi; sorted, heaviest first."""
    psi_min = m_min / M200m
    if psi_min >= psi_max:
        rng.poisson(0.0)  # keep the stream's consumption independent of the branch
        return np.zeros(0)
    lnpsi, cum = _psi_table(psi_min, psi_max, A, alpha, beta)
    n = int(rng.poisson(cum[-1]))
    u = rng.random(n) * cum[-1]
    return np.sort(M200m * np.exp(np.interp(u, cum, lnpsi)))[::-1]


# --------------------------------------------------------------------------------------------------
# Subhalo radial distribution (Gao et al. 2004)
# --------------------------------------------------------------------------------------------------
def gao_cdf(x, c: float, a: float = 0.244, alpha: float = 2.0, beta: float = 2.75):
    """N(<x) / N_tot = (1 + a c) x^beta / (1 + a c x^alpha) for x = r / R200 in [0, 1]."""
    x = np.clip(np.asarray(x, dtype=float), 0.0, 1.0)
    return (1.0 + a * c) * x**beta / (1.0 + a * c * x**alpha)


def draw_gao_radii(
    rng: np.random.Generator, n: int, c: float, a: float = 0.244, alpha: float = 2.0, beta: float = 2.75
) -> np.ndarray:
    """x = r / R200 of n subhalos by inverse CDF of :func:`gao_cdf` (tabulated on 4001 points)."""
    x = np.linspace(0.0, 1.0, 4001)
    F = gao_cdf(x, c, a, alpha, beta)
    if np.any(np.diff(F) < 0):
        raise ValueError(f"Gao radial CDF is not monotonic for c={c}, a={a}, alpha={alpha}, beta={beta}")
    return np.interp(rng.random(n), F, x)


# --------------------------------------------------------------------------------------------------
# Tidal and stripping radii
# --------------------------------------------------------------------------------------------------
def tidal_radius(m, d, M_host_d, dlnM_dlnr):
    """Jacobi radius r_t = d [m / ((2 - dlnM_h/dlnr) M_h(<d))]^(1/3) (no centrifugal term).

    The factor 2 - dlnM/dlnr is floored at 1e-3 (it tends to 0 at the centre of a cusp with M ~ r^2).
    """
    m, d, M_host_d, s = (np.asarray(v, dtype=float) for v in (m, d, M_host_d, dlnM_dlnr))
    return d * np.cbrt(m / (np.maximum(2.0 - s, 1e-3) * M_host_d))


def stripping_radius(r, m_enc, rho_gas, ram_pressure: float, alpha_rp: float = 2.0) -> float:
    """Radius outside which ram pressure strips a subhalo's gas (McCarthy et al. 2008).

    Restoring pressure alpha_rp G m(<r) rho_gas,sub(r) / r against the ram pressure
    rho_gas,host v^2 [both in Msun/Mpc^3 (km/s)^2]. ``r`` ascending (ending at the tidal radius) with the
    subhalo's enclosed total mass ``m_enc`` and gas density ``rho_gas`` on it. Stripping proceeds from the
    outside in, so gas is kept inside the outermost radius where the restoring pressure still exceeds the ram
    pressure (log-interpolated between grid points): r[-1] when it does there, 0 when it does nowhere.
    """
    r, m_enc, rho_gas = (np.asarray(v, dtype=float) for v in (r, m_enc, rho_gas))
    restoring = alpha_rp * G_MPC_KMS2_PER_MSUN * m_enc * rho_gas / r
    held = np.flatnonzero(restoring >= ram_pressure)
    if held.size == 0:
        return 0.0
    j = int(held[-1])
    if j == r.size - 1:
        return float(r[-1])
    # log-linear interpolation of ln(restoring) in ln r between points j (held) and j + 1 (stripped)
    l0, l1 = np.log(restoring[j]), np.log(max(restoring[j + 1], 1e-300))
    t = (l0 - np.log(ram_pressure)) / (l0 - l1) if l0 > l1 else 0.0
    return float(np.exp(np.log(r[j]) + t * (np.log(r[j + 1]) - np.log(r[j]))))


# --------------------------------------------------------------------------------------------------
# Neighbours from the biased mass function
# --------------------------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _hmf_bias_table(params: CosmologyParams, hmf_model: str, bias_model: str, M_min: float):
    lnM = np.linspace(np.log(M_min), np.log(1e17), 801)
    M = np.exp(lnM)
    return lnM, cosmo_mod.dndlnM(M, params, model=hmf_model), cosmo_mod.halo_bias(M, params, model=bias_model)


@dataclass(frozen=True)
class NeighbourModel:
    """Poisson intensity of neighbour halos about a host (docs/physics.md section 5).

    n(M', r) = n_T08(M') [1 + b_T10(M') delta_m(r)] per ln M' and Mpc^3, for M' in [M_min, M_max] and
    R200m,host + R200m(M') < r < R_gen. ``delta_m`` is the host's outer term (a callable of r in Mpc).
    """

    R200m_host: float
    R_gen: float
    M_min: float
    M_max: float
    delta_m: object
    params: CosmologyParams = PAPER
    hmf_model: str = "tinker08"
    bias_model: str = "tinker10"
    n_r: int = 4000

    def _tables(self):
        lnM_all, n_all, b_all = _hmf_bias_table(self.params, self.hmf_model, self.bias_model, float(self.M_min))
        keep = lnM_all < np.log(self.M_max)
        lnM = np.append(lnM_all[keep], np.log(self.M_max))
        n = np.interp(lnM, lnM_all, n_all)
        b = np.interp(lnM, lnM_all, b_all)
        r = np.geomspace(self.R200m_host, self.R_gen, self.n_r)
        f = 4.0 * np.pi * r**3 * np.asarray(self.delta_m(r), dtype=float)  # dV delta / dln r
        lnr = np.log(r)
        C_delta = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(lnr))])
        return lnM, n, b, r, C_delta

    def r_min(self, M):
        return self.R200m_host + cosmo_mod.R200m(M, self.params)

    def _volumes(self, lnM, r, C_delta):
        """(V, V_delta) of each mass: the shell volume and int 4 pi r^2 delta dr over [r_min(M), R_gen]."""
        rmin = np.minimum(self.r_min(np.exp(lnM)), self.R_gen)
        V = 4.0 / 3.0 * np.pi * (self.R_gen**3 - rmin**3)
        Vd = C_delta[-1] - np.interp(np.log(rmin), np.log(r), C_delta)
        return V, Vd, rmin

    def dN_dlnM(self):
        """(lnM, dN/dlnM) on the table: the expected neighbour count per ln M'."""
        if self.M_max <= self.M_min:
            return np.array([np.log(self.M_min)] * 2), np.zeros(2)
        lnM, n, b, r, C_delta = self._tables()
        V, Vd, _ = self._volumes(lnM, r, C_delta)
        return lnM, n * (V + b * Vd)

    def expected_number(self) -> float:
        lnM, dN = self.dN_dlnM()
        return float(np.trapezoid(dN, lnM))

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(M' [Msun], r [Mpc]) of a Poisson realisation, heaviest first. Directions are drawn by the caller."""
        if self.M_max <= self.M_min:
            rng.poisson(0.0)
            return np.zeros(0), np.zeros(0)
        lnM, n, b, r, C_delta = self._tables()
        V, Vd, _ = self._volumes(lnM, r, C_delta)
        dN = n * (V + b * Vd)
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (dN[1:] + dN[:-1]) * np.diff(lnM))])
        N = int(rng.poisson(cum[-1]))
        lnM_draw = np.sort(np.interp(rng.random(N) * cum[-1], cum, lnM))[::-1]
        M = np.exp(lnM_draw)
        b_draw = np.interp(lnM_draw, lnM, b)
        u = rng.random(N)
        radii = np.empty(N)
        C1 = 4.0 / 3.0 * np.pi * r**3
        for i in range(N):
            rmin = float(self.r_min(M[i]))
            F = (C1 - C1[0]) + b_draw[i] * C_delta  # cumulative intensity from R200m,host
            F0 = 4.0 / 3.0 * np.pi * (rmin**3 - r[0] ** 3) + b_draw[i] * np.interp(np.log(rmin), np.log(r), C_delta)
            target = F0 + u[i] * (F[-1] - F0)
            radii[i] = np.interp(target, F, r)
        return M, radii


# --------------------------------------------------------------------------------------------------
# Mass of a satellite inside the host's R200m sphere (for the mass closure)
# --------------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def fibonacci_sphere(n: int) -> np.ndarray:
    """n nearly uniform unit vectors (golden-angle spiral), shape (n, 3)."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (1.0 + 5.0**0.5) * k
    rho = np.sqrt(1.0 - z**2)
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)


def mass_inside_sphere(
    r_tab,
    M_tab,
    centre,
    R: float,
    *,
    axes=None,
    rotation=None,
    n_dir: int = 512,
    max_shells: int = 256,
) -> float:
    """Mass of a radial profile M(<r) (drawn as x = centre + rotation (r n * axes)) inside |x| < R.

    Spherical profiles (``axes`` None or all 1) use the exact fraction of a shell of radius r at distance
    d inside a sphere of radius R, (R^2 - (d - r)^2) / (4 d r) where it crosses; stretched ones average over
    ``n_dir`` Fibonacci directions. Only shells that can cross the sphere are evaluated, in at most
    ``max_shells`` mass intervals (log-spaced in r).
    """
    r_tab = np.asarray(r_tab, dtype=float)
    M_tab = np.asarray(M_tab, dtype=float)
    c = np.asarray(centre, dtype=float)
    d = float(np.linalg.norm(c))
    spherical = axes is None or np.allclose(axes, 1.0)
    a_max = 1.0 if spherical else float(np.max(axes))
    a_min = 1.0 if spherical else float(np.min(axes))
    M_of = lambda x: np.interp(x, r_tab, M_tab)  # noqa: E731
    # Shells with r a_max < R - d lie inside; with r a_min > R + d or r a_max < d - R outside.
    r_in = max(R - d, 0.0) / a_max
    r_lo = max(d - R, 0.0) / a_max
    r_hi = (R + d) / a_min
    total = float(M_of(r_in)) if d < R else 0.0
    lo, hi = max(r_in, r_lo), min(r_hi, r_tab[-1])
    if hi <= lo:
        return total
    lo_pos = max(lo, r_tab[1] if len(r_tab) > 1 else lo, 1e-12)
    edges = np.geomspace(lo_pos, hi, max_shells + 1)
    if lo < lo_pos:
        edges = np.concatenate([[lo], edges])
    dM = np.diff(M_of(edges))
    rm = np.sqrt(edges[1:] * edges[:-1])
    rm[0] = 0.5 * (edges[0] + edges[1])
    if spherical:
        if d == 0.0:
            frac = (rm < R).astype(float)
        else:
            frac = np.clip((R**2 - (d - rm) ** 2) / (4.0 * d * rm), 0.0, 1.0)
            frac = np.where(rm + d <= R, 1.0, frac)
    else:
        n = fibonacci_sphere(n_dir)
        Rm = np.eye(3) if rotation is None else np.asarray(rotation)
        dirs = (n * np.asarray(axes)[None, :]) @ Rm.T  # (n_dir, 3)
        x = c[None, None, :] + rm[:, None, None] * dirs[None, :, :]
        frac = np.mean(np.einsum("ijk,ijk->ij", x, x) < R**2, axis=1)
    return total + float(np.sum(dM * frac))
