"""Small Gadget-4/AREPO-style (and SWIFT-style) HDF5 snapshots and group catalogues, written by the tests.

Particles are given in physical units (Mpc, Msun, Msun/Mpc^3, erg/g) and written in the file's internal
units: comoving kpc/h and 1e10 Msun/h with (km/s)^2 for the internal energy (Gadget), or comoving Mpc and
1e10 Msun without h (SWIFT).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from massmaps.constants import MPC_CM, MSUN_G

KPC_CM_GADGET = 3.085678e21
MSUN10_G_GADGET = 1.989e43
KMS = 1e5
# exponents (a, h, L, M, V) of each dataset in the Gadget convention
DIMS = {
    "Coordinates": (1, -1, 1, 0, 0),
    "Masses": (0, -1, 0, 1, 0),
    "Density": (-3, 2, -3, 1, 0),
    "InternalEnergy": (0, 0, 0, 0, 2),
    "SmoothingLength": (1, -1, 1, 0, 0),
    "ElectronAbundance": (0, 0, 0, 0, 0),
    "GroupPos": (1, -1, 1, 0, 0),
    "Group_M_Mean200": (0, -1, 0, 1, 0),
    "Group_R_Mean200": (1, -1, 1, 0, 0),
}
QUANTITY = {"pos": "Coordinates", "mass": "Masses", "density": "Density", "u": "InternalEnergy",
            "hsml": "SmoothingLength", "x_e": "ElectronAbundance"}  # fmt: skip


class Gadget:
    """Unit conventions of a Gadget-4 file: z, h, and the internal units in cgs."""

    def __init__(self, z=0.25, h=0.7, length_cm=KPC_CM_GADGET, mass_g=MSUN10_G_GADGET, velocity_cm_s=KMS,
                 Om0=0.3, Ob0=0.045):  # fmt: skip
        self.z, self.h, self.a = z, h, 1.0 / (1.0 + z)
        self.length_cm, self.mass_g, self.velocity_cm_s = length_cm, mass_g, velocity_cm_s
        self.Om0, self.Ob0 = Om0, Ob0
        self.L = length_cm / MPC_CM * self.a / h  # physical Mpc per internal length
        self.M = mass_g / MSUN_G / h  # Msun per internal mass

    def to_internal(self, name, v):
        v = np.asarray(v, dtype=np.float64)
        if name in ("Coordinates", "SmoothingLength", "GroupPos", "Group_R_Mean200"):
            return v / self.L
        if name in ("Masses", "Group_M_Mean200"):
            return v / self.M
        if name == "Density":
            return v / (self.M / self.L**3)
        if name == "InternalEnergy":
            return v / self.velocity_cm_s**2
        return v

    def header(self, f, box_Mpc, *, unit_attrs=True, where="Parameters"):
        hdr = f.require_group("Header")
        hdr.attrs["BoxSize"] = box_Mpc / self.L
        hdr.attrs["Time"] = self.a
        hdr.attrs["Redshift"] = self.z
        par = f.require_group("Parameters")
        par.attrs["HubbleParam"] = self.h
        par.attrs["Omega0"] = self.Om0
        par.attrs["OmegaBaryon"] = self.Ob0
        par.attrs["OmegaLambda"] = 1.0 - self.Om0
        if unit_attrs:
            g = f[where]
            g.attrs["UnitLength_in_cm"] = self.length_cm
            g.attrs["UnitMass_in_g"] = self.mass_g
            g.attrs["UnitVelocity_in_cm_per_s"] = self.velocity_cm_s

    def scaling(self, dset, name):
        a, h, l, m, v = DIMS[name]
        dset.attrs["a_scaling"] = float(a)
        dset.attrs["h_scaling"] = float(h)
        dset.attrs["length_scaling"] = float(l)
        dset.attrs["mass_scaling"] = float(m)
        dset.attrs["velocity_scaling"] = float(v)
        dset.attrs["to_cgs"] = (
            self.length_cm**l * self.mass_g**m * self.velocity_cm_s**v if (l, m, v) != (0, 0, 0) else 0.0
        )


def write_snapshot(base: Path, parts: dict, box_Mpc: float, *, n_files=1, units: Gadget | None = None,
                   mass_table=None, unit_attrs=True, scaling=True, omit=(), dtype=np.float64):  # fmt: skip
    """Write ``parts`` = {ptype: {"pos", "mass", ... physical}} as ``base.N.hdf5`` (or ``base.hdf5`` for one file).

    ``mass_table`` = {ptype: Msun}: those types get no Masses dataset. ``omit``: "PartTypeN/Name" datasets
    left out. Returns the list of paths.
    """
    u = units or Gadget()
    base = Path(base)
    mass_table = mass_table or {}
    counts = {t: len(p["pos"]) for t, p in parts.items()}
    total = np.zeros(6, dtype=np.int64)
    for t, n in counts.items():
        total[t] = n
    table = np.zeros(6)
    for t, m in mass_table.items():
        table[t] = u.to_internal("Masses", m)
    paths = []
    for k in range(n_files):
        path = base.with_name(f"{base.name}.{k}.hdf5") if n_files > 1 else base.with_name(base.name + ".hdf5")
        this = np.zeros(6, dtype=np.int64)
        with h5py.File(path, "w") as f:
            u.header(f, box_Mpc, unit_attrs=unit_attrs)
            for t, p in parts.items():
                n = counts[t]
                lo, hi = n * k // n_files, n * (k + 1) // n_files
                this[t] = hi - lo
                if hi == lo:
                    continue
                g = f.create_group(f"PartType{t}")
                for q, values in p.items():
                    name = QUANTITY[q]
                    if (q == "mass" and t in mass_table) or f"PartType{t}/{name}" in omit:
                        continue
                    d = g.create_dataset(name, data=u.to_internal(name, np.asarray(values)[lo:hi]).astype(dtype))
                    if scaling:
                        u.scaling(d, name)
            hdr = f["Header"]
            hdr.attrs["NumPart_ThisFile"] = this.astype(np.int32)
            hdr.attrs["NumPart_Total"] = (total & 0xFFFFFFFF).astype(np.uint32)
            hdr.attrs["NumPart_Total_HighWord"] = (total >> 32).astype(np.uint32)
            hdr.attrs["MassTable"] = table
            hdr.attrs["NumFilesPerSnapshot"] = np.int32(n_files)
        paths.append(path)
    return paths


def write_group_catalog(base: Path, pos, M200m, R200m, box_Mpc, *, n_files=1, units: Gadget | None = None,
                        omit=()):  # fmt: skip
    """Write a Subfind-style group catalogue ``base.N.hdf5`` with Group/GroupPos, Group_M_Mean200, Group_R_Mean200."""
    u = units or Gadget()
    base = Path(base)
    pos, M200m, R200m = (np.asarray(v, dtype=float) for v in (pos, M200m, R200m))
    n = len(M200m)
    paths = []
    for k in range(n_files):
        path = base.with_name(f"{base.name}.{k}.hdf5") if n_files > 1 else base.with_name(base.name + ".hdf5")
        lo, hi = n * k // n_files, n * (k + 1) // n_files
        with h5py.File(path, "w") as f:
            u.header(f, box_Mpc)
            hdr = f["Header"]
            hdr.attrs["Ngroups_ThisFile"] = np.int32(hi - lo)
            hdr.attrs["Ngroups_Total"] = np.int64(n)
            hdr.attrs["NumFiles"] = np.int32(n_files)
            if hi > lo:
                g = f.create_group("Group")
                for name, v in (("GroupPos", pos), ("Group_M_Mean200", M200m), ("Group_R_Mean200", R200m)):
                    if f"Group/{name}" in omit:
                        continue
                    d = g.create_dataset(name, data=u.to_internal(name, v[lo:hi]).astype(np.float32))
                    u.scaling(d, name)
        paths.append(path)
    return paths


def clump(rng, centre, box_Mpc, n, sigma_Mpc, m):
    """``n`` particles of mass ``m`` in a Gaussian clump about ``centre``, wrapped into the box."""
    rel = rng.normal(0.0, sigma_Mpc, (n, 3))
    return np.mod(np.asarray(centre) + rel, box_Mpc), rel, np.full(n, float(m))


def gas_fields(rel, m, rho0=1e14, kT_keV=5.0):
    """Gas quantities for relative positions: density, u (erg/g) of a fully ionised gas at kT, x_e, hsml."""
    from massmaps.constants import K_B_ERG_PER_K, KEV_K, M_P_G, MU, X_H

    r = np.linalg.norm(rel, axis=1)
    rho = rho0 * np.exp(-0.5 * (r / 0.5) ** 2) + 1e12
    T = kT_keV * KEV_K * np.ones_like(r)
    u = 1.5 * K_B_ERG_PER_K * T / (MU * M_P_G)
    x_e = np.full_like(r, (1 + X_H) / (2 * X_H))
    hsml = (32 * m / (4 / 3 * np.pi * rho)) ** (1 / 3)
    return {"density": rho, "u": u, "x_e": x_e, "hsml": hsml}
