"""The files of a snapshot or group catalogue: matched, headers read and checked for consistency, units resolved.

:class:`SnapshotFiles` is what :class:`massmaps.data.snapshot.Snapshot` and
:func:`massmaps.data.group_catalog.read_group_catalog` read through: it applies the conventions of
:mod:`massmaps.data.snapshot_layouts` and the checks of :mod:`massmaps.data.snapshot_checks`.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import MPC_CM, MSUN_G
from ..cosmology import CosmologyParams
from .snapshot_checks import header_type_arrays
from .snapshot_config import SnapshotConfig, SnapshotError
from .snapshot_layouts import DIMENSIONS, LAYOUT, Layout, allowed_a_exponents

__all__ = ["FileHeader", "SnapshotFiles", "Units", "expand_files"]


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
        arrays = header_type_arrays(path, hdr, per_type)
        counts = arrays[keys[0]].astype(np.int64)
        high = arrays.get("NumPart_Total_HighWord", np.zeros_like(arrays[keys[1]]))
        total = (arrays[keys[1]] + high * 2.0**32).astype(np.int64)
        n_files = int(_scalar(hdr[keys[2]]))
        mass_table = arrays.get("MassTable", np.zeros(0))
    return FileHeader(path, box, a, z, h, h_loc, cosmo["Om0"], cosmo["Ob0"], units, counts, total, n_files, mass_table)


class SnapshotFiles:
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
        allowed = allowed_a_exponents(quantity)
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
