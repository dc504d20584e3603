"""Per-cluster mock generator: HYPER-like dark-matter and gas particles of one halo (docs/physics.md sections 2-5, 7).

Section numbers in this module ("section 3") refer to docs/physics.md.

Entry point: :func:`make_cluster` (one halo-catalog row + a :class:`MockConfig` ->
:class:`~massmaps.data.particles.Cluster`).

This module holds the configuration (:class:`MockConfig`), the registry of components (:data:`COMPONENTS`)
and the steps from a catalogue row to a cluster; the host halo, the sampling primitives and the host's
components are in :mod:`massmaps.data.mock_host`, the subhalos, merger and neighbours in
:mod:`massmaps.data.mock_satellites`.

Design
------
A cluster is the sum of **components**. A component is a small object built from the
:class:`~massmaps.data.mock_host.HostHalo` (everything derived from the catalog row and the per-cluster
draws) and the config; it reports the mass it puts inside the host's R200m
(:meth:`~massmaps.data.mock_host.Component.closure_mass`) and, given its own random stream, returns its
dark-matter and gas particles plus the pressure profiles it paints onto gas
(:class:`~massmaps.data.mock_host.ComponentOutput`). The host dark matter is built last and absorbs the
remainder so that the spherical-overdensity mass inside R200m is exactly M200m (mass closure, section 2; a
merger secondary comes on top, see :class:`~massmaps.data.mock_satellites.Merger`). New physics is added
as a new entry of :data:`COMPONENTS` and a name in ``MockConfig.components``.

Components (``MockConfig.components``, all on by default):

* ``host_dm`` (always present): triaxial DK14-truncated NFW, normalised by mass closure.
* ``host_gas``: Battaglia 2016 gas density x pressure-type modulation x the same DK14 truncation, on
  rounder axes about an offset gas centre; paints Arnaud 2010 (or Battaglia 2012) electron pressure.
* ``smooth``: the smooth matter background rho_m [(1 - f_coll) + (1 - Sigma bf) delta_m(r)] out to R_gen,
  split (Om - Ob) : Ob between dark matter and gas; its gas gets the IGM temperature-density relation.
* ``subhalos`` (section 3): subhalo mass function above subhalo_min_particles DM particle masses, Gao et al.
  radii on the host ellipsoid, NFW cut at the Jacobi radius, B16 gas kept inside the ram-pressure stripping
  radius (retained gas paints its pressure, scaled by the retained fraction); in the mass closure.
* ``merger`` (section 3): with probability p_merge a secondary of mass ratio xi at 0.5-1.5 R200m whose gas
  lags its DM; the host is then disturbed. Added on top of the catalogue M200m (not in the closure).
* ``neighbours`` (section 5): halos of 1e12 - M200m/2 from the biased mass function between R200m + R200m(M')
  and R_gen, each with DM, gas and pressure. The smooth background already lacks their mass (f_coll, Sigma bf).

The pure draws of these three (mass function, radii, tidal and stripping radii, neighbour intensity) are in
:mod:`massmaps.data.substructure`.

After sampling: SPH smoothing lengths and densities per species (:mod:`massmaps.projection.sph`), then per gas
particle P_e = sum of painted profiles, floored at n_e k T_IGM(rho_j); kT = P_e / n_e with n_e from the SPH
density; T >= T_floor; bolometric bremsstrahlung l = 1.4e-27 g_ff T^1/2 mu_e n_e^2.

Randomness: every draw comes from ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(crc32(name),)))``
with one stream per named quantity or component, so the same row and config give identical bytes, and
adding a component or toggling one draw does not change the other draws.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import cosmology as cosmo_mod
from ..configkeys import reject_unknown_keys
from ..constants import (
    BREMS_COEFF,
    GAUNT_FF_DEFAULT,
    KEV_K,
    M_DM_PARTICLE,
    M_GAS_PARTICLE,
    M_P_G,
    MSUN_PER_MPC3_IN_G_PER_CM3,
    MU_E,
)
from ..cosmology import PAPER, CosmologyParams
from . import profiles
from .mock_host import Component, HostDarkMatter, HostGas, HostHalo, PressurePainter, SmoothBackground, stream
from .mock_satellites import Merger, Neighbours, Subhalos
from .particles import Cluster, ParticleSet

__all__ = [
    "COMPONENTS",
    "MockConfig",
    "gas_thermodynamics",
    "generate_particles",
    "make_cluster",
    "poisson_self_weight",
    "build_components",
    "RawParticles",
]

PRESSURE_MODELS = ("arnaud10", "battaglia12")
DENSITY_ESTIMATORS = ("poisson_unbiased", "sph")


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MockConfig:
    """Every knob of the mock, with the defaults of docs/physics.md. Build from YAML with :meth:`from_mapping`."""

    # Particles and sampling (section 0, 2)
    m_dm: float = M_DM_PARTICLE  # Msun
    m_gas: float = M_GAS_PARTICLE  # Msun
    R_gen: float = 12.5  # Mpc, radius out to which every component is sampled
    n_radial_table: int = 2000  # log-spaced radii of the M(<r) tables
    r_table_min_R200m: float = 1e-3  # innermost table radius in units of R200m
    # host_dm is always present; order = sampling order of the particles
    components: tuple[str, ...] = ("host_gas", "smooth", "subhalos", "merger", "neighbours")
    # SPH (section 7)
    n_ngb: int = 64
    sph_workers: int = 2
    # "poisson_unbiased": SPH density with the self term rescaled so that the volumes m/rho are unbiased
    # for our Poisson-sampled particles (see poisson_self_weight); "sph": the plain kernel sum (Eq. 1).
    density_estimator: str = "poisson_unbiased"
    # Master switch for all per-cluster random draws below (False: universal type, no scatter, no offset)
    per_cluster_scatter: bool = True
    # Host halo truncation and outer term (section 2; DK14 mass-selected, colossus-capped power law)
    dk14_beta: float = 4.0
    dk14_gamma: float = 8.0
    rt_a: float = 1.9  # r_t = (rt_a - rt_b nu) R200m
    rt_b: float = 0.18
    outer_norm: float = 1.0  # b_e
    outer_slope: float = 1.5  # s_e
    outer_pivot_R200m: float = 5.0
    outer_max_rho: float = 1000.0
    sigma_ln_outer_norm: float = 0.0  # optional environment scatter (UNSURE; 0.4 is plausible, section 2)
    disturbed_c_factor: float = 0.8  # c200m multiplier of disturbed hosts
    # Smooth background (section 5)
    smooth_subtract_collapsed: bool = True  # remove f_coll and Sigma bf of halos in [M_min, frac*M200m]
    collapsed_M_min: float = 1e12  # Msun
    collapsed_M_max_frac: float = 0.5
    hmf_model: str = "tinker08"
    bias_model: str = "tinker10"
    # IGM (section 5)
    T_igm0_K: float = 1e4
    gamma_igm: float = 1.6
    T_floor_K: float = 1e4
    # Host gas (section 4)
    gas_ellipticity_scale: float = 0.5  # 1 - q_g = scale (1 - q_dm), same for s
    sigma_ln_gas_rho0: float = 0.10
    gas_offset_relaxed_R200m: float = 0.02  # per-axis sigma of the gas-centre offset
    gas_offset_disturbed_R200m: float = 0.05
    # Pressure (section 4)
    pressure_model: str = "arnaud10"  # or "battaglia12"
    hydrostatic_bias: float = 0.2  # A10 evaluated at (1-b) M500c, (1-b)^(1/3) R500c
    p_cool_core: float = 0.35
    p_universal: float = 0.30
    p_disturbed: float = 0.35
    sigma_ln_P0: float = 0.15
    sigma_ln_c500: float = 0.15
    density_modulation: bool = True  # rho_gas *= [p_type/p_univ]^(a0 / (1 + (x/x0)^2)) (A10 model only)
    density_modulation_a0: float = 1.5
    density_modulation_x0: float = 0.3
    paint_radius_R200m: float = 2.0  # painted profiles are cut at this ellipsoidal radius
    # Emission (section 6)
    g_ff: float = GAUNT_FF_DEFAULT
    # Halos drawn by the mock itself: merger secondary and neighbours (sections 2, 5); the host's c comes
    # from the catalogue. c = clip(c_model(M) 10^N(0, sigma), c_min, c_max), x disturbed_c_factor if disturbed.
    concentration_model: str = "diemer19"
    sigma_log10_c: float = 0.15
    c_min: float = 2.0
    c_max: float = 20.0
    # Subhalos (section 3): dN/dln psi = A psi^-alpha exp(-beta psi^3), A = 10^log10_A0 (M200m h)^A_mass_slope,
    # for m >= subhalo_min_particles m_dm and psi <= subhalo_psi_max; Gao et al. 2004 radii.
    subhalo_min_particles: float = 50.0
    subhalo_psi_max: float = 0.5
    subhalo_log10_A0: float = -3.2  # UNSURE (Giocoli amplitude; one implementation uses -3.03)
    subhalo_A_mass_slope: float = 0.1
    subhalo_alpha: float = 0.9
    subhalo_beta: float = 12.2715
    gao_a: float = 0.244  # UNSURE (from memory)
    gao_alpha: float = 2.0  # UNSURE
    gao_beta: float = 2.75  # UNSURE
    subhalo_c_factor: float = 1.0  # UNSURE (optionally 1.3)
    subhalo_rt_max_R200m: float = 1.0  # design choice: r_t <= this x the subhalo's own R200m
    ram_pressure_alpha: float = 2.0  # UNSURE (McCarthy et al. 2008, from memory)
    subhalo_fv_min: float = 0.8  # v = f_v V_c,host(d), f_v ~ U(min, max)
    subhalo_fv_max: float = 1.6
    # Major merger (section 3, UNSURE rates: design choice)
    p_merge: float = 0.25
    merger_xi_min: float = 0.1  # mass ratio, log-uniform
    merger_xi_max: float = 0.5
    merger_d_min_R200m: float = 0.5  # 3D separation, uniform, in units of the host R200m
    merger_d_max_R200m: float = 1.5
    merger_gas_lag_min_Mpc: float = 0.05  # secondary gas lags its DM along -v, uniform
    merger_gas_lag_max_Mpc: float = 0.25
    # Neighbours (section 5): masses in [collapsed_M_min, collapsed_M_max_frac M200m], the range the smooth
    # background removes, at R200m + R200m(M') < r < R_gen.
    # Cosmology (section 0)
    cosmology: CosmologyParams = PAPER

    def __post_init__(self):
        if self.density_estimator not in DENSITY_ESTIMATORS:
            raise ValueError(f"density_estimator must be one of {DENSITY_ESTIMATORS}, got {self.density_estimator!r}")
        if self.pressure_model not in PRESSURE_MODELS:
            raise ValueError(f"pressure_model must be one of {PRESSURE_MODELS}, got {self.pressure_model!r}")
        unknown = [c for c in self.components if c not in COMPONENTS]
        if unknown:
            raise ValueError(f"unknown component(s) {unknown}; available: {sorted(COMPONENTS)} (host_dm is implicit)")
        probs = np.array([self.p_cool_core, self.p_universal, self.p_disturbed])
        if np.any(probs < 0) or abs(probs.sum() - 1.0) > 1e-9:
            raise ValueError(f"p_cool_core + p_universal + p_disturbed must be non-negative and sum to 1, got {probs}")
        if self.n_ngb < 2 or self.n_radial_table < 10:
            raise ValueError("n_ngb must be >= 2 and n_radial_table >= 10")
        if not (0.0 <= self.hydrostatic_bias < 1.0):
            raise ValueError("hydrostatic_bias must be in [0, 1)")
        if len(set(self.components)) != len(self.components):
            raise ValueError(f"components must not repeat, got {list(self.components)}")
        for lo, hi in (
            ("merger_xi_min", "merger_xi_max"),
            ("merger_d_min_R200m", "merger_d_max_R200m"),
            ("merger_gas_lag_min_Mpc", "merger_gas_lag_max_Mpc"),
            ("subhalo_fv_min", "subhalo_fv_max"),
            ("c_min", "c_max"),
        ):
            if not (0.0 <= getattr(self, lo) <= getattr(self, hi)):
                raise ValueError(f"need 0 <= {lo} <= {hi}, got {getattr(self, lo)} and {getattr(self, hi)}")
        if not (0.0 <= self.p_merge <= 1.0):
            raise ValueError(f"p_merge must be in [0, 1], got {self.p_merge}")
        if self.merger_xi_min <= 0 or self.merger_xi_max > 1:
            raise ValueError("merger mass ratios must lie in (0, 1]")
        if not (0.0 < self.subhalo_psi_max <= 1.0) or self.subhalo_min_particles <= 0:
            raise ValueError("need 0 < subhalo_psi_max <= 1 and subhalo_min_particles > 0")

    def non_merger_type_probabilities(self) -> np.ndarray:
        """Pressure-type probabilities (CC, universal, MD) of hosts without a merger.

        Mergers are disturbed, so with the merger component on the disturbed share of the others is
        p_disturbed - p_merge (floored at 0), renormalised: the overall type fractions stay
        (p_cool_core, p_universal, p_disturbed) and the merger fraction p_merge while p_merge <= p_disturbed.
        """
        p = np.array([self.p_cool_core, self.p_universal, self.p_disturbed], dtype=float)
        if "merger" in self.components and self.p_merge > 0:
            if self.p_merge >= 1.0:
                return p  # never used: every host merges
            p[2] = max(p[2] - self.p_merge, 0.0)
            p /= p.sum()
        return p

    @classmethod
    def from_mapping(cls, d: Mapping | None) -> MockConfig:
        """Build from a plain mapping (e.g. YAML). Unknown keys raise ValueError naming them."""
        if d is None:
            return cls()
        reject_unknown_keys(cls, d, "MockConfig")
        kw = dict(d)
        if "components" in kw:
            kw["components"] = tuple(kw["components"])
        if "cosmology" in kw and not isinstance(kw["cosmology"], CosmologyParams):
            c = dict(kw["cosmology"])
            cnames = {f.name for f in dataclasses.fields(CosmologyParams)}
            bad = sorted(set(c) - cnames)
            if bad:
                raise ValueError(f"unknown cosmology key(s) {bad}; allowed: {sorted(cnames)}")
            kw["cosmology"] = CosmologyParams(**c)
        return cls(**kw)

    @classmethod
    def coerce(cls, cfg: MockConfig | Mapping | None) -> MockConfig:
        return cfg if isinstance(cfg, cls) else cls.from_mapping(cfg)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["components"] = list(self.components)
        return d


#: Registry of optional components, by the name used in ``MockConfig.components``.
COMPONENTS: dict[str, Callable[[HostHalo, MockConfig], Component]] = {
    "host_gas": HostGas,
    "smooth": SmoothBackground,
    "subhalos": Subhalos,
    "merger": Merger,
    "neighbours": Neighbours,
}


# --------------------------------------------------------------------------------------------------
# Gas thermodynamics
# --------------------------------------------------------------------------------------------------
def gas_thermodynamics(pos, rho, painters, cfg: MockConfig):
    """Per gas particle: (P_e [keV cm^-3], kT [keV], l_bol [erg s^-1 cm^-3]) from the painted profiles.

    P_e = sum of painters, floored at n_e k T_IGM(rho); kT = P_e / n_e, floored at T_floor (then
    P_e = n_e kT); n_e = rho / (mu_e m_p) from the SPH density rho [Msun/Mpc^3];
    l = 1.4e-27 g_ff T^1/2 mu_e n_e^2 with T in K.
    """
    rho = np.asarray(rho, dtype=float)
    pos = np.asarray(pos, dtype=float)
    P = np.zeros(len(rho))
    tree = None
    for p in painters:
        # Small painters (subhalos, neighbours) are evaluated only on the particles of their bounding sphere.
        if len(painters) > 1 and len(pos) > 1000 and p.bounding_radius < 0.25 * cfg.R_gen:
            if tree is None:
                from scipy.spatial import cKDTree

                tree = cKDTree(pos)
            idx = np.asarray(tree.query_ball_point(p.centre, p.bounding_radius, workers=cfg.sph_workers), dtype=np.intp)
            if idx.size:
                P[idx] += p(pos[idx])
        else:
            P += p(pos)
    n_e = rho * MSUN_PER_MPC3_IN_G_PER_CM3 / (MU_E * M_P_G)
    T_igm = profiles.t_igm(rho, cosmo_mod.rho_b(cfg.cosmology), cfg.T_igm0_K, cfg.gamma_igm)
    P = np.maximum(P, n_e * T_igm / KEV_K)
    kT = np.maximum(P / n_e, cfg.T_floor_K / KEV_K)
    P = n_e * kT
    l_bol = BREMS_COEFF * cfg.g_ff * np.sqrt(kT * KEV_K) * MU_E * n_e**2
    return P, kT, l_bol


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------
def build_components(host: HostHalo, cfg: MockConfig) -> list:
    """The host DM (closure-normalised) followed by the configured components, in config order."""
    others = [COMPONENTS[name](host, cfg) for name in cfg.components]
    host_dm = HostDarkMatter(host, cfg, sum(c.closure_mass() for c in others))
    return [host_dm, *others]


@lru_cache(maxsize=8)
def poisson_self_weight(n_ngb: int, n_samples: int = 100_000) -> float:
    """Self-term weight w of the SPH density that makes m / rho unbiased for Poisson-sampled particles.

    The mock's particles are drawn independently (a Poisson process locally), unlike the relaxed particles
    of a simulation. With H the distance to the n_ngb-th neighbour (self included), the plain kernel sum
    rho = m W(0, H) + sum_others m W overestimates the density by ~23% at n_ngb = 64 (the self term), so the
    SPH volumes m / rho and the partition of unity sum_j (m_j / rho_j) W(x - x_j) come out ~13% low, and with
    them y and the temperature. For a Poisson process, given H, the other n_ngb - 2 particles inside H are
    uniform in the ball and n (4 pi / 3) H^3 ~ Gamma(n_ngb - 1), so with
    rho_hat = m K [w + S] / H^3 (K = 21 / 2 pi, S = sum_i (1 - q_i)^4 (1 + 4 q_i), q_i with density 3 q^2),
    E[1 / rho_hat] = 1 / rho  <=>  E[1 / (w + S)] = 14 / (n_ngb - 1). Solved with a fixed-seed Monte Carlo
    of S (deterministic; w = 0.342 at n_ngb = 64, 0.32 at 32, 0.35 at 100).
    """
    from scipy.optimize import brentq

    rng = np.random.default_rng(20240531)
    S = np.zeros(n_samples)
    for _ in range(n_ngb - 2):
        q = rng.random(n_samples) ** (1.0 / 3.0)
        S += (1.0 - q) ** 4 * (1.0 + 4.0 * q)
    target = 14.0 / (n_ngb - 1)
    return float(brentq(lambda w: np.mean(1.0 / (w + S)) - target, -S.min() + 1e-12, 50.0, xtol=1e-12))


def _with_sph(ps: ParticleSet, cfg: MockConfig, keep: np.ndarray | None = None) -> ParticleSet:
    """Smoothing lengths and densities; with a ``keep`` mask only the kept particles are returned (every
    particle still serves as a neighbour, so theirs are the values the whole set would give)."""
    from ..projection.kernels import KERNEL_NORM_3D
    from ..projection.sph import smoothing_lengths_and_density

    if keep is not None and len(ps):
        keep = np.asarray(keep, dtype=bool)
        if keep.all():
            keep = None
    if len(ps) == 0 or (keep is not None and not keep.any()):
        return ParticleSet(pos=np.zeros((0, 3)), mass=np.zeros(0), hsml=np.zeros(0), density=np.zeros(0))
    H, rho = smoothing_lengths_and_density(ps.pos, ps.mass, n_ngb=cfg.n_ngb, workers=cfg.sph_workers, query=keep)
    pos, mass = (ps.pos, ps.mass) if keep is None else (ps.pos[keep], ps.mass[keep])
    if cfg.density_estimator == "poisson_unbiased":
        rho = rho - (1.0 - poisson_self_weight(cfg.n_ngb)) * mass * KERNEL_NORM_3D / H**3
    return ParticleSet(pos=pos, mass=mass, hsml=H, density=rho)


@dataclass
class RawParticles:
    """Particles of one cluster before SPH: the host, its components, and the pressure painters."""

    host: HostHalo
    components: list
    dm: ParticleSet
    gas: ParticleSet
    painters: list[PressurePainter]
    component_meta: dict


def generate_particles(halo: Mapping, cfg: MockConfig | Mapping | None = None) -> RawParticles:
    """Draw every component's particles (no SPH yet). Dark matter first from host_dm, then config order."""
    cfg = MockConfig.coerce(cfg)
    host = HostHalo.from_row(halo, cfg)
    comps = build_components(host, cfg)
    dm_parts, gas_parts, painters, comp_meta = [], [], [], {}
    for comp in comps:
        out = comp.sample(stream(host.seed, "component/" + comp.name))
        if out.dm is not None:
            dm_parts.append(out.dm)
        if out.gas is not None:
            gas_parts.append(out.gas)
        painters.extend(out.painters)
        comp_meta[comp.name] = {
            "closure_mass_Msun": comp.closure_mass(),
            "n_dm": 0 if out.dm is None else len(out.dm),
            "n_gas": 0 if out.gas is None else len(out.gas),
            **(comp.meta() if hasattr(comp, "meta") else {}),
        }
    return RawParticles(host, comps, ParticleSet.concat(dm_parts), ParticleSet.concat(gas_parts), painters, comp_meta)


def make_cluster(
    halo: Mapping,
    cfg: MockConfig | Mapping | None = None,
    *,
    views: Sequence[np.ndarray | None] | None = None,
    half_Mpc: float | None = None,
) -> Cluster:
    """Generate one cluster's particles (positions about the host DM centre) with SPH and gas thermodynamics.

    ``halo`` is one halo-catalog row with keys halo_id, M200m_Msun, R200m_Mpc, c200m, axis_ratio_s,
    axis_ratio_q, rot_qx, rot_qy, rot_qz, rot_qw, seed (optional: pressure_type); other keys are ignored.
    The same row and config give identical arrays.

    With ``views`` (rotation matrices, ``None`` for the identity) and ``half_Mpc`` (half the maps' side),
    only the particles that one of those views projects are kept (:func:`massmaps.projection.observables.in_views`):
    every particle is drawn and serves as an SPH neighbour, but smoothing lengths, densities and
    thermodynamics are computed for the kept ones only. Their values, and so the maps of those views,
    are identical to those of the whole cluster; a cluster seen along the three axes only skips about
    45% of the work, the sphere of radius ``R_gen`` being much larger than the maps' cube.
    """
    cfg = MockConfig.coerce(cfg)
    raw = generate_particles(halo, cfg)
    keep_dm = keep_gas = None
    if views is not None:
        from ..projection.observables import in_views

        if half_Mpc is None or not half_Mpc > 0:
            raise ValueError(f"make_cluster: views need half_Mpc > 0 (half the maps' side), got {half_Mpc!r}")
        keep_dm = in_views(raw.dm.pos, views, half_Mpc)
        keep_gas = in_views(raw.gas.pos, views, half_Mpc)
    dm = _with_sph(raw.dm, cfg, keep_dm)
    gas = _with_sph(raw.gas, cfg, keep_gas)
    P, kT, l_bol = gas_thermodynamics(gas.pos, gas.density, raw.painters, cfg)
    gas = dataclasses.replace(gas, pressure_e=P, temperature_keV=kT, xray_emissivity=l_bol)

    comps = raw.components
    meta = raw.host.meta()
    pressure = next((c.pressure for c in comps if isinstance(c, HostGas)), None)
    meta.update(
        pressure_model=cfg.pressure_model,
        density_estimator=cfg.density_estimator,
        sph_self_weight=poisson_self_weight(cfg.n_ngb) if cfg.density_estimator == "poisson_unbiased" else 1.0,
        M500_eff=getattr(pressure, "M500", None),
        R500_eff=getattr(pressure, "R500", None),
        rho_s_dm=comps[0].rho_s,
        r_s=comps[0].r_s,
        components=raw.component_meta,
        n_dm=len(dm),
        n_gas=len(gas),
        n_dm_drawn=len(raw.dm),
        n_gas_drawn=len(raw.gas),
    )
    return Cluster(dm=dm, gas=gas, meta=meta)
