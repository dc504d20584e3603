"""Cosmology through colossus (docs/physics.md sections 0-2), in Msun and physical Mpc (no h).

colossus works in Msun/h and kpc/h; every conversion happens here, at this boundary, so the rest of
massmaps never sees a factor of h.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class CosmologyParams:
    """Flat LambdaCDM parameters (the paper's defaults)."""

    Om0: float = 0.3
    Ob0: float = 0.045
    H0: float = 70.0
    sigma8: float = 0.8
    ns: float = 0.96

    @property
    def h(self) -> float:
        return self.H0 / 100.0


PAPER = CosmologyParams()


@lru_cache(maxsize=8)
def _colossus(params: CosmologyParams):
    from colossus.cosmology import cosmology

    name = "massmaps_" + "_".join(f"{k}{v}" for k, v in asdict(params).items())
    return cosmology.setCosmology(
        name,
        params=dict(
            flat=True,
            H0=params.H0,
            Om0=params.Om0,
            Ob0=params.Ob0,
            sigma8=params.sigma8,
            ns=params.ns,
            relspecies=False,
        ),
        persistence="",
    )


def activate(params: CosmologyParams = PAPER):
    """Make ``params`` colossus' current cosmology and return the colossus object."""
    from colossus.cosmology import cosmology

    cosmo = _colossus(params)
    cosmology.setCurrent(cosmo)
    return cosmo


def rho_crit(params: CosmologyParams = PAPER) -> float:
    """Critical density at z = 0 in Msun/Mpc^3 (no h)."""
    cosmo = activate(params)
    return float(cosmo.rho_c(0.0)) * 1e9 * params.h**2


def rho_m(params: CosmologyParams = PAPER) -> float:
    """Mean matter density at z = 0 in Msun/Mpc^3."""
    return params.Om0 * rho_crit(params)


def rho_b(params: CosmologyParams = PAPER) -> float:
    """Mean baryon density Ob rho_crit in Msun/Mpc^3."""
    return params.Ob0 * rho_crit(params)


def dndlnM(M: np.ndarray, params: CosmologyParams = PAPER, model: str = "tinker08") -> np.ndarray:
    """Halo mass function dn/dlnM of M200m [Msun] in Mpc^-3 (physical, no h) at z = 0."""
    from colossus.lss import mass_function

    activate(params)
    h = params.h
    M = np.asarray(M, dtype=float)
    return mass_function.massFunction(M * h, 0.0, mdef="200m", model=model, q_out="dndlnM") * h**3


def R200m(M: np.ndarray, params: CosmologyParams = PAPER) -> np.ndarray:
    """R200m in Mpc of a halo of M200m [Msun]."""
    return np.cbrt(3.0 * np.asarray(M, dtype=float) / (4.0 * np.pi * 200.0 * rho_m(params)))


def concentration_200m(M: np.ndarray, params: CosmologyParams = PAPER, model: str = "diemer19") -> np.ndarray:
    """Median c200m of halos of M200m [Msun] (Diemer & Joyce 2019 by default)."""
    from colossus.halo import concentration

    activate(params)
    M = np.asarray(M, dtype=float)
    if M.size == 0:
        return np.zeros(M.shape)

    def c_of(masses: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(concentration.concentration(masses * params.h, "200m", 0.0, model=model), dtype=float)

    if M.size <= 64:
        return c_of(M)
    # The relation is smooth in log M and costs a root find per mass: tabulate, then interpolate
    # (relative error < 1e-5 on 0.01 dex nodes).
    lo, hi = np.log10(M.min()), np.log10(M.max())
    grid = np.linspace(lo, hi, max(2, int(np.ceil((hi - lo) / 0.01)) + 1))
    return np.interp(np.log10(M), grid, c_of(10.0**grid))


def peak_height(M: np.ndarray, params: CosmologyParams = PAPER) -> np.ndarray:
    """Peak height nu of M200m [Msun]."""
    from colossus.lss import peaks

    activate(params)
    return np.asarray(peaks.peakHeight(np.asarray(M, dtype=float) * params.h, 0.0), dtype=float)


def nonlinear_mass(params: CosmologyParams = PAPER) -> float:
    """M_* with sigma(M_*) = 1.686, in Msun."""
    from colossus.lss import peaks

    activate(params)
    return float(peaks.nonLinearMass(0.0)) / params.h


def change_mass_definition(
    M: float, c: float, mdef_in: str, mdef_out: str, params: CosmologyParams = PAPER
) -> tuple[float, float, float]:
    """Convert an NFW halo's mass definition. Returns (M [Msun], R [Mpc], c) in ``mdef_out``."""
    from colossus.halo import mass_defs

    activate(params)
    h = params.h
    Mo, Ro, co = mass_defs.changeMassDefinition(float(M) * h, float(c), 0.0, mdef_in, mdef_out, profile="nfw")
    return float(Mo) / h, float(Ro) / 1e3 / h, float(co)


def halo_bias(M: np.ndarray, params: CosmologyParams = PAPER, model: str = "tinker10") -> np.ndarray:
    """Linear halo bias of M200m [Msun]."""
    from colossus.lss import bias

    activate(params)
    return np.asarray(bias.haloBias(np.asarray(M, dtype=float) * params.h, 0.0, "200m", model=model), dtype=float)
