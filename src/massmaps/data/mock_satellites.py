"""The mock's satellite components: subhalos, a merger secondary and neighbour halos (docs/physics.md
sections 3 and 5).

Section numbers in this module ("section 3") refer to docs/physics.md. Each class is a component of
:data:`massmaps.data.mock.COMPONENTS` (``subhalos``, ``merger``, ``neighbours``): it decides which halos a
cluster has with the pure draws of :mod:`massmaps.data.substructure`, builds each as a full halo
(:func:`draw_satellite_halos`, with the host's building blocks of :mod:`massmaps.data.mock_host`) and
samples their particles. Subhalos and neighbours enter the host's mass closure; a merger secondary comes
on top of the catalogue mass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial.transform import Rotation

from .. import cosmology as cosmo_mod
from ..constants import G_MPC_KMS2_PER_MSUN
from . import profiles, substructure
from .mock_host import (
    PRESSURE_TYPES,
    ComponentOutput,
    HostDarkMatter,
    HostGas,
    HostHalo,
    PressurePainter,
    _stochastic_round,
    sample_radial,
    stream,
)
from .particles import ParticleSet

if TYPE_CHECKING:
    from .mock import MockConfig

__all__ = ["Merger", "Neighbours", "Subhalos", "draw_satellite_halos", "host_delta_m", "pressure_profile"]


# --------------------------------------------------------------------------------------------------
# Substructure and environment (sections 3, 5)
# --------------------------------------------------------------------------------------------------
def _within(ps: ParticleSet, R: float) -> ParticleSet:
    """The particles inside the sphere |x| <= R about the host centre (satellites are sampled to R_gen too)."""
    keep = np.einsum("ij,ij->i", ps.pos, ps.pos) <= R * R
    return ps if keep.all() else ps.subset(keep)


def host_delta_m(host: HostHalo, cfg: MockConfig) -> Callable:
    """The host's outer term delta_m(r) (section 2), shared by the smooth background and the neighbours."""

    def delta_m(r):
        return profiles.delta_m_outer(
            r, host.R200m, host.outer_norm, cfg.outer_slope, cfg.outer_pivot_R200m, cfg.outer_max_rho
        )

    return delta_m


def pressure_profile(M200c: float, R200c: float, M500c: float, R500c: float, cfg: MockConfig, **a10_kwargs):
    """The configured electron-pressure model of a halo: debiased A10 (with type and scatter) or B12."""
    if cfg.pressure_model == "arnaud10":
        return profiles.Arnaud10Pressure.debiased(M500c, R500c, b=cfg.hydrostatic_bias, **a10_kwargs)
    rho_c = cosmo_mod.rho_crit(cfg.cosmology)
    f_b = cfg.cosmology.Ob0 / cfg.cosmology.Om0
    return profiles.Battaglia12Pressure(M200c, R200c, rho_c, f_b, P0_factor=a10_kwargs.get("P0_factor", 1.0))


def draw_satellite_halos(
    rng: np.random.Generator,
    host: HostHalo,
    cfg: MockConfig,
    M: np.ndarray,
    centres: np.ndarray,
    *,
    gas_centres: np.ndarray | None = None,
    pressure_type: str | None = None,
) -> list[HostHalo]:
    """Full section 2/4 halos (c + scatter, JS02 shape, rotation, pressure type and scatter) at given centres.

    Every random number is drawn whatever the switches, so ``per_cluster_scatter`` (off: median c, universal
    type unless ``pressure_type`` forces one, no amplitude scatter) does not shift the other draws.
    """
    from .catalog import HaloModel, draw_axis_ratios, draw_rotations

    M = np.asarray(M, dtype=float)
    n = M.size
    params = cfg.cosmology
    c_scatter = 10.0 ** (cfg.sigma_log10_c * rng.standard_normal(n))
    s, q = draw_axis_ratios(rng, M, HaloModel(), params) if n else (np.zeros(0), np.zeros(0))
    quats = draw_rotations(rng, n)
    type_idx = rng.choice(3, size=n, p=[cfg.p_cool_core, cfg.p_universal, cfg.p_disturbed])
    ln_P0, ln_c500, ln_rho0 = rng.standard_normal((3, n))
    scatter = cfg.per_cluster_scatter
    c_med = substructure.median_concentration(M, params, cfg.concentration_model) if n else np.zeros(0)
    c = np.clip(c_med * (c_scatter if scatter else 1.0), cfg.c_min, cfg.c_max)
    halos = []
    for i in range(n):
        ptype = pressure_type or (PRESSURE_TYPES[int(type_idx[i])] if scatter else "universal")
        f = lambda sig, z: float(np.exp(sig * z)) if scatter else 1.0  # noqa: E731
        halos.append(
            HostHalo.derive(
                halo_id=host.halo_id,
                seed=host.seed,
                M200m=float(M[i]),
                R200m=float(cosmo_mod.R200m(M[i], params)),
                c200m_catalog=float(c[i]),
                s=float(s[i]),
                q=float(q[i]),
                rotation=Rotation.from_quat(quats[i]).as_matrix(),
                pressure_type=ptype,
                P0_factor=f(cfg.sigma_ln_P0, ln_P0[i]),
                c500_factor=f(cfg.sigma_ln_c500, ln_c500[i]),
                gas_amplitude=f(cfg.sigma_ln_gas_rho0, ln_rho0[i]),
                gas_centre=centres[i] if gas_centres is None else gas_centres[i],
                centre=centres[i],
                cfg=cfg,
            )
        )
    return halos


class Subhalos:
    """Subhalos of the host (section 3): mass function, Gao radii, tidal truncation, ram-pressure stripping.

    Each subhalo is an NFW (c = subhalo_c_factor x median c(m)) cut sharply at the Jacobi radius r_t, with
    M(<r_t) = m, placed at x = r / R200m from Gao et al. (2004) on the host DM ellipsoid. Its gas is the B16
    profile of mass m cut at r_t, of which only the part inside the ram-pressure stripping radius is kept
    (v = f_v V_c,host(d), ICM density of the host gas profile). Retained gas paints the subhalo's pressure
    with amplitude = retained fraction. Subhalo DM and retained gas inside R200m enter the mass closure.
    The host's mass profile for r_t and V_c is its DM shape normalised to M200m at R200m.
    """

    name = "subhalos"

    def __init__(self, host: HostHalo, cfg: MockConfig):
        self.host, self.cfg = host, cfg
        p = cfg.cosmology
        rng = stream(host.seed, "subhalos/draws")
        A = substructure.subhalo_amplitude(host.M200m, cfg.subhalo_log10_A0, cfg.subhalo_A_mass_slope, p.h)
        self.A = A
        self.m_min = cfg.subhalo_min_particles * cfg.m_dm
        kw = dict(A=A, alpha=cfg.subhalo_alpha, beta=cfg.subhalo_beta)
        self.expected_number = substructure.expected_subhalos(host.M200m, self.m_min, cfg.subhalo_psi_max, **kw)
        m = substructure.draw_subhalo_masses(rng, host.M200m, self.m_min, cfg.subhalo_psi_max, **kw)
        n = m.size
        x = substructure.draw_gao_radii(rng, n, host.c200m, cfg.gao_a, cfg.gao_alpha, cfg.gao_beta)
        dirs = substructure.isotropic_directions(rng, n)
        f_v = rng.uniform(cfg.subhalo_fv_min, cfg.subhalo_fv_max, n)
        d = np.maximum(x, 1e-4) * host.R200m  # ellipsoidal radius of the subhalo centre
        self.m, self.d, self.f_v = m, d, f_v
        self.centres = (d[:, None] * dirs * host.axes_dm[None, :]) @ host.rotation.T + host.centre[None, :]

        # Host mass profile (DM shape with M(<R200m) = M200m) and ICM density at each subhalo.
        pot = HostDarkMatter(host, cfg, 0.0)
        lnr, lnM = np.log(pot.r_tab[1:]), np.log(pot.M_tab[1:])
        M_h = np.exp(np.interp(np.log(d), lnr, lnM))
        slope = np.interp(np.log(d), lnr, np.gradient(lnM, lnr))
        icm = HostGas(host, cfg)
        rho_icm = icm.density(icm.painter().radius(self.centres)) if n else np.zeros(0)
        self.ram_pressure = rho_icm * f_v**2 * G_MPC_KMS2_PER_MSUN * M_h / d  # Msun/Mpc^3 (km/s)^2

        rho_c = cosmo_mod.rho_crit(p)
        f_b = p.Ob0 / p.Om0
        c_med = substructure.median_concentration(m, p, cfg.concentration_model) if n else np.zeros(0)
        self.c = c_med * cfg.subhalo_c_factor
        self.R200m_sub = cosmo_mod.R200m(m, p) if n else np.zeros(0)
        self.r_s = self.R200m_sub / np.maximum(self.c, 1e-3) if n else np.zeros(0)
        r_t = substructure.tidal_radius(m, d, M_h, slope)
        self.r_t = np.minimum(r_t, cfg.subhalo_rt_max_R200m * self.R200m_sub)
        self.r_strip = np.zeros(n)
        self.gas_initial = np.zeros(n)
        self.gas_retained = np.zeros(n)
        self.tables = []  # per subhalo: (r, M_dm(<r), M_gas,retained(<r))
        self.painters = []
        for i in range(n):
            M200c, R200c, _ = cosmo_mod.change_mass_definition(m[i], self.c[i], "200m", "200c", p)
            b16 = profiles.Battaglia16GasDensity(M200c, R200c, rho_c, f_b)
            r, M_gas = profiles.enclosed_mass_table(b16, 1e-3 * self.r_t[i], self.r_t[i], 256)
            xr = r / self.r_s[i]
            M_dm = m[i] * profiles.nfw_mu(xr) / profiles.nfw_mu(self.r_t[i] / self.r_s[i])
            r_strip = substructure.stripping_radius(
                r[1:], (M_dm + M_gas)[1:], b16(r[1:]), self.ram_pressure[i], cfg.ram_pressure_alpha
            )
            kept = float(np.interp(r_strip, r, M_gas))
            self.r_strip[i], self.gas_initial[i], self.gas_retained[i] = r_strip, M_gas[-1], kept
            self.tables.append((r, M_dm, np.minimum(M_gas, kept)))
            if kept > 0:
                M500c, R500c, _ = cosmo_mod.change_mass_definition(m[i], self.c[i], "200m", "500c", p)
                self.painters.append(
                    PressurePainter(
                        profile=pressure_profile(M200c, R200c, M500c, R500c, cfg),
                        centre=self.centres[i],
                        rotation=np.eye(3),
                        axes=np.ones(3),
                        r_max=cfg.paint_radius_R200m * self.R200m_sub[i],
                        amplitude=kept / M_gas[-1],
                    )
                )

    @property
    def retained_fraction(self) -> np.ndarray:
        out = np.zeros_like(self.gas_retained)
        return np.divide(self.gas_retained, self.gas_initial, out=out, where=self.gas_initial > 0)

    @functools.cached_property
    def _closure(self) -> float:
        R = self.host.R200m
        return float(
            sum(
                substructure.mass_inside_sphere(r, M_dm + M_gas, c - self.host.centre, R)
                for (r, M_dm, M_gas), c in zip(self.tables, self.centres)
            )
        )

    def closure_mass(self) -> float:
        return self._closure

    def sample(self, rng):
        cfg = self.cfg
        dm, gas = [], []
        for i, (r, _M_dm, M_gas) in enumerate(self.tables):
            n = _stochastic_round(self.m[i] / cfg.m_dm, rng)
            x_t = self.r_t[i] / self.r_s[i]
            rr = self.r_s[i] * profiles.nfw_inverse_cdf(rng.random(n), x_t)
            dm.append(
                ParticleSet(
                    pos=self.centres[i] + rr[:, None] * substructure.isotropic_directions(rng, n),
                    mass=np.full(n, cfg.m_dm),
                )
            )
            if M_gas[-1] > 0:
                gas.append(sample_radial(rng, r, M_gas, cfg.m_gas, centre=self.centres[i]))
        R = cfg.R_gen
        return ComponentOutput(
            dm=_within(ParticleSet.concat(dm), R), gas=_within(ParticleSet.concat(gas), R), painters=list(self.painters)
        )

    def meta(self) -> dict:
        return {
            "n_subhalos": int(self.m.size),
            "expected_number": self.expected_number,
            "m_min_Msun": self.m_min,
            "mass_Msun": self.m.tolist(),
            "d_over_R200m": (self.d / self.host.R200m).tolist(),
            "centre_Mpc": self.centres.tolist(),
            "r_t_Mpc": self.r_t.tolist(),
            "r_strip_Mpc": self.r_strip.tolist(),
            "retained_gas_fraction": self.retained_fraction.tolist(),
        }


class Merger:
    """A major-merger secondary (section 3) when the host is flagged ``merger`` (else nothing).

    Mass xi M200m (xi log-uniform), at d ~ U(d_min, d_max) R200m in an isotropic direction n, moving along
    v = +-(-n) (pre- or post-pericentre); its gas centre lags its DM centre by U(lag_min, lag_max) along -v.
    It is a full halo (its own c + scatter, JS02 shape and rotation, B16 gas and pressure), tagged disturbed
    like the host.

    The catalogue mass stays M200m of the primary (section 3): the secondary is added on top and does
    not enter the host's mass closure (section 2: host gas, smooth term, subhalos and neighbours, then host DM),
    so the sphere of R200m holds M200m + :meth:`mass_inside_host` (reported in the meta). Absorbing it in the
    host DM instead would drain the primary's DM core (f_gas(<R500c) up to ~0.2 for xi ~ 0.5 at 0.5 R200m).
    """

    name = "merger"

    def __init__(self, host: HostHalo, cfg: MockConfig):
        self.host, self.cfg = host, cfg
        self.halo = None
        if not host.merger:
            return
        rng = stream(host.seed, "merger/draws")
        self.xi = float(np.exp(rng.uniform(np.log(cfg.merger_xi_min), np.log(cfg.merger_xi_max))))
        self.separation = float(rng.uniform(cfg.merger_d_min_R200m, cfg.merger_d_max_R200m) * host.R200m)
        n_hat = substructure.isotropic_directions(rng, 1)[0]
        self.v_hat = float(rng.choice([-1.0, 1.0])) * (-n_hat)
        self.gas_lag = float(rng.uniform(cfg.merger_gas_lag_min_Mpc, cfg.merger_gas_lag_max_Mpc))
        centre = host.centre + self.separation * n_hat
        gas_centre = centre - self.gas_lag * self.v_hat
        (self.halo,) = draw_satellite_halos(
            rng,
            host,
            cfg,
            np.array([self.xi * host.M200m]),
            centre[None, :],
            gas_centres=gas_centre[None, :],
            pressure_type="disturbed",
        )
        self.gas = HostGas(self.halo, cfg)
        self.dm = HostDarkMatter(self.halo, cfg, self.gas.closure_mass())

    def closure_mass(self) -> float:
        """0: the secondary is added on top of the catalogue halo (see the class docstring)."""
        return 0.0

    @functools.cached_property
    def mass_inside_host(self) -> float:
        """Expected mass of the secondary (DM + gas) inside the host's R200m sphere."""
        if self.halo is None:
            return 0.0
        h, R = self.halo, self.host.R200m
        return substructure.mass_inside_sphere(
            self.dm.r_tab, self.dm.M_tab, h.centre - self.host.centre, R, axes=h.axes_dm, rotation=h.rotation
        ) + substructure.mass_inside_sphere(
            self.gas.r_tab, self.gas.M_tab, h.gas_centre - self.host.centre, R, axes=h.axes_gas, rotation=h.rotation
        )

    def sample(self, rng):
        if self.halo is None:
            return ComponentOutput()
        dm, gas = self.dm.sample(rng).dm, self.gas.sample(rng).gas
        R = self.cfg.R_gen
        return ComponentOutput(dm=_within(dm, R), gas=_within(gas, R), painters=[self.gas.painter()])

    def meta(self) -> dict:
        if self.halo is None:
            return {"merger": False}
        h = self.halo
        return {
            "merger": True,
            "mass_ratio": self.xi,
            "M200m_Msun": h.M200m,
            "c200m": h.c200m,
            "separation_Mpc": self.separation,
            "centre_Mpc": h.centre.tolist(),
            "gas_centre_Mpc": h.gas_centre.tolist(),
            "velocity_direction": self.v_hat.tolist(),
            "gas_lag_Mpc": self.gas_lag,
            "mass_inside_host_R200m_Msun": self.mass_inside_host,
        }


class Neighbours:
    """Neighbour halos (section 5): a Poisson draw of n_T08(M') [1 + b_T10(M') delta_m(r)] over masses
    [collapsed_M_min, collapsed_M_max_frac M200m] (the range the smooth background removes) and
    R200m + R200m(M') < r < R_gen, isotropic directions; each a full section 2/4 halo (no stripping).
    Particles beyond R_gen are dropped; their mass inside the host's R200m enters the mass closure.
    """

    name = "neighbours"

    def __init__(self, host: HostHalo, cfg: MockConfig):
        self.host, self.cfg = host, cfg
        self.model = substructure.NeighbourModel(
            R200m_host=host.R200m,
            R_gen=cfg.R_gen,
            M_min=cfg.collapsed_M_min,
            M_max=cfg.collapsed_M_max_frac * host.M200m,
            delta_m=host_delta_m(host, cfg),
            params=cfg.cosmology,
            hmf_model=cfg.hmf_model,
            bias_model=cfg.bias_model,
        )
        rng = stream(host.seed, "neighbours/draws")
        M, r = self.model.draw(rng)
        centres = host.centre[None, :] + r[:, None] * substructure.isotropic_directions(rng, M.size)
        self.halos = draw_satellite_halos(rng, host, cfg, M, centres)
        self.gases = [HostGas(h, cfg) for h in self.halos]
        self.dms = [HostDarkMatter(h, cfg, g.closure_mass()) for h, g in zip(self.halos, self.gases)]

    def closure_mass(self) -> float:
        return self._closure

    @functools.cached_property
    def _closure(self) -> float:
        total, R = 0.0, self.host.R200m
        for h, dm, gas in zip(self.halos, self.dms, self.gases):
            for comp, axes in ((dm, h.axes_dm), (gas, h.axes_gas)):
                total += substructure.mass_inside_sphere(
                    comp.r_tab,
                    comp.M_tab,
                    h.centre - self.host.centre,
                    R,
                    axes=axes,
                    rotation=h.rotation,
                    n_dir=128,
                    max_shells=64,
                )
        return total

    def sample(self, rng):
        dm = [d.sample(rng).dm for d in self.dms]
        gas = [g.sample(rng).gas for g in self.gases]
        R = self.cfg.R_gen
        return ComponentOutput(
            dm=_within(ParticleSet.concat(dm), R),
            gas=_within(ParticleSet.concat(gas), R),
            painters=[g.painter() for g in self.gases],
        )

    def meta(self) -> dict:
        return {
            "n_neighbours": len(self.halos),
            "expected_number": self.model.expected_number(),
            "M200m_Msun": [h.M200m for h in self.halos],
            "centre_Mpc": [h.centre.tolist() for h in self.halos],
        }
