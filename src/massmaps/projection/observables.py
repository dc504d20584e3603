"""Projected maps of a mock cluster: gas and DM surface density, thermal SZ and X-ray (docs/physics.md section 6).

Eq. 3: S_x = sum_j m_j W2D / (rho_bar_x L), rho_bar_DM = (Om - Ob) rho_crit, rho_bar_gas = Ob rho_crit;
Eq. 4-5: S_tsz = T_cmb y 1e6 microK, y = 4.017101e-3 sum_j (m_j / rho_j)[Mpc^3] P_e,j W2D [Mpc^-2];
Eq. 7: S_xy = 3.0857e24 sum_j (m_j / rho_j) l_j W2D in erg s^-1 cm^-2;
kT_x = sum_j (m_j / rho_j) l_j kT_j W2D / sum_j (m_j / rho_j) l_j W2D in keV, 0 where no particle emits.
The X-ray spectrum (``xray_spectrum``, what the observe stage needs for an energy band): the bolometric
map split over temperature nodes T_k, S_k = 3.0857e24 sum_j (m_j / rho_j) l_j c_k(ln kT_j) W2D, with c_k
the cardinal cubic splines in ln kT on the nodes :data:`XRAY_NODES_KEV` (c_k(ln T_i) = 1 if i = k, else
0; temperatures outside the nodes are clamped to the end nodes). Any function g of the temperature
that the spline interpolates is then projected as sum_k g(T_k) S_k: the band brightness and the photon
rate of :mod:`massmaps.observe` within 0.6% for gas above 0.5 keV, where the emission-weighted
temperature alone is off by up to 22% in a pixel with gas of several temperatures. sum_k S_k = S_xy,
since the splines sum to 1. A single S_k can be negative (the splines oscillate); only sums mean anything.
W2D is integrated exactly over each pixel by :func:`massmaps.projection.pixels.project`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import cosmology as cosmo_mod
from ..constants import MPC_CM, T_CMB_K, Y_COEFF_PER_KEV_CM3_MPC
from ..cosmology import PAPER, CosmologyParams
from ..data.particles import Cluster, ParticleSet, in_any_cube, rotate_in_cube

__all__ = [
    "FIELDS",
    "XRAY_NODES_KEV",
    "XRAY_NODE_FIELDS",
    "XRAY_SPECTRUM",
    "expand_fields",
    "image_axes",
    "in_views",
    "project_fields",
    "spline_weights",
]

#: Temperatures (keV) of the X-ray spectrum's nodes: a factor 2 apart, 1/16 to 64 keV.
XRAY_NODES_KEV: tuple[float, ...] = tuple(0.0625 * 2.0**k for k in range(11))
#: The name a field list uses for the X-ray spectrum, and the fields (maps) it stands for.
XRAY_SPECTRUM = "xray_spectrum"
XRAY_NODE_FIELDS: tuple[str, ...] = tuple(f"xray_node_{t:g}keV" for t in XRAY_NODES_KEV)

#: Map fields: name -> (units, long name).
FIELDS: dict[str, tuple[str, str]] = {
    "gas": ("1", "gas surface density over the cosmic mean"),
    "dm": ("1", "dark-matter surface density over the cosmic mean"),
    "tsz": ("microK", "thermal SZ signal T_cmb y"),
    "xray": ("erg s-1 cm-2", "bolometric X-ray surface brightness (source frame)"),
    "xray_kT": ("keV", "X-ray emission-weighted gas temperature (0 where nothing emits)"),
    **{
        name: ("erg s-1 cm-2", f"bolometric X-ray surface brightness on the spectrum's {t:g} keV node (source frame)")
        for name, t in zip(XRAY_NODE_FIELDS, XRAY_NODES_KEV, strict=True)
    },
}


def expand_fields(fields: Sequence[str]) -> tuple[str, ...]:
    """``fields`` with ``xray_spectrum`` replaced by its node fields (the maps a store holds)."""
    out: list[str] = []
    for f in fields:
        out.extend(XRAY_NODE_FIELDS if f == XRAY_SPECTRUM else (f,))
    return tuple(out)


def spline_weights(kT_keV: np.ndarray) -> np.ndarray:
    """(len(kT_keV), K) values c_k(ln kT) of the cardinal cubic splines on :data:`XRAY_NODES_KEV`
    (not-a-knot ends), temperatures clamped to the nodes' range; each row sums to 1."""
    from scipy.interpolate import CubicSpline

    ln_nodes = np.log(XRAY_NODES_KEV)
    cardinal = CubicSpline(ln_nodes, np.eye(len(ln_nodes)), bc_type="not-a-knot")
    with np.errstate(divide="ignore"):
        ln_t = np.log(np.asarray(kT_keV, dtype=np.float64))
    return cardinal(np.clip(ln_t, ln_nodes[0], ln_nodes[-1]))


def image_axes(axis: int) -> tuple[int, int]:
    """(column axis, row axis) of the image seen along ``axis``, in cyclic order: 0 -> (1, 2), 1 -> (2, 0), 2 -> (0, 1)."""
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    return (axis + 1) % 3, (axis + 2) % 3


def in_views(pos: np.ndarray, rotations: Sequence[np.ndarray | None], half_Mpc: float) -> np.ndarray:
    """Mask of the particles that at least one view projects: ``|rotate(pos, R)|_inf <= half_Mpc`` for some R.

    This is the selection of :func:`project_fields` (the cube of side ``npix * pixel_Mpc``), so particles
    outside the mask are never drawn in any of the views. ``None`` stands for the identity.
    """
    return in_any_cube(pos, list(rotations), half_Mpc)


def project_fields(
    cluster: Cluster,
    rotation: np.ndarray | None,
    axis: int,
    *,
    npix: int,
    pixel_Mpc: float,
    backend: str = "exact",
    cosmo: CosmologyParams = PAPER,
    fields: Sequence[str] = ("gas", "dm", "tsz", "xray", "xray_kT", "xray_spectrum"),
    redshift: float = 0.0,
) -> dict[str, np.ndarray]:
    """Project a cluster along one axis after rotating it about the host DM centre (the origin).

    Positions become ``pos @ rotation.T`` (``rotation`` acts on column vectors). The line of sight is
    ``axis`` (0, 1, 2 = x, y, z); the image columns run along axis ``(axis + 1) % 3`` and the rows along
    ``(axis + 2) % 3`` (x-view: columns y, rows z; y-view: columns z, rows x; z-view: columns x, rows y),
    so ``out[f][iy, ix]``. Only particles whose centres lie in the cube |x_i| <= L/2 (L = npix pixel_Mpc)
    on all three axes are used; kernels that stick out of the map lose that part. Returns
    {field: (npix, npix) float64} in the units of :data:`FIELDS`.

    Positions and densities are physical; at ``redshift`` z > 0 (a snapshot) the surface densities are
    over the physical cosmic mean densities of that epoch, rho_bar_x (1 + z)^3.
    """
    from .pixels import project

    fields = expand_fields(fields)
    bad = [f for f in fields if f not in FIELDS]
    if bad:
        raise ValueError(f"unknown field(s) {bad}; valid fields are {list(FIELDS)}")
    L = npix * pixel_Mpc
    half = 0.5 * L
    ic, ir = image_axes(axis)
    lim = (-half, half)
    pix_area = pixel_Mpc**2
    rho_c = cosmo_mod.rho_crit(cosmo)
    growth = (1.0 + float(redshift)) ** 3
    rho_bar = {"dm": (cosmo.Om0 - cosmo.Ob0) * rho_c * growth, "gas": cosmo.Ob0 * rho_c * growth}

    def prepare(ps: ParticleSet):
        if ps.hsml is None:
            raise ValueError("particles need smoothing lengths (hsml) to be projected")
        pos, inside = rotate_in_cube(ps.pos, rotation, half)
        return pos[inside], inside

    def run(pos, hsml, weights):
        return project(
            pos[:, ic], pos[:, ir], hsml, weights, xlim=lim, ylim=lim, npix=npix, backend=backend,
            z=pos[:, axis], zlim=lim,
        )  # fmt: skip

    out: dict[str, np.ndarray] = {}
    if "dm" in fields:
        pos, inside = prepare(cluster.dm)
        img = run(pos, cluster.dm.hsml[inside], cluster.dm.mass[inside][None, :])
        out["dm"] = img[0] / (pix_area * rho_bar["dm"] * L)

    gas_fields = [f for f in ("gas", "tsz", "xray") if f in fields]
    if "xray_kT" in fields:  # the weighted sum, divided by the X-ray map below
        gas_fields = [f for f in gas_fields if f != "xray"] + ["xray", "xray_kT"]
    nodes = [f for f in XRAY_NODE_FIELDS if f in fields]
    gas_fields += nodes
    if gas_fields:
        g = cluster.gas
        pos, inside = prepare(g)
        m = g.mass[inside]
        rows = []
        weights = None
        if nodes:
            if g.temperature_keV is None:
                raise ValueError(f"field {XRAY_SPECTRUM!r} needs the gas temperature")
            weights = spline_weights(g.temperature_keV[inside])
        for f in gas_fields:
            if f == "gas":
                rows.append(m)
                continue
            if g.density is None:
                raise ValueError(f"field {f!r} needs the gas SPH density")
            vol = m / g.density[inside]  # Mpc^3
            if f == "tsz":
                if g.pressure_e is None:
                    raise ValueError("field 'tsz' needs the gas electron pressure")
                rows.append(vol * g.pressure_e[inside])
            else:
                if g.xray_emissivity is None:
                    raise ValueError(f"field {f!r} needs the gas X-ray emissivity")
                if f == "xray":
                    rows.append(vol * g.xray_emissivity[inside])
                elif f in XRAY_NODE_FIELDS:
                    rows.append(vol * g.xray_emissivity[inside] * weights[:, XRAY_NODE_FIELDS.index(f)])
                elif g.temperature_keV is None:
                    raise ValueError("field 'xray_kT' needs the gas temperature")
                else:
                    rows.append(vol * g.xray_emissivity[inside] * g.temperature_keV[inside])
        img = run(pos, g.hsml[inside], np.stack(rows))
        for k, f in enumerate(gas_fields):
            per_area = img[k] / pix_area
            if f == "gas":
                out[f] = per_area / (rho_bar["gas"] * L)
            elif f == "tsz":
                out[f] = T_CMB_K * 1e6 * Y_COEFF_PER_KEV_CM3_MPC * per_area
            elif f == "xray" or f in XRAY_NODE_FIELDS:
                out[f] = MPC_CM * per_area
            else:
                lum = out["xray"]
                out[f] = np.divide(MPC_CM * per_area, lum, out=np.zeros_like(lum), where=lum > 0)
    return {f: np.ascontiguousarray(out[f], dtype=np.float64) for f in fields}
