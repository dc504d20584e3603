"""Particle containers of one mock cluster.

Units: positions in physical Mpc relative to the host dark-matter centre, masses in Msun, smoothing lengths
(kernel *support* radii H) in Mpc, densities in Msun/Mpc^3, electron pressure in keV cm^-3, temperature in
keV, bolometric X-ray emissivity in erg s^-1 cm^-3.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from massmaps.jit import njit

__all__ = ["Cluster", "ParticleSet", "in_any_cube", "rotate", "rotate_in_cube"]


@njit(cache=True, inline="always")
def _rot(R, x, y, z, i):
    # row i of R times (x, y, z), summed left to right without fused multiply-adds: every caller
    # (rotate, rotate_in_cube, in_any_cube) gets the same bytes, so their selections agree
    return (R[i, 0] * x + R[i, 1] * y) + R[i, 2] * z


@njit(cache=True)
def _rotate_kernel(pos, R, out):
    for n in range(pos.shape[0]):
        x = pos[n, 0]
        y = pos[n, 1]
        z = pos[n, 2]
        for i in range(3):
            out[n, i] = _rot(R, x, y, z, i)


@njit(cache=True)
def _rotate_in_cube_kernel(pos, R, half, out, inside):
    for n in range(pos.shape[0]):
        x = pos[n, 0]
        y = pos[n, 1]
        z = pos[n, 2]
        ok = True
        for i in range(3):
            v = _rot(R, x, y, z, i)
            out[n, i] = v
            ok &= abs(v) <= half
        inside[n] = ok


@njit(cache=True)
def _in_any_cube_kernel(pos, Rs, half, out):
    # |R p|_inf >= |p| / sqrt(3): a point farther than sqrt(3) half (with a margin far above round-off)
    # is outside every cube, and is not rotated at all
    far2 = 3.0 * half * half * (1.0 + 1e-9)
    for n in range(pos.shape[0]):
        x = pos[n, 0]
        y = pos[n, 1]
        z = pos[n, 2]
        out[n] = False
        if x * x + y * y + z * z > far2:
            continue
        for v in range(Rs.shape[0]):
            R = Rs[v]
            a = abs(_rot(R, x, y, z, 0))
            b = abs(_rot(R, x, y, z, 1))
            c = abs(_rot(R, x, y, z, 2))
            if a <= half and b <= half and c <= half:
                out[n] = True
                break


def _as_pos(pos: np.ndarray) -> np.ndarray:
    pos = np.ascontiguousarray(pos, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {pos.shape}")
    return pos


def _as_rotation(rotation) -> np.ndarray:
    R = np.ascontiguousarray(rotation, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"a rotation must be a 3 x 3 matrix, got shape {R.shape}")
    return R


def rotate(pos: np.ndarray, rotation: np.ndarray | None) -> np.ndarray:
    """``pos @ rotation.T`` for (N, 3) positions, without BLAS (``rotation`` None: ``pos`` itself).

    A BLAS matrix product leaves OpenBLAS's worker threads spinning for a while after it returns; on a
    2-core machine they then compete with the projection's numba threads, which doubled the time of a
    mock cluster's projection (211 ms against 100 ms per view, ``OPENBLAS_NUM_THREADS=1`` giving the
    second). A numba loop runs in one thread, and is the arithmetic of :func:`rotate_in_cube` and
    :func:`in_any_cube` to the bit (``einsum``, used before, took 1.1 s of the 11 s that the 12 clusters of
    ``benchmarks/paper_scale.py`` took to generate).
    """
    if rotation is None:
        return np.asarray(pos, dtype=np.float64)
    pos = _as_pos(pos)
    out = np.empty_like(pos)
    _rotate_kernel(pos, _as_rotation(rotation), out)
    return out


def rotate_in_cube(pos: np.ndarray, rotation: np.ndarray | None, half: float) -> tuple[np.ndarray, np.ndarray]:
    """``(rotate(pos, rotation), mask)`` with ``mask`` the rows whose rotated coordinates all have
    ``|x_i| <= half``, in one pass."""
    pos = _as_pos(pos)
    R = np.eye(3) if rotation is None else _as_rotation(rotation)
    out = np.empty_like(pos)
    inside = np.empty(len(pos), dtype=np.bool_)
    _rotate_in_cube_kernel(pos, R, float(half), out, inside)
    return out, inside


def in_any_cube(pos: np.ndarray, rotations, half: float) -> np.ndarray:
    """Mask of the rows that :func:`rotate_in_cube` keeps for at least one of ``rotations`` (``None``
    for the identity), without storing any rotated positions: a point stops at the first cube that
    holds it."""
    pos = _as_pos(pos)
    Rs = [np.eye(3) if R is None else _as_rotation(R) for R in rotations]
    Rs = np.stack(Rs) if Rs else np.zeros((0, 3, 3))
    out = np.empty(len(pos), dtype=np.bool_)
    _in_any_cube_kernel(pos, np.ascontiguousarray(Rs), float(half), out)
    return out


_OPTIONAL = ("hsml", "density", "pressure_e", "temperature_keV", "xray_emissivity")


@dataclass
class ParticleSet:
    """N particles of one species. Optional per-particle fields are ``None`` until computed."""

    pos: np.ndarray
    mass: np.ndarray
    hsml: np.ndarray | None = None
    density: np.ndarray | None = None
    pressure_e: np.ndarray | None = None
    temperature_keV: np.ndarray | None = None
    xray_emissivity: np.ndarray | None = None

    def __post_init__(self):
        self.pos = np.ascontiguousarray(self.pos, dtype=np.float64).reshape(-1, 3)
        self.mass = np.ascontiguousarray(self.mass, dtype=np.float64).reshape(-1)
        n = self.pos.shape[0]
        if self.mass.shape != (n,):
            raise ValueError(f"mass has shape {self.mass.shape}, expected ({n},)")
        for name in _OPTIONAL:
            v = getattr(self, name)
            if v is not None:
                v = np.ascontiguousarray(v, dtype=np.float64).reshape(-1)
                if v.shape != (n,):
                    raise ValueError(f"{name} has shape {v.shape}, expected ({n},)")
                setattr(self, name, v)

    def __len__(self) -> int:
        return self.pos.shape[0]

    @property
    def n(self) -> int:
        return self.pos.shape[0]

    @classmethod
    def empty(cls) -> ParticleSet:
        return cls(pos=np.zeros((0, 3)), mass=np.zeros(0))

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields that are set, by name (pos, mass, then the optional ones present)."""
        out = {"pos": self.pos, "mass": self.mass}
        for name in _OPTIONAL:
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        return out

    def subset(self, mask) -> ParticleSet:
        """The particles selected by a boolean mask or an index array (copies)."""
        mask = np.asarray(mask)
        kw = {name: getattr(self, name) for name in ("pos", "mass", *_OPTIONAL)}
        return ParticleSet(**{k: (None if v is None else v[mask]) for k, v in kw.items()})

    @staticmethod
    def concat(sets: Iterable[ParticleSet]) -> ParticleSet:
        """Concatenate particle sets (empty ones are skipped). An optional field must be set on all or none."""
        sets = [s for s in sets if s is not None and len(s)]
        if not sets:
            return ParticleSet.empty()
        kw: dict[str, Any] = {"pos": np.concatenate([s.pos for s in sets])}
        kw["mass"] = np.concatenate([s.mass for s in sets])
        for name in _OPTIONAL:
            have = [getattr(s, name) is not None for s in sets]
            if all(have):
                kw[name] = np.concatenate([getattr(s, name) for s in sets])
            elif any(have):
                raise ValueError(f"cannot concatenate: field {name!r} is set on some particle sets only")
        return ParticleSet(**kw)


@dataclass
class Cluster:
    """One mock cluster: dark matter, gas, and a JSON-serialisable ``meta`` dict (masses, radii, draws)."""

    dm: ParticleSet
    gas: ParticleSet
    meta: dict = field(default_factory=dict)

    def species(self) -> dict[str, ParticleSet]:
        return {"dm": self.dm, "gas": self.gas}
