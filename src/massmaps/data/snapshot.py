"""Simulation snapshots as the particle source: Gadget-4/AREPO-style (and SWIFT-style) HDF5 files.

Entry points:

* :func:`massmaps.data.group_catalog.read_group_catalog`: halos of a Subfind/FoF group catalogue
  (``Group/Group_M_Mean200``, ``Group/Group_R_Mean200``, ``Group/GroupPos``) as a halo-catalogue table
  (:data:`massmaps.data.catalog.COLUMNS` plus the centre columns :data:`massmaps.data.catalog.CENTRE_COLUMNS`);
* :class:`ShardParticles` (here): reads, for a set of halos, the gas (``PartType0``) and dark matter
  (``PartType1``) within reach of their projection cubes, and turns each halo into a
  :class:`~massmaps.data.particles.Cluster` centred on it (periodic minimal image), with smoothing
  lengths, densities and the gas thermodynamics that :func:`massmaps.projection.observables.project_fields` needs.

How a snapshot is read, module by module: :mod:`massmaps.data.snapshot_config` (the ``particles.snapshot``
config and :class:`~massmaps.data.snapshot_config.SnapshotError`), :mod:`massmaps.data.snapshot_layouts`
(dataset names, header attributes and the unit conventions of each layout),
:mod:`massmaps.data.snapshot_files` (headers read and checked against each other, units resolved),
:mod:`massmaps.data.snapshot_checks` (every value read is checked), and this module (the particles).

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

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..constants import (
    BREMS_COEFF,
    GAUNT_FF_DEFAULT,
    K_B_ERG_PER_K,
    KEV_K,
    M_P_G,
    MSUN_PER_MPC3_IN_G_PER_CM3,
)
from ..cosmology import CosmologyParams
from ..projection.observables import in_views
from .catalog import CENTRE_COLUMNS
from .particles import Cluster, ParticleSet
from .snapshot_checks import check_values
from .snapshot_config import SnapshotConfig, SnapshotError
from .snapshot_files import FileHeader, SnapshotFiles
from .snapshot_layouts import GAMMA_ADIABATIC

__all__ = ["DM", "GAS", "ShardParticles", "Snapshot", "gas_thermodynamics"]

log = logging.getLogger(__name__)

GAS, DM = 0, 1


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
class Snapshot(SnapshotFiles):
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
        Reads ``read_chunk`` rows at a time, checks every row read (:func:`check_values`) and keeps only
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
        check_values(hd.path, name, quantity, raw, hd.box, start)
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
