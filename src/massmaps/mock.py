"""Per-cluster mock generator: HYPER-like dark-matter and gas particles of one halo (PHYSICS.md sections 2-5, 7).

Entry point: :func:`make_cluster` (one halo-catalog row + a :class:`MockConfig` -> :class:`~massmaps.particles.Cluster`).

Design
------
A cluster is the sum of **components**. A component is a small object built from the :class:`HostHalo`
(everything derived from the catalog row and the per-cluster draws) and the config; it reports the mass it
puts inside the host's R200m (:meth:`Component.closure_mass`) and, given its own random stream, returns its
dark-matter and gas particles plus the pressure profiles it paints onto gas (:class:`ComponentOutput`).
The host dark matter is built last and absorbs the remainder so that the spherical-overdensity mass inside
R200m is exactly M200m (mass closure, PHYSICS section 2). New physics (subhalos, a merger secondary,
neighbours) is added as a new entry of :data:`COMPONENTS` and a name in ``MockConfig.components``.

This issue's components:

* ``host_dm`` (always present): triaxial DK14-truncated NFW, normalised by mass closure.
* ``host_gas``: Battaglia 2016 gas density x pressure-type modulation x the same DK14 truncation, on
  rounder axes about an offset gas centre; paints Arnaud 2010 (or Battaglia 2012) electron pressure.
* ``smooth``: the smooth matter background rho_m [(1 - f_coll) + (1 - Sigma bf) delta_m(r)] out to R_gen,
  split (Om - Ob) : Ob between dark matter and gas; its gas gets the IGM temperature-density relation.

After sampling: SPH smoothing lengths and densities per species (:mod:`massmaps.sph`), then per gas
particle P_e = sum of painted profiles, floored at n_e k T_IGM(rho_j); kT = P_e / n_e with n_e from the SPH
density; T >= T_floor; bolometric bremsstrahlung l = 1.4e-27 g_ff T^1/2 mu_e n_e^2.

Randomness: every draw comes from ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(crc32(name),)))``
with one stream per named quantity or component, so the same row and config give identical bytes, and
adding a component or toggling one draw does not change the other draws.
"""

from __future__ import annotations

import dataclasses
import difflib
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Mapping, Protocol

import numpy as np
from scipy.spatial.transform import Rotation

from . import cosmology as cosmo_mod
from . import profiles
from .constants import BREMS_COEFF, KEV_K, M_DM_PARTICLE, M_GAS_PARTICLE, M_P_G, MSUN_PER_MPC3_IN_G_PER_CM3, MU_E
from .cosmology import PAPER, CosmologyParams
from .particles import Cluster, ParticleSet

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
    """Every knob of the mock, with PHYSICS.md defaults. Build from YAML with :meth:`from_mapping`."""

    # Particles and sampling (section 0, 2)
    m_dm: float = M_DM_PARTICLE  # Msun
    m_gas: float = M_GAS_PARTICLE  # Msun
    R_gen: float = 12.5  # Mpc, radius out to which every component is sampled
    n_radial_table: int = 2000  # log-spaced radii of the M(<r) tables
    r_table_min_R200m: float = 1e-3  # innermost table radius in units of R200m
    components: tuple[str, ...] = ("host_gas", "smooth")  # host_dm is always present
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
    sigma_ln_outer_norm: float = 0.0  # optional environment scatter (UNSURE, PHYSICS suggests 0.4)
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
    g_ff: float = 1.2
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

    @classmethod
    def from_mapping(cls, d: Mapping | None) -> "MockConfig":
        """Build from a plain mapping (e.g. YAML). Unknown keys raise ValueError naming them."""
        if d is None:
            return cls()
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(str(k), sorted(names), n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"unknown MockConfig key(s): {', '.join(hints)}")
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
        pos = pos @ np.asarray(rotation).T
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

    def radius(self, pos: np.ndarray) -> np.ndarray:
        local = (np.asarray(pos) - self.centre[None, :]) @ self.rotation
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
    """(f_coll, Sigma bf) = (int M n dlnM, int b M n dlnM) / rho_m over M200m in [M_lo, M_hi] (PHYSICS section 5)."""
    if M_hi <= M_lo:
        return 0.0, 0.0
    lnM, cm, cb = _collapsed_tables(params, hmf_model, bias_model, float(M_lo))
    x = np.log(M_hi)
    return float(np.interp(x, lnM, cm)), float(np.interp(x, lnM, cb))


@dataclass(frozen=True)
class HostHalo:
    """The host's derived quantities and per-cluster draws (masses in Msun, radii in Mpc)."""

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

        # Pressure type (a catalog may fix it with an optional 'pressure_type' column).
        fixed_type = halo.get("pressure_type")
        if isinstance(fixed_type, float) and np.isnan(fixed_type):  # an empty catalogue cell
            fixed_type = None
        if fixed_type:
            ptype = str(fixed_type)
            if ptype not in PRESSURE_TYPES:
                raise ValueError(f"pressure_type {ptype!r} not in {PRESSURE_TYPES}")
        elif scatter:
            probs = [cfg.p_cool_core, cfg.p_universal, cfg.p_disturbed]
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

        c = c_cat * (cfg.disturbed_c_factor if disturbed else 1.0)
        params = cfg.cosmology
        M200c, R200c, c200c = cosmo_mod.change_mass_definition(M200m, c, "200m", "200c", params)
        M500c, R500c, _ = cosmo_mod.change_mass_definition(M200m, c, "200m", "500c", params)
        nu = float(cosmo_mod.peak_height(M200m, params))
        r_t = profiles.dk14_truncation_radius(R200m, nu, cfg.rt_a, cfg.rt_b)

        k = cfg.gas_ellipticity_scale
        axes_gas = ellipsoid_axes(1.0 - k * (1.0 - q), 1.0 - k * (1.0 - s))
        sig_off = (cfg.gas_offset_disturbed_R200m if disturbed else cfg.gas_offset_relaxed_R200m) * R200m
        gas_centre = stream(seed, "host/gas_offset").normal(0.0, sig_off, 3) if scatter and sig_off > 0 else np.zeros(3)

        if cfg.smooth_subtract_collapsed:
            f_coll, sigma_bf = collapsed_fractions(
                cfg.collapsed_M_min, cfg.collapsed_M_max_frac * M200m, params, cfg.hmf_model, cfg.bias_model
            )
        else:
            f_coll, sigma_bf = 0.0, 0.0
        return cls(
            halo_id=int(halo["halo_id"]),
            seed=seed,
            M200m=M200m,
            R200m=R200m,
            c200m=c,
            c200m_catalog=c_cat,
            nu=nu,
            r_t=r_t,
            M200c=M200c,
            R200c=R200c,
            c200c=c200c,
            M500c=M500c,
            R500c=R500c,
            rotation=rotation,
            q=q,
            s=s,
            axes_dm=ellipsoid_axes(q, s),
            axes_gas=axes_gas,
            pressure_type=ptype,
            P0_factor=P0_factor,
            c500_factor=c500_factor,
            gas_amplitude=gas_amplitude,
            gas_centre=np.asarray(gas_centre, dtype=float),
            outer_norm=outer_norm,
            f_coll=f_coll,
            sigma_bf=sigma_bf,
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
        return ComponentOutput(dm=sample_radial(rng, self.r_tab, self.M_tab, self.cfg.m_dm, axes=h.axes_dm, rotation=h.rotation))


#: Registry of optional components, by the name used in ``MockConfig.components``.
COMPONENTS: dict[str, Callable[[HostHalo, MockConfig], Component]] = {
    "host_gas": HostGas,
    "smooth": SmoothBackground,
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
    P = np.zeros(len(rho))
    for p in painters:
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


def _with_sph(ps: ParticleSet, cfg: MockConfig) -> ParticleSet:
    from .kernels import KERNEL_NORM_3D
    from .sph import smoothing_lengths_and_density

    if len(ps) == 0:
        return ParticleSet(pos=ps.pos, mass=ps.mass, hsml=np.zeros(0), density=np.zeros(0))
    H, rho = smoothing_lengths_and_density(ps.pos, ps.mass, n_ngb=cfg.n_ngb, workers=cfg.sph_workers)
    if cfg.density_estimator == "poisson_unbiased":
        rho = rho - (1.0 - poisson_self_weight(cfg.n_ngb)) * ps.mass * KERNEL_NORM_3D / H**3
    return ParticleSet(pos=ps.pos, mass=ps.mass, hsml=H, density=rho)


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
        }
    return RawParticles(host, comps, ParticleSet.concat(dm_parts), ParticleSet.concat(gas_parts), painters, comp_meta)


def make_cluster(halo: Mapping, cfg: MockConfig | Mapping | None = None) -> Cluster:
    """Generate one cluster's particles (positions about the host DM centre) with SPH and gas thermodynamics.

    ``halo`` is one halo-catalog row with keys halo_id, M200m_Msun, R200m_Mpc, c200m, axis_ratio_s,
    axis_ratio_q, rot_qx, rot_qy, rot_qz, rot_qw, seed (optional: pressure_type); other keys are ignored.
    The same row and config give identical arrays.
    """
    cfg = MockConfig.coerce(cfg)
    raw = generate_particles(halo, cfg)
    dm = _with_sph(raw.dm, cfg)
    gas = _with_sph(raw.gas, cfg)
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
    )
    return Cluster(dm=dm, gas=gas, meta=meta)
