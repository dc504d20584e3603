"""Per-cluster mock generator: HYPER-like dark-matter and gas particles of one halo (docs/physics.md sections 2-5, 7).

Section numbers in this module ("section 3") refer to docs/physics.md.

Entry point: :func:`make_cluster` (one halo-catalog row + a :class:`MockConfig` ->
:class:`~massmaps.data.particles.Cluster`).

Design
------
A cluster is the sum of **components**. A component is a small object built from the :class:`HostHalo`
(everything derived from the catalog row and the per-cluster draws) and the config; it reports the mass it
puts inside the host's R200m (:meth:`Component.closure_mass`) and, given its own random stream, returns its
dark-matter and gas particles plus the pressure profiles it paints onto gas (:class:`ComponentOutput`).
The host dark matter is built last and absorbs the remainder so that the spherical-overdensity mass inside
R200m is exactly M200m (mass closure, section 2; a merger secondary comes on top, see
:class:`Merger`). New physics is added as a new entry of :data:`COMPONENTS` and a name in
``MockConfig.components``.

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
import functools
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from .. import cosmology as cosmo_mod
from ..configkeys import reject_unknown_keys
from ..constants import (
    BREMS_COEFF,
    G_MPC_KMS2_PER_MSUN,
    GAUNT_FF_DEFAULT,
    KEV_K,
    M_DM_PARTICLE,
    M_GAS_PARTICLE,
    M_P_G,
    MSUN_PER_MPC3_IN_G_PER_CM3,
    MU_E,
)
from ..cosmology import PAPER, CosmologyParams
from . import profiles, substructure
from .particles import Cluster, ParticleSet, rotate

__all__ = [
    "COMPONENTS",
    "Component",
    "ComponentOutput",
    "HostDarkMatter",
    "HostGas",
    "HostHalo",
    "MockConfig",
    "PressurePainter",
    "SmoothBackground",
    "collapsed_fractions",
    "ellipsoid_axes",
    "gas_thermodynamics",
    "generate_particles",
    "make_cluster",
    "poisson_self_weight",
    "build_components",
    "RawParticles",
    "sample_radial",
    "stream",
]

PRESSURE_MODELS = ("arnaud10", "battaglia12")
PRESSURE_TYPES = ("cool_core", "universal", "disturbed")
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
    def from_mapping(cls, d: Mapping | None) -> "MockConfig":
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
    def coerce(cls, cfg: "MockConfig | Mapping | None") -> "MockConfig":
        return cfg if isinstance(cfg, cls) else cls.from_mapping(cfg)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["components"] = list(self.components)
        return d


# --------------------------------------------------------------------------------------------------
# Random streams
# --------------------------------------------------------------------------------------------------
def stream(seed: int, name: str) -> np.random.Generator:
    """Independent generator for the named quantity of one cluster (stable across components added)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(name.encode()),)))


def _stochastic_round(x: float, rng: np.random.Generator) -> int:
    n = int(np.floor(x))
    return n + int(rng.random() < x - n)


# --------------------------------------------------------------------------------------------------
# Geometry and sampling
# --------------------------------------------------------------------------------------------------
def ellipsoid_axes(q: float, s: float) -> np.ndarray:
    """Volume-preserving semi-axes (a1, a2, a3) = (1, q, s) / (q s)^(1/3) (major, intermediate, minor)."""
    a1 = (q * s) ** (-1.0 / 3.0)
    return np.array([a1, q * a1, s * a1])


def sample_radial(
    rng: np.random.Generator,
    r_tab: np.ndarray,
    M_tab: np.ndarray,
    m_particle: float,
    *,
    axes: np.ndarray | None = None,
    rotation: np.ndarray | None = None,
    centre: np.ndarray | None = None,
) -> ParticleSet:
    """Equal-mass particles of a (stretched, rotated, shifted) spherical profile given by its M(<r) table.

    N = stochastic round of M_tab[-1] / m_particle; r by inverse CDF (linear interpolation of the table);
    isotropic directions; x = r n (*) axes in the principal frame (so the ellipsoidal radius is r), then
    x -> rotation @ x + centre.
    """
    n = _stochastic_round(M_tab[-1] / m_particle, rng)
    u = rng.random(n)
    r = np.interp(u * M_tab[-1], M_tab, r_tab)
    d = rng.standard_normal((n, 3))
    d /= np.linalg.norm(d, axis=1)[:, None]
    pos = r[:, None] * d
    if axes is not None:
        pos *= np.asarray(axes)[None, :]
    if rotation is not None:
        pos = rotate(pos, rotation)
    if centre is not None:
        pos += np.asarray(centre)[None, :]
    return ParticleSet(pos=pos, mass=np.full(n, float(m_particle)))


@dataclass(frozen=True)
class PressurePainter:
    """A pressure profile painted by ellipsoidal radius: P_e(x) = amplitude * profile(r_e) for r_e < r_max.

    r_e = |(R^T (x - centre)) / axes|, with ``rotation`` R the principal -> generated frame matrix.
    """

    profile: Callable
    centre: np.ndarray
    rotation: np.ndarray
    axes: np.ndarray
    r_max: float
    amplitude: float = 1.0

    @property
    def bounding_radius(self) -> float:
        """Radius of the sphere about ``centre`` outside which the painter is zero."""
        return float(self.r_max * np.max(self.axes))

    def radius(self, pos: np.ndarray) -> np.ndarray:
        local = rotate(np.asarray(pos) - self.centre[None, :], self.rotation.T)
        return np.sqrt(np.sum((local / self.axes[None, :]) ** 2, axis=1))

    def __call__(self, pos: np.ndarray) -> np.ndarray:
        r_e = self.radius(pos)
        out = np.zeros(len(r_e))
        inside = r_e < self.r_max
        # Guard the r -> 0 cusp of GNFW profiles.
        out[inside] = self.amplitude * self.profile(np.maximum(r_e[inside], 1e-6))
        return out


# --------------------------------------------------------------------------------------------------
# Host halo: everything derived from the catalog row and the per-cluster draws
# --------------------------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _collapsed_tables(params: CosmologyParams, hmf_model: str, bias_model: str, M_min: float):
    lnM = np.linspace(np.log(M_min), np.log(1e17), 801)
    M = np.exp(lnM)
    n = cosmo_mod.dndlnM(M, params, model=hmf_model)
    b = cosmo_mod.halo_bias(M, params, model=bias_model)
    rho_m = cosmo_mod.rho_m(params)
    fm = M * n / rho_m
    fb = b * M * n / rho_m
    cum = lambda f: np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(lnM))])  # noqa: E731
    return lnM, cum(fm), cum(fb)


def collapsed_fractions(
    M_lo: float, M_hi: float, params: CosmologyParams = PAPER, hmf_model: str = "tinker08", bias_model: str = "tinker10"
) -> tuple[float, float]:
    """(f_coll, Sigma bf) = (int M n dlnM, int b M n dlnM) / rho_m over M200m in [M_lo, M_hi] (section 5)."""
    if M_hi <= M_lo:
        return 0.0, 0.0
    lnM, cm, cb = _collapsed_tables(params, hmf_model, bias_model, float(M_lo))
    x = np.log(M_hi)
    return float(np.interp(x, lnM, cm)), float(np.interp(x, lnM, cb))


@dataclass(frozen=True)
class HostHalo:
    """A halo's derived quantities and per-cluster draws (masses in Msun, radii in Mpc).

    Built for the host from its catalogue row (:meth:`from_row`), and for a merger secondary or a neighbour
    from their draws (:meth:`derive`). Positions (``centre``, ``gas_centre``) are relative to the host DM centre.
    """

    halo_id: int
    seed: int
    M200m: float
    R200m: float
    c200m: float  # after the disturbed factor
    c200m_catalog: float
    nu: float
    r_t: float
    M200c: float
    R200c: float
    c200c: float
    M500c: float
    R500c: float
    rotation: np.ndarray  # principal -> generated frame
    q: float  # b/c of the DM
    s: float  # a/c of the DM
    axes_dm: np.ndarray
    axes_gas: np.ndarray
    pressure_type: str
    P0_factor: float
    c500_factor: float
    gas_amplitude: float
    gas_centre: np.ndarray
    outer_norm: float
    f_coll: float
    sigma_bf: float
    centre: np.ndarray = field(default_factory=lambda: np.zeros(3))  # DM centre
    merger: bool = False  # the host has a merger secondary (section 3)

    @classmethod
    def from_row(cls, halo: Mapping, cfg: MockConfig) -> "HostHalo":
        seed = int(halo["seed"])
        M200m = float(halo["M200m_Msun"])
        R200m = float(halo["R200m_Mpc"])
        c_cat = float(halo["c200m"])
        s = float(halo["axis_ratio_s"])
        q = float(halo["axis_ratio_q"])
        if not (0 < s <= q * (1 + 1e-9) and q <= 1 + 1e-9):
            raise ValueError(f"halo {halo.get('halo_id')}: need 0 < s <= q <= 1, got s={s}, q={q}")
        quat = np.array([halo["rot_qx"], halo["rot_qy"], halo["rot_qz"], halo["rot_qw"]], dtype=float)
        rotation = Rotation.from_quat(quat).as_matrix()
        scatter = cfg.per_cluster_scatter

        def column(name):
            """An optional catalogue column (None when absent or an empty cell)."""
            v = halo.get(name)
            if v is None or (isinstance(v, float) and np.isnan(v)):
                return None
            return v

        # Merger flag (section 3): drawn with p_merge when the merger component is on; a catalogue may fix it
        # with an optional 'merger' column. per_cluster_scatter = False draws no merger.
        merger = False
        if "merger" in cfg.components:
            fixed_merger = column("merger")
            if fixed_merger is not None:
                merger = bool(fixed_merger)
            elif scatter:
                merger = bool(stream(seed, "host/merger").random() < cfg.p_merge)

        # Pressure type (a catalog may fix it with an optional 'pressure_type' column); mergers are disturbed.
        fixed_type = column("pressure_type")
        if fixed_type:
            ptype = str(fixed_type)
            if ptype not in PRESSURE_TYPES:
                raise ValueError(f"pressure_type {ptype!r} not in {PRESSURE_TYPES}")
        elif merger:
            ptype = "disturbed"
        elif scatter:
            probs = cfg.non_merger_type_probabilities()
            ptype = PRESSURE_TYPES[int(stream(seed, "host/pressure_type").choice(3, p=probs))]
        else:
            ptype = "universal"
        disturbed = ptype == "disturbed"

        def lognormal(name, sigma):
            return float(np.exp(sigma * stream(seed, name).standard_normal())) if scatter and sigma > 0 else 1.0

        P0_factor = lognormal("host/P0", cfg.sigma_ln_P0)
        c500_factor = lognormal("host/c500", cfg.sigma_ln_c500)
        gas_amplitude = lognormal("host/gas_rho0", cfg.sigma_ln_gas_rho0)
        outer_norm = cfg.outer_norm * lognormal("host/outer_norm", cfg.sigma_ln_outer_norm)

        sig_off = (cfg.gas_offset_disturbed_R200m if disturbed else cfg.gas_offset_relaxed_R200m) * R200m
        gas_centre = stream(seed, "host/gas_offset").normal(0.0, sig_off, 3) if scatter and sig_off > 0 else np.zeros(3)
        return cls.derive(
            halo_id=int(halo["halo_id"]),
            seed=seed,
            M200m=M200m,
            R200m=R200m,
            c200m_catalog=c_cat,
            s=s,
            q=q,
            rotation=rotation,
            pressure_type=ptype,
            P0_factor=P0_factor,
            c500_factor=c500_factor,
            gas_amplitude=gas_amplitude,
            gas_centre=gas_centre,
            outer_norm=outer_norm,
            cfg=cfg,
            environment=True,
            merger=merger,
        )

    @classmethod
    def derive(
        cls,
        *,
        halo_id: int,
        seed: int,
        M200m: float,
        R200m: float,
        c200m_catalog: float,
        s: float,
        q: float,
        rotation: np.ndarray,
        pressure_type: str,
        P0_factor: float,
        c500_factor: float,
        gas_amplitude: float,
        gas_centre: np.ndarray,
        cfg: MockConfig,
        outer_norm: float = 1.0,
        centre: np.ndarray | None = None,
        environment: bool = False,
        merger: bool = False,
    ) -> "HostHalo":
        """Derived quantities from the draws: disturbed c factor, 200c/500c masses (NFW), nu, r_t, gas axes.

        ``environment`` computes the collapsed fractions the smooth background removes (the host only).
        """
        c = c200m_catalog * (cfg.disturbed_c_factor if pressure_type == "disturbed" else 1.0)
        params = cfg.cosmology
        M200c, R200c, c200c = cosmo_mod.change_mass_definition(M200m, c, "200m", "200c", params)
        M500c, R500c, _ = cosmo_mod.change_mass_definition(M200m, c, "200m", "500c", params)
        nu = float(cosmo_mod.peak_height(M200m, params))
        r_t = profiles.dk14_truncation_radius(R200m, nu, cfg.rt_a, cfg.rt_b)

        k = cfg.gas_ellipticity_scale
        axes_gas = ellipsoid_axes(1.0 - k * (1.0 - q), 1.0 - k * (1.0 - s))
        if environment and cfg.smooth_subtract_collapsed:
            f_coll, sigma_bf = collapsed_fractions(
                cfg.collapsed_M_min, cfg.collapsed_M_max_frac * M200m, params, cfg.hmf_model, cfg.bias_model
            )
        else:
            f_coll, sigma_bf = 0.0, 0.0
        return cls(
            halo_id=int(halo_id),
            seed=int(seed),
            M200m=float(M200m),
            R200m=float(R200m),
            c200m=float(c),
            c200m_catalog=float(c200m_catalog),
            nu=nu,
            r_t=r_t,
            M200c=M200c,
            R200c=R200c,
            c200c=c200c,
            M500c=M500c,
            R500c=R500c,
            rotation=np.asarray(rotation, dtype=float),
            q=float(q),
            s=float(s),
            axes_dm=ellipsoid_axes(q, s),
            axes_gas=axes_gas,
            pressure_type=pressure_type,
            P0_factor=float(P0_factor),
            c500_factor=float(c500_factor),
            gas_amplitude=float(gas_amplitude),
            gas_centre=np.asarray(gas_centre, dtype=float),
            outer_norm=float(outer_norm),
            f_coll=f_coll,
            sigma_bf=sigma_bf,
            centre=np.zeros(3) if centre is None else np.asarray(centre, dtype=float),
            merger=bool(merger),
        )

    def radial_table(self, rho: Callable, cfg: MockConfig):
        """M(<r) table of rho on [r_table_min_R200m R200m, R_gen] (see profiles.enclosed_mass_table)."""
        return profiles.enclosed_mass_table(rho, cfg.r_table_min_R200m * self.R200m, cfg.R_gen, cfg.n_radial_table)

    def meta(self) -> dict:
        d = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = v.tolist() if isinstance(v, np.ndarray) else v
        return d


# --------------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------------
@dataclass
class ComponentOutput:
    dm: ParticleSet | None = None
    gas: ParticleSet | None = None
    painters: list[PressurePainter] = field(default_factory=list)


class Component(Protocol):
    """One physical piece of a cluster. ``closure_mass`` is the mass it places inside the host R200m."""

    name: str

    def closure_mass(self) -> float: ...

    def sample(self, rng: np.random.Generator) -> ComponentOutput: ...


class HostGas:
    """Host ICM: B16 density x type modulation x f_trans on the gas ellipsoid; paints the host pressure."""

    name = "host_gas"

    def __init__(self, host: HostHalo, cfg: MockConfig):
        self.host, self.cfg = host, cfg
        rho_c = cosmo_mod.rho_crit(cfg.cosmology)
        f_b = cfg.cosmology.Ob0 / cfg.cosmology.Om0
        self.density_b16 = profiles.Battaglia16GasDensity(host.M200c, host.R200c, rho_c, f_b, amplitude=host.gas_amplitude)
        if cfg.pressure_model == "arnaud10":
            self.pressure = profiles.Arnaud10Pressure.debiased(
                host.M500c,
                host.R500c,
                b=cfg.hydrostatic_bias,
                kind=host.pressure_type,
                P0_factor=host.P0_factor,
                c500_factor=host.c500_factor,
            )
            self._p_univ = profiles.Arnaud10Pressure(self.pressure.M500, self.pressure.R500, kind="universal")
        else:
            self.pressure = profiles.Battaglia12Pressure(host.M200c, host.R200c, rho_c, f_b, P0_factor=host.P0_factor)
            self._p_univ = None
        self.r_tab, self.M_tab = host.radial_table(self.density, cfg)

    def modulation(self, r):
        """[p_type(x) / p_univ(x)]^(a0 / (1 + (x/x0)^2)), x = r / R500,eff (1 for B12 or when switched off).

        The type's pressure shape includes the c500 scatter; the P0 amplitude scatter is left out, so it
        changes T rather than the gas density.
        """
        r = np.asarray(r, dtype=float)
        if self._p_univ is None or not self.cfg.density_modulation:
            return np.ones_like(r)
        x = r / self.pressure.R500
        p_type = dataclasses.replace(self.pressure, P0_factor=1.0).shape(x)
        a = self.cfg.density_modulation_a0 / (1.0 + (x / self.cfg.density_modulation_x0) ** 2)
        return (p_type / self._p_univ.shape(x)) ** a

    def density(self, r):
        c = self.cfg
        return self.density_b16(r) * self.modulation(r) * profiles.f_trans(r, self.host.r_t, c.dk14_beta, c.dk14_gamma)

    def closure_mass(self) -> float:
        return float(np.interp(self.host.R200m, self.r_tab, self.M_tab))

    def painter(self) -> PressurePainter:
        h = self.host
        return PressurePainter(
            profile=self.pressure,
            centre=h.gas_centre,
            rotation=h.rotation,
            axes=h.axes_gas,
            r_max=self.cfg.paint_radius_R200m * h.R200m,
        )

    def sample(self, rng):
        h = self.host
        gas = sample_radial(rng, self.r_tab, self.M_tab, self.cfg.m_gas, axes=h.axes_gas, rotation=h.rotation, centre=h.gas_centre)
        return ComponentOutput(gas=gas, painters=[self.painter()])


class SmoothBackground:
    """Smooth matter rho_m max(0, (1 - f_coll) + (1 - Sigma bf) delta_m(r)) about the host, out to R_gen.

    Split (Om - Ob) : Ob between dark matter and gas. No painted pressure (the IGM relation applies).
    """

    name = "smooth"

    def __init__(self, host: HostHalo, cfg: MockConfig):
        self.host, self.cfg = host, cfg
        p = cfg.cosmology
        self.rho_m = cosmo_mod.rho_m(p)
        self.f_dm = (p.Om0 - p.Ob0) / p.Om0
        self.r_tab, self.M_tab = host.radial_table(self.density, cfg)

    def delta_m(self, r):
        c, h = self.cfg, self.host
        return profiles.delta_m_outer(r, h.R200m, h.outer_norm, c.outer_slope, c.outer_pivot_R200m, c.outer_max_rho)

    def density(self, r):
        h = self.host
        return self.rho_m * np.maximum(0.0, (1.0 - h.f_coll) + (1.0 - h.sigma_bf) * self.delta_m(r))

    def closure_mass(self) -> float:
        return float(np.interp(self.host.R200m, self.r_tab, self.M_tab))

    def sample(self, rng):
        M_dm, M_gas = self.f_dm * self.M_tab, (1.0 - self.f_dm) * self.M_tab
        dm = sample_radial(rng, self.r_tab, M_dm, self.cfg.m_dm)
        gas = sample_radial(rng, self.r_tab, M_gas, self.cfg.m_gas)
        return ComponentOutput(dm=dm, gas=gas)


class HostDarkMatter:
    """Host DM: A rho_NFW(r) f_trans(r) on the DM ellipsoid; A from M_dm(<R200m) = M200m - other closure mass."""

    name = "host_dm"

    def __init__(self, host: HostHalo, cfg: MockConfig, other_closure_mass: float):
        self.host, self.cfg = host, cfg
        self.r_s = host.R200m / host.c200m
        r_tab, shape_tab = host.radial_table(self.shape, cfg)
        target = host.M200m - other_closure_mass
        if target <= 0:
            raise ValueError(
                f"halo {host.halo_id}: other components put {other_closure_mass:.3e} Msun inside R200m, "
                f"more than M200m = {host.M200m:.3e}"
            )
        self.rho_s = target / float(np.interp(host.R200m, r_tab, shape_tab))
        self.r_tab, self.M_tab = r_tab, self.rho_s * shape_tab

    def shape(self, r):
        c = self.cfg
        return profiles.nfw_shape(np.asarray(r) / self.r_s) * profiles.f_trans(r, self.host.r_t, c.dk14_beta, c.dk14_gamma)

    def density(self, r):
        return self.rho_s * self.shape(r)

    def closure_mass(self) -> float:
        return float(np.interp(self.host.R200m, self.r_tab, self.M_tab))

    def sample(self, rng):
        h = self.host
        return ComponentOutput(
            dm=sample_radial(
                rng, self.r_tab, self.M_tab, self.cfg.m_dm, axes=h.axes_dm, rotation=h.rotation, centre=h.centre
            )
        )


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
        f = (lambda sig, z: float(np.exp(sig * z)) if scatter else 1.0)  # noqa: E731
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
        for i, (r, M_dm, M_gas) in enumerate(self.tables):
            n = _stochastic_round(self.m[i] / cfg.m_dm, rng)
            x_t = self.r_t[i] / self.r_s[i]
            rr = self.r_s[i] * profiles.nfw_inverse_cdf(rng.random(n), x_t)
            dm.append(ParticleSet(pos=self.centres[i] + rr[:, None] * substructure.isotropic_directions(rng, n),
                                  mass=np.full(n, cfg.m_dm)))
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
            rng, host, cfg, np.array([self.xi * host.M200m]), centre[None, :],
            gas_centres=gas_centre[None, :], pressure_type="disturbed",
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
                    comp.r_tab, comp.M_tab, h.centre - self.host.centre, R, axes=axes, rotation=h.rotation,
                    n_dir=128, max_shells=64,
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
