"""The mock's host halo and the building blocks of every component (docs/physics.md sections 2, 4 and 5).

Section numbers in this module ("section 2") refer to docs/physics.md; :mod:`massmaps.data.mock` describes
the design and assembles a cluster from the components.

* Random streams (:func:`stream`): one independent generator per named quantity of a cluster.
* Sampling: equal-mass particles of a (stretched, rotated, shifted) radial profile from its M(<r) table
  (:func:`sample_radial`), and pressure profiles painted onto gas by ellipsoidal radius
  (:class:`PressurePainter`).
* :class:`HostHalo`: everything derived from a catalogue row and the per-cluster draws (merger flag,
  pressure type, amplitude scatter, gas offset, mass definitions, truncation radius, collapsed fractions).
* The component protocol (:class:`Component`, :class:`ComponentOutput`) and the host's own components:
  :class:`HostGas` (``host_gas``), :class:`SmoothBackground` (``smooth``) and :class:`HostDarkMatter`
  (``host_dm``, normalised by mass closure).

The subhalos, merger secondary and neighbours are in :mod:`massmaps.data.mock_satellites`.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

import numpy as np
from scipy.spatial.transform import Rotation

from .. import cosmology as cosmo_mod
from ..cosmology import PAPER, CosmologyParams
from . import profiles
from .particles import ParticleSet, rotate

if TYPE_CHECKING:
    from .mock import MockConfig

__all__ = [
    "Component",
    "ComponentOutput",
    "HostDarkMatter",
    "HostGas",
    "HostHalo",
    "PressurePainter",
    "SmoothBackground",
    "collapsed_fractions",
    "ellipsoid_axes",
    "sample_radial",
    "stream",
]

PRESSURE_TYPES = ("cool_core", "universal", "disturbed")


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
    def from_row(cls, halo: Mapping, cfg: MockConfig) -> HostHalo:
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
    ) -> HostHalo:
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
        self.density_b16 = profiles.Battaglia16GasDensity(
            host.M200c, host.R200c, rho_c, f_b, amplitude=host.gas_amplitude
        )
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
        gas = sample_radial(
            rng, self.r_tab, self.M_tab, self.cfg.m_gas, axes=h.axes_gas, rotation=h.rotation, centre=h.gas_centre
        )
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
        return profiles.nfw_shape(np.asarray(r) / self.r_s) * profiles.f_trans(
            r, self.host.r_t, c.dk14_beta, c.dk14_gamma
        )

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
