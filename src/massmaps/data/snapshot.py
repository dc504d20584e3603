"""Simulation snapshots as the particle source: Gadget-4/AREPO-style (and SWIFT-style) HDF5 files.

Entry points:

* :func:`read_group_catalog`: halos of a Subfind/FoF group catalogue (``Group/Group_M_Mean200``,
  ``Group/Group_R_Mean200``, ``Group/GroupPos``) as a halo-catalogue table (:data:`massmaps.data.catalog.COLUMNS`
  plus the centre columns :data:`massmaps.data.catalog.CENTRE_COLUMNS`);
* :class:`ShardParticles`: reads, for a set of halos, the gas (``PartType0``) and dark matter
  (``PartType1``) within reach of their projection cubes, and turns each halo into a
  :class:`~massmaps.data.particles.Cluster` centred on it (periodic minimal image), with smoothing
  lengths, densities and the gas thermodynamics that :func:`massmaps.projection.observables.project_fields` needs.

Units (``layout: gadget``, Gadget-2/4 and AREPO)
------------------------------------------------
Lengths are comoving in ``UnitLength_in_cm / h``, masses in ``UnitMass_in_g / h``, and the internal
energy per unit mass in ``UnitVelocity_in_cm_per_s ** 2`` (physical). With ``a = Header/Time`` and
``h = HubbleParam``:

* position [physical Mpc] = Coordinates x (UnitLength_in_cm / Mpc) x a / h (``SmoothingLength``,
  ``BoxSize``, ``GroupPos`` and ``Group_R_Mean200`` alike);
* mass [Msun] = Masses x (UnitMass_in_g / Msun) / h, or ``Header/MassTable[type]`` where the
  ``Masses`` dataset is absent (``Group_M_Mean200`` alike);
* density [Msun / physical Mpc^3] = Density x (mass unit / h) / (length unit x a / h)^3;
* u [erg / g] = InternalEnergy x UnitVelocity_in_cm_per_s^2.

``layout: swift`` reads SWIFT's names (``Densities``, ``InternalEnergies``, ``SmoothingLengths``), its
``Units`` and ``Cosmology`` groups, and has no factors of h. SWIFT stores the comoving internal energy
a^(3 (gamma - 1)) u, so its u [erg / g] = InternalEnergies x (U_L / U_t)^2 x a^-2. The unit attributes of
the file (``UnitLength_in_cm`` ... in ``Header`` or ``Parameters``; SWIFT's ``Units`` group) are used when
the config leaves the unit null, and must agree with the config's unit when both are given. Where a dataset
carries its own scaling attributes (``a_scaling``, ``h_scaling``, ``length_scaling``, ``mass_scaling``,
``velocity_scaling``, ``to_cgs``; SWIFT's ``a-scale exponent`` ... ``Conversion factor to CGS``), the h
and unit exponents and the cgs factor are checked against the conversion above, and the power of a is the
one the dataset declares (physical = stored x a^exponent; 0 where SWIFT flags ``Value stored as
physical``), provided the quantity can have it: 1 for lengths, 0 for masses, -3 for densities, 0
(physical) or -2 (comoving) for the internal energy. Without the attribute the layout's convention holds.

Every value read is checked: finite, positions (``Coordinates``, ``GroupPos``) inside [0, BoxSize],
masses, densities, smoothing lengths and internal energies > 0, electron abundances and the group masses
and radii >= 0; the header's per-type arrays (``NumPart_ThisFile``, ``NumPart_Total``,
``NumPart_Total_HighWord``, ``MassTable``) of one length, finite and >= 0. Every error names the file and
the dataset or attribute (and the row and value).

Gas thermodynamics, from x_e = ElectronAbundance = n_e / n_H and the hydrogen mass fraction X:
mu = 4 / (1 + 3X + 4X x_e), T = (gamma - 1) u mu m_p / k_B (gamma = 5/3), n_e = x_e X rho / m_p,
P_e = n_e k T, and l_bol = 1.4e-27 g_ff T^1/2 n_e (n_H + 4 n_He) with n_H + 4 n_He = rho / m_p.

Smoothing: gas uses the file's ``SmoothingLength`` times ``hsml_factor`` as the Wendland C2 support radius
where present (null: the layout's, 1 for Gadget, whose ``Hsml`` is the support radius, and 1.936492 for
SWIFT, which writes h = H / gamma_K with gamma_K = 1.936492 for its Wendland C2 kernel in 3D), else the
distance to the ``n_ngb``-th gas neighbour; gas densities come from ``Density`` where present, else the
SPH sum. Dark matter always gets its smoothing lengths from its ``n_ngb`` neighbours. Stars and black
holes (types 4, 5) are not read. The neighbour search runs on the particles within ``pad_Mpc`` of the
projection cube (every view of the halo), so that particles in the cube see their full neighbourhood.
"""

from __future__ import annotations

import glob
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..configkeys import reject_unknown_keys
from ..constants import (
    BREMS_COEFF,
    GAUNT_FF_DEFAULT,
    K_B_ERG_PER_K,
    KEV_K,
    M_P_G,
    MPC_CM,
    MSUN_G,
    MSUN_PER_MPC3_IN_G_PER_CM3,
)
from ..cosmology import CosmologyParams
from ..projection.observables import in_views
from .catalog import CENTRE_COLUMNS, COLUMNS
from .particles import Cluster, ParticleSet

__all__ = [
    "GAS",
    "DM",
    "GROUP_CATALOG_KEYS",
    "SnapshotConfig",
    "SnapshotError",
    "check_sources",
    "Snapshot",
    "ShardParticles",
    "expand_files",
    "gas_thermodynamics",
    "read_group_catalog",
]

log = logging.getLogger(__name__)

GAS, DM = 0, 1
GAMMA_ADIABATIC = 5.0 / 3.0
LAYOUTS = ("gadget", "swift")
ELECTRON_POLICIES = ("error", "fully_ionised")


class SnapshotError(ValueError):
    """A snapshot or group catalogue that cannot be read as declared (the message names file and dataset)."""


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotConfig:
    """How to read a snapshot (the workflow's ``particles.snapshot`` block). Build with :meth:`from_mapping`."""

    layout: str = "gadget"
    files: str | None = None  # path or glob of the snapshot file(s)
    group_catalog: str | None = None  # path or glob of the group catalogue file(s)
    # internal units (null: from the file's attributes; both given: they must agree)
    length_unit_cm: float | None = None
    mass_unit_g: float | None = None
    velocity_unit_cm_s: float | None = None
    unit_rtol: float = 0.005
    periodic: bool = True
    pad_Mpc: float = 2.0
    n_ngb: int = 64
    sph_workers: int = 2
    use_file_hsml: bool = True
    hsml_factor: float | None = None  # null: the layout's (Layout.hsml_factor)
    hydrogen_fraction: float = 0.76
    missing_electron_abundance: str = "error"
    g_ff: float = GAUNT_FF_DEFAULT
    read_chunk: int = 1 << 20

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.missing_electron_abundance not in ELECTRON_POLICIES:
            raise ValueError(
                f"missing_electron_abundance must be one of {ELECTRON_POLICIES}, got {self.missing_electron_abundance!r}"
            )
        if self.n_ngb < 2 or self.read_chunk < 1 or self.pad_Mpc < 0:
            raise ValueError("need n_ngb >= 2, read_chunk >= 1 and pad_Mpc >= 0")
        if not (self.hsml_factor is None or self.hsml_factor > 0):
            raise ValueError(f"hsml_factor must be positive or null (the layout's), got {self.hsml_factor!r}")
        if not 0 < self.hydrogen_fraction <= 1:
            raise ValueError(f"hydrogen_fraction must be in (0, 1], got {self.hydrogen_fraction}")
        for name in ("length_unit_cm", "mass_unit_g", "velocity_unit_cm_s"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be positive or null, got {v!r}")

    @classmethod
    def from_mapping(cls, d: Mapping | None) -> SnapshotConfig:
        """Build from a plain mapping (e.g. YAML; a subset of the keys is fine). Unknown keys raise ValueError naming them."""
        if d is None:
            return cls()
        reject_unknown_keys(cls, d, "SnapshotConfig")
        return cls(**d)

    @classmethod
    def coerce(cls, cfg: SnapshotConfig | Mapping | None) -> SnapshotConfig:
        return cfg if isinstance(cfg, cls) else cls.from_mapping(cfg)

    @property
    def support_factor(self) -> float:
        """Kernel support radius over the file's smoothing length: ``hsml_factor``, or the layout's where null."""
        return LAYOUT[self.layout].hsml_factor if self.hsml_factor is None else self.hsml_factor


def check_sources(catalog: Mapping, particles: Mapping) -> None:
    """Raise a ValueError naming the config keys when the catalogue and particle sources do not fit together."""
    cat_src, part_src = catalog.get("source", "hmf"), particles.get("source", "mock")
    try:
        snap = SnapshotConfig.from_mapping(particles.get("snapshot") or {})
    except (TypeError, ValueError) as err:
        raise ValueError(f"config: particles.snapshot: {err}") from None
    if cat_src == "group_catalog":
        if part_src != "snapshot":
            raise ValueError(
                "config: catalog.source: group_catalog needs particles.source: snapshot (the mock cannot build simulated halos)"
            )
        if not snap.group_catalog:
            raise ValueError(
                "config: catalog.source: group_catalog needs particles.snapshot.group_catalog (a path or glob)"
            )
        if LAYOUT[snap.layout].datasets["group_pos"] is None:
            raise ValueError(
                f"config: particles.snapshot.layout: {snap.layout} has no group catalogue; use catalog.source: file with centre columns"
            )
    if part_src == "snapshot":
        if not snap.files:
            raise ValueError("config: particles.source: snapshot needs particles.snapshot.files (a path or glob)")
        if cat_src == "hmf":
            raise ValueError(
                "config: particles.source: snapshot needs halo centres in the snapshot: set catalog.source to "
                "group_catalog, or to file with the columns centre_x_Mpc, centre_y_Mpc, centre_z_Mpc"
            )


#: The SnapshotConfig keys that reading a group catalogue depends on.
GROUP_CATALOG_KEYS = ("layout", "group_catalog", "length_unit_cm", "mass_unit_g", "velocity_unit_cm_s", "unit_rtol")


# --------------------------------------------------------------------------------------------------
# Layouts: dataset names, header attributes, unit conventions
# --------------------------------------------------------------------------------------------------
#: Dimensions of each quantity: exponents of (a, h, length unit, mass unit, velocity unit) in the
#: Gadget convention (SWIFT: the same without h, and a comoving internal energy, U_COMOVING_A_EXPONENT).
DIMENSIONS: dict[str, tuple[int, int, int, int, int]] = {
    "pos": (1, -1, 1, 0, 0),
    "mass": (0, -1, 0, 1, 0),
    "density": (-3, 2, -3, 1, 0),
    "u": (0, 0, 0, 0, 2),
    "hsml": (1, -1, 1, 0, 0),
    "x_e": (0, 0, 0, 0, 0),
    "group_pos": (1, -1, 1, 0, 0),
    "group_m200m": (0, -1, 0, 1, 0),
    "group_r200m": (1, -1, 1, 0, 0),
}
#: a-scale exponent of a comoving internal energy (SWIFT stores a^(3 (gamma - 1)) u): its values times a^-2 are physical
U_COMOVING_A_EXPONENT = -3.0 * (GAMMA_ADIABATIC - 1.0)
#: Support radius H over SWIFT's smoothing length h for the Wendland C2 kernel in 3D (SWIFT writes h = H / gamma_K)
WENDLAND_C2_GAMMA_K = 1.936492
#: What the values of each quantity must be besides finite: "box" (inside [0, BoxSize]), "> 0" or ">= 0"
VALID = {"pos": "box", "group_pos": "box", "mass": "> 0", "density": "> 0", "hsml": "> 0", "u": "> 0", "x_e": ">= 0",
         "group_m200m": ">= 0", "group_r200m": ">= 0"}  # fmt: skip
#: Slack of the box check relative to BoxSize (positions wrapped and rounded in single precision)
BOX_TOLERANCE = 1e-4


def _a_exponents(quantity: str) -> tuple[float, ...]:
    """The a-scale exponents a dataset of ``quantity`` may declare: its DIMENSIONS one; u physical (0) or comoving."""
    return (0.0, U_COMOVING_A_EXPONENT) if quantity == "u" else (float(DIMENSIONS[quantity][0]),)


@dataclass(frozen=True)
class Layout:
    name: str
    datasets: dict  # quantity -> dataset name (None: the layout has none)
    h_scaled: bool
    # header quantity -> candidate attribute locations "group/attr", first found wins
    attrs: dict
    # names of the per-dataset scaling attributes: exponents of (a, h, L, M, V) and the cgs factor
    scaling_attrs: tuple
    u_a_exponent: float  # a-scale exponent of the internal energy where the dataset does not declare one
    hsml_factor: float  # kernel support radius over the file's smoothing length (SnapshotConfig.hsml_factor null)
    physical_flag: str | None = None  # dataset attribute whose value 1 marks values stored physical


GADGET = Layout(
    name="gadget",
    datasets={
        "pos": "Coordinates",
        "mass": "Masses",
        "density": "Density",
        "u": "InternalEnergy",
        "hsml": "SmoothingLength",
        "x_e": "ElectronAbundance",
        "group_pos": "Group/GroupPos",
        "group_m200m": "Group/Group_M_Mean200",
        "group_r200m": "Group/Group_R_Mean200",
    },
    h_scaled=True,
    attrs={
        "box": ["Header/BoxSize", "Parameters/BoxSize"],
        "a": ["Header/Time"],
        "z": ["Header/Redshift"],
        "h": ["Header/HubbleParam", "Parameters/HubbleParam"],
        "Om0": ["Header/Omega0", "Parameters/Omega0"],
        "Ob0": ["Header/OmegaBaryon", "Parameters/OmegaBaryon"],
        "length": ["Header/UnitLength_in_cm", "Parameters/UnitLength_in_cm"],
        "mass": ["Header/UnitMass_in_g", "Parameters/UnitMass_in_g"],
        "velocity": ["Header/UnitVelocity_in_cm_per_s", "Parameters/UnitVelocity_in_cm_per_s"],
    },
    scaling_attrs=("a_scaling", "h_scaling", "length_scaling", "mass_scaling", "velocity_scaling", "to_cgs"),
    u_a_exponent=0.0,  # Gadget's InternalEnergy is physical
    hsml_factor=1.0,  # Gadget's and AREPO's smoothing length is the support radius
)

SWIFT = Layout(
    name="swift",
    datasets={
        "pos": "Coordinates",
        "mass": "Masses",
        "density": "Densities",
        "u": "InternalEnergies",
        "hsml": "SmoothingLengths",
        "x_e": None,
        "group_pos": None,
        "group_m200m": None,
        "group_r200m": None,
    },
    h_scaled=False,
    attrs={
        "box": ["Header/BoxSize"],
        "a": ["Cosmology/Scale-factor", "Header/Scale-factor"],
        "z": ["Cosmology/Redshift", "Header/Redshift"],
        "h": ["Cosmology/h"],
        "Om0": ["Cosmology/Omega_m"],
        "Ob0": ["Cosmology/Omega_b"],
        "length": ["Units/Unit length in cgs (U_L)"],
        "mass": ["Units/Unit mass in cgs (U_M)"],
        "time": ["Units/Unit time in cgs (U_t)"],
    },
    scaling_attrs=(
        "a-scale exponent",
        "h-scale exponent",
        "U_L exponent",
        "U_M exponent",
        "U_t exponent",
        "Conversion factor to CGS (not including cosmological corrections)",
    ),
    u_a_exponent=U_COMOVING_A_EXPONENT,
    hsml_factor=WENDLAND_C2_GAMMA_K,
    physical_flag="Value stored as physical",
)

LAYOUT = {"gadget": GADGET, "swift": SWIFT}


def _scalar(v) -> float:
    a = np.asarray(v, dtype=float).reshape(-1)
    return float(a[0])


def _find_attr(f, locations: Sequence[str]):
    """(value, "group/attr") of the first location present in the open HDF5 file, else (None, None)."""
    for loc in locations:
        group, attr = loc.rsplit("/", 1)
        if group in f and attr in f[group].attrs:
            return f[group].attrs[attr], loc
    return None, None


def _check_values(path, name: str, quantity: str, values: np.ndarray, box: np.ndarray, first_row: int = 0) -> None:
    """Raise naming file, dataset, row and value unless every value is finite and in the range VALID gives.

    ``values``: rows of the dataset as stored, from ``first_row`` on; ``box``: the header's BoxSize (per axis).
    """
    v = values.reshape(len(values), -1)
    rule = VALID[quantity]
    if rule == "box":
        ok = (v >= -BOX_TOLERANCE * box) & (v <= (1 + BOX_TOLERANCE) * box)
    else:
        ok = v > 0 if rule == "> 0" else v >= 0
    bad = np.argwhere(~(ok & np.isfinite(v)))
    if bad.size == 0:
        return
    row, col = bad[0]
    where = f"row {first_row + row}" + (f", column {col}" if v.shape[1] > 1 else "")
    if rule == "box":
        expected = f" outside [0, BoxSize={box[col]:g}]; expected finite positions inside the box"
    else:
        expected = f"; expected finite values {rule}"
    raise SnapshotError(f"{path}: dataset {name}: value {v[row, col]:.6g} at {where}{expected}")


def _type_arrays(path, hdr, names: Sequence[str]) -> dict:
    """The header's per-type arrays ``names`` that are present, as floats: of one length, finite and >= 0."""
    arrays = {k: np.asarray(hdr[k], dtype=float).reshape(-1) for k in names if k in hdr}
    if len({a.size for a in arrays.values()}) > 1:
        sizes = ", ".join(f"Header/{k} has {a.size}" for k, a in arrays.items())
        raise SnapshotError(
            f"{path}: header arrays of different lengths ({sizes}); expected one entry per particle type in each"
        )
    for k, a in arrays.items():
        bad = np.flatnonzero(~(np.isfinite(a) & (a >= 0)))
        if bad.size:
            raise SnapshotError(f"{path}: attribute Header/{k}[{bad[0]}] = {a[bad[0]]:g}; expected finite values >= 0")
    return arrays


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------
def _file_number(p: Path) -> tuple:
    m = re.search(r"\.(\d+)\.hdf5$", p.name)
    return (int(m.group(1)) if m else -1, p.name)


def expand_files(pattern: str | Path, what: str = "snapshot") -> list[Path]:
    """The files of a path or glob, ordered by their ``.N.hdf5`` number (then by name)."""
    pattern = str(pattern)
    if glob.has_magic(pattern):
        paths = [Path(p) for p in glob.glob(pattern)]
    else:
        paths = [Path(pattern)] if Path(pattern).exists() else []
    if not paths:
        raise FileNotFoundError(f"{pattern}: no {what} file matches")
    return sorted(paths, key=_file_number)


@dataclass(frozen=True)
class Units:
    """Internal units of a file in cgs, with where each came from (for error messages)."""

    length_cm: float
    mass_g: float
    velocity_cm_s: float


@dataclass
class FileHeader:
    """What one file's header says, with the attribute names it came from."""

    path: Path
    box: np.ndarray  # (3,) internal units
    a: float
    z: float
    h: float
    h_loc: str | None
    Om0: tuple | None  # (value, location)
    Ob0: tuple | None
    units_found: dict  # "length"/"mass"/"velocity" -> (value, location)
    counts: np.ndarray  # particles (or groups) of each type in this file
    counts_total: np.ndarray
    n_files: int
    mass_table: np.ndarray


def _read_header(path: Path, layout: Layout, kind: str) -> FileHeader:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise SnapshotError(f"{path}: cannot open as HDF5 ({err})") from None
    with f:
        if "Header" not in f:
            raise SnapshotError(f"{path}: no group 'Header' (not a {layout.name}-style {kind} file)")
        hdr = f["Header"].attrs

        def need(q):
            v, loc = _find_attr(f, layout.attrs[q])
            if v is None:
                raise SnapshotError(f"{path}: missing header attribute {' or '.join(layout.attrs[q])}")
            return v, loc

        box, box_loc = need("box")
        box = np.asarray(box, dtype=float).reshape(-1)
        box = np.repeat(box, 3) if box.size == 1 else box
        if box.size != 3 or not np.all(np.isfinite(box) & (box > 0)):
            raise SnapshotError(f"{path}: attribute {box_loc} = {box.tolist()}; expected one or three finite sizes > 0")
        a, z = _scalar(need("a")[0]), _scalar(need("z")[0])
        if layout.h_scaled:
            hv, h_loc = need("h")
        else:  # SWIFT: no factors of h in the units; h only for the cosmology check
            hv, h_loc = _find_attr(f, layout.attrs["h"])
        h = 1.0 if hv is None else _scalar(hv)
        cosmo = {}
        for q in ("Om0", "Ob0"):
            v, loc = _find_attr(f, layout.attrs[q])
            cosmo[q] = None if v is None else (_scalar(v), loc)
        units = {}
        for q in ("length", "mass"):
            v, loc = _find_attr(f, layout.attrs[q])
            units[q] = None if v is None else (_scalar(v), loc)
        if layout.name == "gadget":
            v, loc = _find_attr(f, layout.attrs["velocity"])
            units["velocity"] = None if v is None else (_scalar(v), loc)
        else:
            t, tloc = _find_attr(f, layout.attrs["time"])
            units["velocity"] = (
                None
                if t is None or units["length"] is None
                else (units["length"][0] / _scalar(t), f"{units['length'][1]} / {tloc}")
            )
        if kind == "snapshot":
            keys = ("NumPart_ThisFile", "NumPart_Total", "NumFilesPerSnapshot", "MassTable")
            per_type = ("NumPart_ThisFile", "NumPart_Total", "NumPart_Total_HighWord", "MassTable")
        else:
            keys = ("Ngroups_ThisFile", "Ngroups_Total", "NumFiles")
            per_type = keys[:2]
        for k in keys:
            if k not in hdr:
                raise SnapshotError(f"{path}: missing header attribute Header/{k}")
        arrays = _type_arrays(path, hdr, per_type)
        counts = arrays[keys[0]].astype(np.int64)
        high = arrays.get("NumPart_Total_HighWord", np.zeros_like(arrays[keys[1]]))
        total = (arrays[keys[1]] + high * 2.0**32).astype(np.int64)
        n_files = int(_scalar(hdr[keys[2]]))
        mass_table = arrays.get("MassTable", np.zeros(0))
    return FileHeader(path, box, a, z, h, h_loc, cosmo["Om0"], cosmo["Ob0"], units, counts, total, n_files, mass_table)


class _Files:
    """A (possibly multi-file) snapshot or group catalogue: headers checked for consistency, units resolved."""

    def __init__(self, pattern: str | Path, cfg: SnapshotConfig, kind: str):
        self.cfg, self.kind = cfg, kind
        self.layout = LAYOUT[cfg.layout]
        self.paths = expand_files(pattern, "group catalogue" if kind == "group" else "snapshot")
        self.headers = [_read_header(p, self.layout, kind) for p in self.paths]
        h0 = self.headers[0]
        n_attr = "Header/NumFilesPerSnapshot" if kind == "snapshot" else "Header/NumFiles"
        this_attr = "Header/NumPart_ThisFile" if kind == "snapshot" else "Header/Ngroups_ThisFile"
        if len(self.paths) != h0.n_files:
            raise SnapshotError(
                f"{pattern}: matches {len(self.paths)} file(s) but {h0.path} says {n_attr} = {h0.n_files}; "
                f"give a path or glob that matches every piece (e.g. snap_099.*.hdf5)"
            )
        for hd in self.headers[1:]:
            for q in ("a", "z", "h"):
                if not np.isclose(getattr(hd, q), getattr(h0, q), rtol=1e-6):
                    raise SnapshotError(
                        f"{hd.path}: header {q} = {getattr(hd, q)} differs from {h0.path} ({getattr(h0, q)})"
                    )
            if not np.allclose(hd.box, h0.box, rtol=1e-6):
                raise SnapshotError(f"{hd.path}: BoxSize {hd.box} differs from {h0.path} ({h0.box})")
            if hd.counts.size != h0.counts.size:
                raise SnapshotError(
                    f"{hd.path}: {this_attr} has {hd.counts.size} entries but {h0.path}'s has {h0.counts.size}"
                )
        found = np.sum([hd.counts for hd in self.headers], axis=0)
        if found.shape != h0.counts_total.shape or np.any(found != h0.counts_total):
            what = "NumPart_Total" if kind == "snapshot" else "Ngroups_Total"
            raise SnapshotError(
                f"{pattern}: the files hold {found.tolist()} but {h0.path} says Header/{what} = {h0.counts_total.tolist()}; "
                f"a piece of the {'snapshot' if kind == 'snapshot' else 'group catalogue'} is missing"
            )
        if not (0 < h0.a <= 1.0 + 1e-9 and abs(h0.a - 1.0 / (1.0 + h0.z)) <= 1e-4 * h0.a):
            a_loc, z_loc = self.layout.attrs["a"][0], self.layout.attrs["z"][0]
            raise SnapshotError(
                f"{h0.path}: {a_loc} = {h0.a} is not the scale factor 1/(1+z) of {z_loc} = {h0.z} "
                f"(only cosmological, comoving snapshots are supported)"
            )
        if not (np.isfinite(h0.h) and h0.h > 0):
            h_loc = h0.h_loc or self.layout.attrs["h"][0]
            raise SnapshotError(f"{h0.path}: {h_loc} = {h0.h} must be finite and positive")
        self.units = self._resolve_units()
        self.a, self.z, self.h = h0.a, h0.z, h0.h
        #: physical Mpc per comoving internal length unit (a / h included), Msun per internal mass unit (1 / h included)
        self.length_Mpc = self.factor("pos", 1.0)
        self.mass_Msun = self.factor("mass", 0.0)
        self.box_Mpc = h0.box * self.length_Mpc

    def _resolve_units(self) -> Units:
        cfg, out = self.cfg, {}
        for q, key in (("length", "length_unit_cm"), ("mass", "mass_unit_g"), ("velocity", "velocity_unit_cm_s")):
            declared = getattr(cfg, key)
            value = declared
            for hd in self.headers:
                found = hd.units_found[q]
                if found is None:
                    continue
                v, loc = found
                if not (np.isfinite(v) and v > 0):
                    raise SnapshotError(f"{hd.path}: attribute {loc} = {v:g}; expected a finite unit > 0")
                if declared is not None and not np.isclose(v, declared, rtol=cfg.unit_rtol, atol=0):
                    raise SnapshotError(
                        f"{hd.path}: attribute {loc} = {v:.6g} disagrees with the configured "
                        f"particles.snapshot.{key} = {declared:.6g} (ratio {v / declared:.4g}); fix the config or the file"
                    )
                if value is None:
                    value = v
                elif not np.isclose(v, value, rtol=cfg.unit_rtol, atol=0):
                    raise SnapshotError(
                        f"{hd.path}: attribute {loc} = {v:.6g} differs from {self.headers[0].path} ({value:.6g})"
                    )
            if value is None:
                where = self.layout.attrs["time" if q == "velocity" and "time" in self.layout.attrs else q]
                raise SnapshotError(
                    f"{self.paths[0]}: no unit attribute {' or '.join(where)}; declare particles.snapshot.{key}"
                )
            out[q] = float(value)
        return Units(out["length"], out["mass"], out["velocity"])

    def check_cosmology(self, params: CosmologyParams, atol: float = 1e-3) -> None:
        """Raise if the file's Omega_m, Omega_b or h disagree with the configured cosmology."""
        h0 = self.headers[0]
        checks = [(h0.Om0, params.Om0, "cosmology.Om0"), (h0.Ob0, params.Ob0, "cosmology.Ob0")]
        if h0.h_loc is not None:
            checks.append(((h0.h, h0.h_loc), params.h, "cosmology.H0 / 100"))
        for found, want, key in checks:
            if found is not None and found[0] != 0 and not abs(found[0] - want) <= atol:  # 0: not given
                raise SnapshotError(
                    f"{h0.path}: attribute {found[1]} = {found[0]:.6g} but {key} = {want:.6g}; set the config's "
                    f"cosmology to the simulation's (the maps are normalised by its mean densities)"
                )

    def factor(self, quantity: str, a_exponent: float) -> float:
        """Internal value -> physical Msun, Mpc, erg/g: a^a_exponent times the h and unit powers of DIMENSIONS."""
        _, eh, el, em, ev = DIMENSIONS[quantity]
        h = self.h if self.layout.h_scaled else 1.0
        L, M, V = self.units.length_cm / MPC_CM, self.units.mass_g / MSUN_G, self.units.velocity_cm_s
        return self.a**a_exponent * h**eh * L**el * M**em * V**ev

    def check_dataset(self, path: Path, dset, name: str, quantity: str, n_expected: int, shape_tail: tuple) -> float:
        """Check the length, shape and scaling attributes of one dataset; return the factor that makes it physical."""
        if dset.shape[0] != n_expected or tuple(dset.shape[1:]) != shape_tail:
            raise SnapshotError(
                f"{path}: dataset {name} has shape {dset.shape}, expected {(n_expected, *shape_tail)} from the header counts"
            )
        self._check_unit_exponents(path, dset, name, quantity)
        return self.factor(quantity, self._a_exponent(path, dset, name, quantity))

    def _a_exponent(self, path: Path, dset, name: str, quantity: str) -> float:
        """The power of a that makes the dataset physical.

        0 for values flagged as stored physical, else the exponent the dataset declares (an error unless the
        quantity can have it), else the layout's convention.
        """
        flag, key = self.layout.physical_flag, self.layout.scaling_attrs[0]
        if flag and flag in dset.attrs and _scalar(dset.attrs[flag]) == 1:
            return 0.0
        allowed = _a_exponents(quantity)
        if key not in dset.attrs:
            return self.layout.u_a_exponent if quantity == "u" else allowed[0]
        e = _scalar(dset.attrs[key])
        if not np.any(np.isclose(e, allowed)):
            expected = " or ".join(f"{x:g}" for x in allowed)
            raise SnapshotError(
                f"{path}: dataset {name} has attribute {key} = {e:g}, expected {expected} for {quantity} "
                f"(physical = stored x a^exponent)"
            )
        return e

    def _check_unit_exponents(self, path: Path, dset, name: str, quantity: str) -> None:
        """Where a dataset declares them, its h and unit exponents and cgs factor must be those of DIMENSIONS."""
        names, attrs = self.layout.scaling_attrs, dset.attrs
        if not all(k in attrs for k in names[1:5]):
            return
        _, eh, el, em, ev = DIMENSIONS[quantity]
        expected = (eh, el, em, ev) if self.layout.name == "gadget" else (0, el + ev, em, -ev)  # SWIFT: U_L, U_M, U_t
        for k, e in zip(names[1:5], expected):
            g = _scalar(attrs[k])
            if not np.isclose(g, e):
                raise SnapshotError(
                    f"{path}: dataset {name} has attribute {k} = {g:g}, expected {e:g} for {quantity} "
                    f"(units {dict(zip(names[1:5], expected))})"
                )
        if names[5] in attrs:
            cgs = _scalar(attrs[names[5]])
            u = self.units
            want = u.length_cm**el * u.mass_g**em * u.velocity_cm_s**ev
            if cgs != 0 and not np.isclose(cgs, want, rtol=self.cfg.unit_rtol, atol=0):
                raise SnapshotError(
                    f"{path}: dataset {name} has attribute {names[5]} = {cgs:.6g} but the units give {want:.6g} "
                    f"(length {u.length_cm:.6g} cm, mass {u.mass_g:.6g} g, velocity {u.velocity_cm_s:.6g} cm/s)"
                )


# --------------------------------------------------------------------------------------------------
# Group catalogue
# --------------------------------------------------------------------------------------------------
def read_group_catalog(
    pattern: str | Path,
    cfg: SnapshotConfig | Mapping | None = None,
    *,
    m_min: float | None = None,
    n_halos: int | None = None,
    seed: int = 0,
    params: CosmologyParams | None = None,
) -> pd.DataFrame:
    """Halos of a Gadget-4/AREPO group catalogue with M200m >= ``m_min``, as a halo-catalogue table.

    ``halo_id`` is the group's index in the whole catalogue (file order); M200m_Msun, R200m_Mpc (physical)
    and the centre (``GroupPos``, physical Mpc in [0, box)) come from ``Group_M_Mean200``,
    ``Group_R_Mean200`` and ``GroupPos``. Sorted by decreasing mass; ``n_halos`` keeps the most massive.
    The mock's shape columns (c200m, axis ratios) are NaN, the orientation is the identity (the
    simulation's frame), and ``seed`` is a per-halo seed drawn from ``seed``.
    """
    import h5py

    cfg = SnapshotConfig.coerce(cfg)
    if LAYOUT[cfg.layout].datasets["group_pos"] is None:
        raise SnapshotError(
            f"layout {cfg.layout!r} has no group catalogue format; use catalog.source: file with centre columns"
        )
    files = _Files(pattern, cfg, "group")
    if params is not None:
        files.check_cosmology(params)
    names = files.layout.datasets
    cols = {q: [] for q in ("group_pos", "group_m200m", "group_r200m")}
    for hd in files.headers:
        n = int(hd.counts[0])
        if n == 0:
            continue
        with h5py.File(hd.path, "r") as f:
            for q, shape_tail in (("group_pos", (3,)), ("group_m200m", ()), ("group_r200m", ())):
                name = names[q]
                if name not in f:
                    raise SnapshotError(f"{hd.path}: missing dataset {name} (Header/Ngroups_ThisFile = {n})")
                factor = files.check_dataset(hd.path, f[name], name, q, n, shape_tail)
                raw = np.asarray(f[name][...], dtype=np.float64)
                _check_values(hd.path, name, q, raw, hd.box)
                cols[q].append(raw * factor)
    if not cols["group_pos"]:
        raise SnapshotError(f"{pattern}: the group catalogue holds no groups")
    pos = np.concatenate(cols["group_pos"]).reshape(-1, 3)
    M = np.concatenate(cols["group_m200m"])
    R = np.concatenate(cols["group_r200m"])
    ids = np.arange(M.size, dtype=np.int64)
    keep = M > 0 if m_min is None else M >= m_min
    if not keep.any():
        raise SnapshotError(
            f"{pattern}: no group has Group_M_Mean200 >= {m_min or 0:.3g} Msun (largest {M.max():.3g} Msun)"
        )
    order = np.argsort(-M[keep], kind="stable")
    sel = np.flatnonzero(keep)[order]
    if n_halos is not None:
        sel = sel[: int(n_halos)]
    box = files.box_Mpc
    centre = np.mod(pos[sel], box)
    centre[centre >= box] = 0.0
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    seeds = rng.integers(0, 2**62, size=M.size, dtype=np.int64)  # by group index: stable under cuts
    n = sel.size
    out = pd.DataFrame(
        {
            "halo_id": ids[sel],
            "M200m_Msun": M[sel],
            "log10_M200m": np.log10(M[sel]),
            "R200m_Mpc": R[sel],
            "c200m": np.full(n, np.nan),
            "axis_ratio_s": np.full(n, np.nan),
            "axis_ratio_q": np.full(n, np.nan),
            "rot_qx": np.zeros(n),
            "rot_qy": np.zeros(n),
            "rot_qz": np.zeros(n),
            "rot_qw": np.ones(n),
            "seed": seeds[sel],
        }
    )
    for i, c in enumerate(CENTRE_COLUMNS):
        out[c] = centre[:, i]
    return out[COLUMNS + CENTRE_COLUMNS].reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Gas thermodynamics
# --------------------------------------------------------------------------------------------------
def gas_thermodynamics(rho, u, x_e, *, hydrogen_fraction: float = 0.76, g_ff: float = GAUNT_FF_DEFAULT):
    """(P_e [keV cm^-3], kT [keV], l_bol [erg s^-1 cm^-3]) from rho [Msun/Mpc^3], u [erg/g] and x_e = n_e/n_H.

    mu = 4 / (1 + 3X + 4X x_e); T = (gamma - 1) u mu m_p / k_B; n_e = x_e X rho / m_p; P_e = n_e kT;
    l_bol = 1.4e-27 g_ff T^1/2 n_e rho / m_p (rho / m_p = n_H + 4 n_He = sum Z^2 n_i for H and He).
    """
    X = hydrogen_fraction
    rho_cgs = np.asarray(rho, dtype=float) * MSUN_PER_MPC3_IN_G_PER_CM3
    x_e = np.broadcast_to(np.asarray(x_e, dtype=float), rho_cgs.shape)
    mu = 4.0 / (1.0 + 3.0 * X + 4.0 * X * x_e)
    T_K = (GAMMA_ADIABATIC - 1.0) * np.asarray(u, dtype=float) * mu * M_P_G / K_B_ERG_PER_K
    n_e = x_e * X * rho_cgs / M_P_G
    kT = T_K / KEV_K
    P_e = n_e * kT
    l_bol = BREMS_COEFF * g_ff * np.sqrt(np.maximum(T_K, 0.0)) * n_e * rho_cgs / M_P_G
    return P_e, kT, l_bol


# --------------------------------------------------------------------------------------------------
# Snapshot particles
# --------------------------------------------------------------------------------------------------
class Snapshot(_Files):
    """A (possibly multi-file) snapshot: headers checked, units resolved, region reads."""

    def __init__(self, pattern: str | Path, cfg: SnapshotConfig | Mapping | None = None):
        super().__init__(pattern, SnapshotConfig.coerce(cfg), "snapshot")

    def _wrap(self, pos: np.ndarray) -> np.ndarray:
        box = self.box_Mpc
        pos = np.mod(pos, box)
        pos[pos >= box] = 0.0
        return pos

    def read_near(self, ptype: int, quantities: Sequence[str], centres: np.ndarray, radius: float) -> tuple[dict, dict]:
        """Particles of ``ptype`` within ``radius`` (physical Mpc) of any centre, in physical units.

        Returns ``(data, missing)``: data = {"pos": (N, 3) [wrapped into the box when periodic],
        quantity: (N,)} for each of ``quantities`` (of "mass", "density", "u", "hsml", "x_e") whose
        dataset exists; "mass" falls back to the header's MassTable (an error if that is zero too).
        ``missing`` = {quantity: first file without it}: whether that matters is the caller's call.
        Reads ``read_chunk`` rows at a time, checks every row read (:func:`_check_values`) and keeps only
        the selected ones.
        """
        import h5py
        from scipy.spatial import cKDTree

        cfg = self.cfg
        centres = np.asarray(centres, dtype=float).reshape(-1, 3)
        if self.cfg.periodic:
            tree = cKDTree(self._wrap(centres.copy()), boxsize=self.box_Mpc)
        else:
            tree = cKDTree(centres)
        out = {q: [] for q in ("pos", *quantities)}
        missing: dict[str, Path] = {}
        for hd in self.headers:
            n = int(hd.counts[ptype]) if ptype < hd.counts.size else 0
            if n == 0:
                continue
            with h5py.File(hd.path, "r") as f:
                dsets = self._particle_datasets(hd, f, ptype, quantities, missing)
                for start in range(0, n, cfg.read_chunk):
                    stop = min(n, start + cfg.read_chunk)
                    pos = self._read_rows(hd, dsets["pos"], "pos", start, stop)
                    if cfg.periodic:
                        pos = self._wrap(pos)
                    d, _ = tree.query(pos, k=1, distance_upper_bound=radius)
                    sel = np.flatnonzero(np.isfinite(d))
                    if sel.size == 0:
                        continue
                    out["pos"].append(pos[sel])
                    for q in quantities:
                        if q in dsets:
                            out[q].append(self._read_rows(hd, dsets[q], q, start, stop)[sel])
                        elif q == "mass":
                            out[q].append(np.full(sel.size, hd.mass_table[ptype] * self.mass_Msun))
        res = {"pos": np.concatenate(out["pos"]) if out["pos"] else np.zeros((0, 3))}
        for q in quantities:
            if q not in missing:
                res[q] = np.concatenate(out[q]) if out[q] else np.zeros(0)
        return res, missing

    def _particle_datasets(self, hd: FileHeader, f, ptype: int, quantities: Sequence[str], missing: dict) -> dict:
        """{quantity: (name, dataset, factor to physical)} of ``ptype`` in the open file ``f``, checked.

        Positions must be there, masses there or in the MassTable; other absent quantities go to ``missing``.
        """
        n, pt = int(hd.counts[ptype]), f"PartType{ptype}"
        if pt not in f:
            raise SnapshotError(f"{hd.path}: missing group {pt} (Header/NumPart_ThisFile[{ptype}] = {n})")
        out = {}
        for q in ("pos", *quantities):
            name = f"{pt}/{self.layout.datasets[q]}"
            if self.layout.datasets[q] is not None and name in f:
                out[q] = (name, f[name], self.check_dataset(hd.path, f[name], name, q, n, (3,) if q == "pos" else ()))
            elif q == "pos":
                raise SnapshotError(f"{hd.path}: missing dataset {name} (Header/NumPart_ThisFile[{ptype}] = {n})")
            elif q == "mass" and not (ptype < hd.mass_table.size and hd.mass_table[ptype] > 0):
                raise SnapshotError(
                    f"{hd.path}: missing dataset {name} and Header/MassTable[{ptype}] = "
                    f"{hd.mass_table[ptype] if ptype < hd.mass_table.size else 'absent'}"
                )
            elif q != "mass":
                missing.setdefault(q, hd.path)
        return out

    @staticmethod
    def _read_rows(hd: FileHeader, dataset: tuple, quantity: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of a (name, dataset, factor) of :meth:`_particle_datasets`: checked, made physical."""
        name, dset, factor = dataset
        raw = np.asarray(dset[start:stop], dtype=np.float64)
        _check_values(hd.path, name, quantity, raw, hd.box, start)
        return raw * factor


def _rotated_extent(rotations: Sequence[np.ndarray]) -> np.ndarray:
    """Half-extent along x, y, z of the union of the unit cubes |R x|_inf <= 1 over ``rotations``."""
    return np.max([np.abs(np.asarray(R)).sum(axis=0) for R in rotations], axis=0)


class ShardParticles:
    """The snapshot particles around a set of halos, and each halo as a centred :class:`Cluster`.

    ``halos``: catalogue rows (mappings) with halo_id and the centre columns; ``rotations``: per halo id,
    the view rotation matrices of its sightlines; ``half_width_Mpc``: half the side of the projection
    cube (npix pixel_Mpc / 2). ``thermo=False`` skips the gas thermodynamics (mass maps only).
    """

    def __init__(
        self,
        cfg: SnapshotConfig | Mapping,
        halos: Sequence[Mapping],
        rotations: Mapping[int, Sequence[np.ndarray]],
        half_width_Mpc: float,
        *,
        params: CosmologyParams | None = None,
        thermo: bool = True,
        gas: bool = True,
        dm: bool = True,
    ):
        cfg = SnapshotConfig.coerce(cfg)
        if not cfg.files:
            raise ValueError("particles.snapshot.files is not set")
        self.cfg, self.thermo = cfg, thermo
        self.snap = Snapshot(cfg.files, cfg)
        if params is not None:
            self.snap.check_cosmology(params)
        self.params = params
        self.half = float(half_width_Mpc) + cfg.pad_Mpc
        # distinct view rotations per halo (the three axes of one rotation share it)
        self.rotations = {
            int(k): list(np.unique(np.round(np.asarray(v, dtype=float).reshape(-1, 3, 3), 12), axis=0))
            if len(v)
            else []
            for k, v in rotations.items()
        }
        self.centres = {}
        for row in halos:
            missing = [c for c in CENTRE_COLUMNS if c not in row or not np.isfinite(row[c])]
            if missing:
                raise ValueError(f"halo {row['halo_id']}: the catalogue lacks the centre column(s) {missing}")
            self.centres[int(row["halo_id"])] = np.array([row[c] for c in CENTRE_COLUMNS], dtype=float)
        if cfg.periodic:
            for hid in self.centres:
                ext = self.half * _rotated_extent(self.rotations.get(hid) or [np.eye(3)])
                if np.any(ext > 0.5 * self.snap.box_Mpc):
                    raise ValueError(
                        f"halo {hid}: the projection cube plus pad_Mpc reaches {ext.max():.3g} Mpc from the centre, "
                        f"more than half the periodic box ({self.snap.box_Mpc.min():.3g} Mpc); lower pad_Mpc or the field of view"
                    )
        centres = np.array(list(self.centres.values())).reshape(-1, 3)
        radius = np.sqrt(3.0) * self.half
        self.gas = self.dm = None
        if dm:
            self.dm, _ = self.snap.read_near(DM, ("mass",), centres, radius)
        if gas:
            q = ("mass", "density", "hsml", "u", "x_e") if thermo else ("mass", "density", "hsml")
            self.gas, missing = self.snap.read_near(GAS, q, centres, radius)
            names = self.snap.layout.datasets
            if thermo and "u" in missing:
                raise SnapshotError(
                    f"{missing['u']}: missing dataset PartType0/{names['u']}, needed for the tSZ and X-ray maps"
                )
            if thermo and "x_e" in missing:
                if cfg.missing_electron_abundance == "error":
                    raise SnapshotError(
                        f"{missing['x_e']}: missing dataset PartType0/{names['x_e'] or 'ElectronAbundance'}, needed for "
                        f"the tSZ and X-ray maps (particles.snapshot.missing_electron_abundance: fully_ionised assumes "
                        f"fully ionised hydrogen and helium)"
                    )
                X = cfg.hydrogen_fraction
                self.gas["x_e"] = np.full(len(self.gas["pos"]), (1.0 + X) / (2.0 * X))
        log.info(
            "%s: z = %.4g, box %.4g Mpc; read %d gas and %d DM particles near %d halos",
            self.snap.paths[0],
            self.snap.z,
            self.snap.box_Mpc[0],
            0 if self.gas is None else len(self.gas["pos"]),
            0 if self.dm is None else len(self.dm["pos"]),
            len(self.centres),
        )

    @property
    def redshift(self) -> float:
        return self.snap.z

    def attrs(self) -> dict:
        s = self.snap
        return {
            "particle_source": "snapshot",
            "snapshot_files": str(self.cfg.files),
            "snapshot_redshift": float(s.z),
            "snapshot_scale_factor": float(s.a),
            "snapshot_box_Mpc": float(s.box_Mpc[0]),
        }

    def _select(self, pos: np.ndarray, halo_id: int):
        d = pos - self.centres[halo_id]
        if self.cfg.periodic:
            box = self.snap.box_Mpc
            d -= box * np.round(d / box)
        keep = in_views(d, self.rotations.get(halo_id) or [None], self.half)
        return d[keep], keep

    def _smoothing(self, pos, mass, what: str, halo_id: int, density: bool):
        from ..projection.sph import smoothing_lengths, smoothing_lengths_and_density

        if len(pos) < self.cfg.n_ngb:
            raise ValueError(
                f"halo {halo_id}: only {len(pos)} {what} particles within the projection cube plus pad_Mpc, "
                f"fewer than n_ngb = {self.cfg.n_ngb}"
            )
        if density:
            return smoothing_lengths_and_density(pos, mass, n_ngb=self.cfg.n_ngb, workers=self.cfg.sph_workers)
        return smoothing_lengths(pos, n_ngb=self.cfg.n_ngb, workers=self.cfg.sph_workers), None

    def cluster(self, halo: Mapping | int) -> Cluster:
        """The particles around one halo, centred on it (positions in physical Mpc), ready to project."""
        halo_id = int(halo["halo_id"]) if isinstance(halo, Mapping) else int(halo)
        if halo_id not in self.centres:
            raise KeyError(f"halo {halo_id} is not among this shard's halos")
        dm = gas = ParticleSet.empty()
        if self.dm is not None:
            pos, keep = self._select(self.dm["pos"], halo_id)
            mass = self.dm["mass"][keep]
            H, _ = self._smoothing(pos, mass, "dark-matter", halo_id, density=False)
            dm = ParticleSet(pos=pos, mass=mass, hsml=H)
        if self.gas is not None:
            g = self.gas
            pos, keep = self._select(g["pos"], halo_id)
            mass = g["mass"][keep]
            have_h = self.cfg.use_file_hsml and "hsml" in g
            have_rho = "density" in g
            if have_h and have_rho:
                H, rho = g["hsml"][keep] * self.cfg.support_factor, g["density"][keep]
            else:
                H_sph, rho_sph = self._smoothing(pos, mass, "gas", halo_id, density=not have_rho)
                H = g["hsml"][keep] * self.cfg.support_factor if have_h else H_sph
                rho = g["density"][keep] if have_rho else rho_sph
            kw = {}
            if self.thermo:
                P, kT, l_bol = gas_thermodynamics(
                    rho, g["u"][keep], g["x_e"][keep], hydrogen_fraction=self.cfg.hydrogen_fraction, g_ff=self.cfg.g_ff
                )
                kw = dict(pressure_e=P, temperature_keV=kT, xray_emissivity=l_bol)
            gas = ParticleSet(pos=pos, mass=mass, hsml=H, density=rho, **kw)
        meta = {
            "halo_id": halo_id,
            "centre_Mpc": self.centres[halo_id].tolist(),
            "redshift": float(self.snap.z),
            "n_dm": len(dm),
            "n_gas": len(gas),
        }
        return Cluster(dm=dm, gas=gas, meta=meta)
