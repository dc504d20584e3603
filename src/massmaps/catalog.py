"""Halo catalogues: drawn from a halo mass function, or read from a user's file (PHYSICS.md sections 1-2).

A catalogue is a :class:`pandas.DataFrame`, one row per halo, whose column names carry their units:

========================  =====================================================================
column                    meaning
========================  =====================================================================
``halo_id``               integer id, unique
``M200m_Msun``            M200m (mass inside the sphere of mean density 200 rho_m), Msun, no h
``log10_M200m``           log10 of the above
``R200m_Mpc``             R200m, physical Mpc
``c200m``                 NFW concentration (median relation times a lognormal scatter)
``axis_ratio_s``          a/c, minor over major axis (Jing & Suto 2002)
``axis_ratio_q``          b/c, intermediate over major axis
``rot_qx`` ... ``rot_qw`` unit quaternion (scalar last): principal frame to generated frame
``seed``                  per-halo seed of every random draw of its particle realisation
========================  =====================================================================

Halos of a simulation (``massmaps.snapshot.read_group_catalog``, or a user file that has them) also
carry their centre, ``centre_x_Mpc``, ``centre_y_Mpc``, ``centre_z_Mpc`` (:data:`CENTRE_COLUMNS`, physical
Mpc in the snapshot's box): the projection of snapshot particles needs them. Their c200m and axis
ratios are NaN there (the particles carry the real shape) and their orientation is the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import cosmology as cosmo_mod
from .cosmology import PAPER, CosmologyParams

COLUMNS = [
    "halo_id",
    "M200m_Msun",
    "log10_M200m",
    "R200m_Mpc",
    "c200m",
    "axis_ratio_s",
    "axis_ratio_q",
    "rot_qx",
    "rot_qy",
    "rot_qz",
    "rot_qw",
    "seed",
]

#: Halo centre in a simulation box (physical Mpc); kept from a user catalogue when all three are present.
CENTRE_COLUMNS = ["centre_x_Mpc", "centre_y_Mpc", "centre_z_Mpc"]

#: Columns a user catalogue must have; every other one is drawn when missing.
REQUIRED_USER_COLUMNS = ["M200m_Msun"]


@dataclass(frozen=True)
class HaloModel:
    """How halo properties are drawn (PHYSICS.md section 2)."""

    mass_function: str = "tinker08"
    concentration: str = "diemer19"
    sigma_log10_c: float = 0.15
    c_min: float = 2.0
    c_max: float = 20.0
    # Jing & Suto 2002: s~ = (a/c) (M/M_*)^(0.07 Om^0.7) ~ N(0.54, 0.113^2); clip a/c to [0.25, 1]
    js02_mean: float = 0.54
    js02_sigma: float = 0.113
    s_min: float = 0.25


def expected_count(
    volume_Mpc3: float,
    m_min: float,
    m_max: float,
    params: CosmologyParams = PAPER,
    model: str = "tinker08",
) -> float:
    """Expected number of halos with m_min <= M200m < m_max in a volume (Mpc^3, no h)."""
    lnM = np.linspace(np.log(m_min), np.log(m_max), 2001)
    return float(np.trapezoid(cosmo_mod.dndlnM(np.exp(lnM), params, model), lnM) * volume_Mpc3)


def draw_masses(
    rng: np.random.Generator,
    volume_Mpc3: float,
    m_min: float,
    m_max: float,
    n_halos: int | None = None,
    params: CosmologyParams = PAPER,
    model: str = "tinker08",
) -> np.ndarray:
    """Draw M200m [Msun] by inverse CDF of the mass function.

    ``n_halos=None`` draws a Poisson number around the expectation; an integer fixes the count
    (the paper's 6,233).
    """
    lnM = np.linspace(np.log(m_min), np.log(m_max), 4001)
    dn = cosmo_mod.dndlnM(np.exp(lnM), params, model)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (dn[1:] + dn[:-1]) * np.diff(lnM))])
    n_exp = cum[-1] * volume_Mpc3
    n = int(rng.poisson(n_exp)) if n_halos is None else int(n_halos)
    u = rng.uniform(0.0, cum[-1], size=n)
    return np.sort(np.exp(np.interp(u, cum, lnM)))[::-1]


def draw_axis_ratios(
    rng: np.random.Generator, M: np.ndarray, model: HaloModel = HaloModel(), params: CosmologyParams = PAPER
) -> tuple[np.ndarray, np.ndarray]:
    """Axis ratios (s = a/c, q = b/c) after Jing & Suto (2002), ApJ 574, 538.

    p(a/b | a/c) is a parabola on [r_min, 1] (r_min = max(a/c, 0.5)); in u = (2 a/b - 1 - r_min)/(1 - r_min)
    it is the Epanechnikov density 3/4 (1 - u^2), drawn as the median of three U(-1, 1) variates.
    """
    M = np.asarray(M, dtype=float)
    mstar = cosmo_mod.nonlinear_mass(params)
    s_tilde = rng.normal(model.js02_mean, model.js02_sigma, size=M.size)
    s = np.clip(s_tilde * (M / mstar) ** (-0.07 * params.Om0**0.7), model.s_min, 1.0)
    r_min = np.maximum(s, 0.5)
    u = np.median(rng.uniform(-1.0, 1.0, size=(M.size, 3)), axis=1)
    a_over_b = 0.5 * (u * (1.0 - r_min) + 1.0 + r_min)
    a_over_b = np.clip(a_over_b, s, 1.0)  # b <= c
    q = np.clip(s / a_over_b, s, 1.0)
    return s, q


def draw_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform random rotations as unit quaternions (n, 4), scalar last (scipy's convention), w >= 0."""
    quat = rng.normal(size=(n, 4))
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    quat *= np.where(quat[:, 3:4] < 0, -1.0, 1.0)
    return quat


def _fill_properties(
    df: pd.DataFrame, rng: np.random.Generator, model: HaloModel, params: CosmologyParams
) -> pd.DataFrame:
    """Complete a catalogue that has at least ``M200m_Msun`` (and maybe ``halo_id``)."""
    M = df["M200m_Msun"].to_numpy(dtype=float)
    n = M.size
    out = pd.DataFrame(index=df.index)
    out["halo_id"] = df["halo_id"].astype("int64") if "halo_id" in df else np.arange(n, dtype=np.int64)
    out["M200m_Msun"] = M
    out["log10_M200m"] = np.log10(M)
    out["R200m_Mpc"] = cosmo_mod.R200m(M, params)
    # Each random stream is drawn for every halo, used or not, so that supplying one column does not
    # shift the draws of the others.
    c_med = cosmo_mod.concentration_200m(M, params, model.concentration) if n else np.zeros(0)
    c_scatter = 10.0 ** rng.normal(0.0, model.sigma_log10_c, size=n)
    c = np.clip(c_med * c_scatter, model.c_min, model.c_max)
    s, q = draw_axis_ratios(rng, M, model, params)
    quat = draw_rotations(rng, n)
    seeds = rng.integers(0, 2**62, size=n, dtype=np.int64)
    out["c200m"] = df["c200m"].to_numpy(dtype=float) if "c200m" in df else c
    out["axis_ratio_s"] = df["axis_ratio_s"].to_numpy(dtype=float) if "axis_ratio_s" in df else s
    out["axis_ratio_q"] = df["axis_ratio_q"].to_numpy(dtype=float) if "axis_ratio_q" in df else q
    for i, name in enumerate(["rot_qx", "rot_qy", "rot_qz", "rot_qw"]):
        out[name] = df[name].to_numpy(dtype=float) if name in df else quat[:, i]
    out["seed"] = df["seed"].astype("int64") if "seed" in df else seeds
    centre = CENTRE_COLUMNS if all(c in df for c in CENTRE_COLUMNS) else []
    for c in centre:
        out[c] = df[c].to_numpy(dtype=float)
    return out[COLUMNS + centre].reset_index(drop=True)


def draw_catalog(
    *,
    box_Mpc: float,
    m_min: float = 1e14,
    m_max: float = 5e16,
    n_halos: int | None = None,
    seed: int = 0,
    model: HaloModel = HaloModel(),
    params: CosmologyParams = PAPER,
) -> pd.DataFrame:
    """Draw a halo catalogue for a periodic box of side ``box_Mpc`` (physical Mpc, no h).

    Halos are sorted by decreasing mass and numbered from 0. Positions are not drawn: every cluster is
    generated in isolation with its own environment (PHYSICS.md section 5).
    """
    if box_Mpc <= 0 or m_min <= 0 or m_max <= m_min:
        raise ValueError(f"need box_Mpc > 0 and 0 < m_min < m_max, got {box_Mpc}, {m_min}, {m_max}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    M = draw_masses(rng, box_Mpc**3, m_min, m_max, n_halos, params, model.mass_function)
    return _fill_properties(pd.DataFrame({"M200m_Msun": M}), rng, model, params)


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise ValueError(f"{path}: unknown catalogue format {suffix!r}; expected .csv or .parquet")


def validate_catalog(df: pd.DataFrame, source: str | os.PathLike = "<catalogue>") -> None:
    """Raise a ValueError naming ``source``, the column and the rows that break the catalogue contract."""
    missing = [c for c in REQUIRED_USER_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {missing}; a halo catalogue needs {REQUIRED_USER_COLUMNS} "
            f"(optional: {[c for c in COLUMNS if c not in REQUIRED_USER_COLUMNS]}); found {list(df.columns)}"
        )
    if len(df) == 0:
        raise ValueError(f"{source}: the catalogue has no rows")

    def check(column: str, bad: np.ndarray, expected: str) -> None:
        if np.any(bad):
            rows = np.flatnonzero(bad)
            raise ValueError(
                f"{source}: column {column!r} must be {expected}; bad value(s) "
                f"{df[column].to_numpy()[rows[:5]].tolist()} at row(s) {rows[:5].tolist()}"
                + (f" and {rows.size - 5} more" if rows.size > 5 else "")
            )

    for column in ["M200m_Msun", "R200m_Mpc", "c200m", "axis_ratio_s", "axis_ratio_q"]:
        if column in df:
            values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
            check(column, ~np.isfinite(values) | (values <= 0), "finite and positive")
    for column in ["axis_ratio_s", "axis_ratio_q"]:
        if column in df:
            check(column, df[column].to_numpy(dtype=float) > 1, "at most 1")
    if "axis_ratio_s" in df and "axis_ratio_q" in df:
        check("axis_ratio_q", df["axis_ratio_q"].to_numpy() < df["axis_ratio_s"].to_numpy(), ">= axis_ratio_s")
    if "halo_id" in df:
        check("halo_id", df["halo_id"].duplicated().to_numpy(), "unique")
    partial = [c for c in CENTRE_COLUMNS if c in df]
    if partial and len(partial) < len(CENTRE_COLUMNS):
        raise ValueError(f"{source}: has {partial} but not all of the centre columns {CENTRE_COLUMNS}")
    for column in CENTRE_COLUMNS:
        if column in df:
            values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
            check(column, ~np.isfinite(values), "finite")


def read_catalog(
    path: str | os.PathLike,
    *,
    seed: int = 0,
    m_min: float | None = None,
    model: HaloModel = HaloModel(),
    params: CosmologyParams = PAPER,
) -> pd.DataFrame:
    """Read a user catalogue (CSV or parquet), validate it, and draw every optional column it lacks."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: halo catalogue not found")
    df = _read_table(path)
    validate_catalog(df, path)
    if m_min is not None:
        df = df[df["M200m_Msun"] >= m_min]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    return _fill_properties(df.sort_values("M200m_Msun", ascending=False, kind="stable"), rng, model, params)


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table to parquet under a temporary name, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def expected_counts_per_bin(
    volume_Mpc3: float,
    log10_max: float,
    *,
    log10_min: float = 14.0,
    bin_dex: float = 0.1,
    n_total: int | None = None,
    m_max: float = 5e16,
    params: CosmologyParams = PAPER,
    model: str = "tinker08",
) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres in log10 M200m, expected halos per bin) up to ``log10_max``.

    With ``n_total`` (a fixed catalogue size), the expectation is rescaled to that total above 10**log10_min.
    """
    left = log10_min + bin_dex * np.arange(int(np.ceil((log10_max - log10_min) / bin_dex)) + 1)
    counts = np.array([expected_count(volume_Mpc3, 10**a, 10 ** (a + bin_dex), params, model) for a in left])
    if n_total:
        counts *= n_total / expected_count(volume_Mpc3, 10**log10_min, m_max, params, model)
    return left + bin_dex / 2, counts
