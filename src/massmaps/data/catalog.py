"""Halo catalogues: drawn from a halo mass function, or read from a user's file (docs/physics.md sections 1-2).

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
``test_only``             (drawn catalogues with a test box only) the halo comes from the test box
========================  =====================================================================

A drawn catalogue may add the halos above ``test_box_m_min`` of a second, independent box (``test_box_Mpc``),
numbered after the main box's and flagged ``test_only``: they never enter the flat sightline plan; those in
the evaluation range are test clusters. Where the main box holds a handful of massive clusters, all needed
for training, this gives the evaluation of the massive end more clusters at no cost to training.

Halos of a simulation (``massmaps.data.group_catalog.read_group_catalog``, or a user file that has them) also
carry their centre, ``centre_x_Mpc``, ``centre_y_Mpc``, ``centre_z_Mpc`` (:data:`CENTRE_COLUMNS`, physical
Mpc in the snapshot's box): the projection of snapshot particles needs them. Their c200m and axis
ratios are NaN there (the particles carry the real shape) and their orientation is the identity.

A user's catalogue (:func:`read_catalog`) is checked before anything is drawn; a file that breaks one of these
rules gets a ValueError naming the file, the column and the first bad row (rows are counted from 0, the first
data row after the header), never a silently wrong catalogue:

* the file is a non-empty UTF-8 CSV with a header line, or a parquet table;
* every column of the table above holds numbers (a parquet column of strings is rejected; a CSV is parsed by
  pandas, so numeric text there is fine, any other text is not);
* ``M200m_Msun`` is M200m in Msun without h, within :data:`M200M_RANGE_MSUN` (1e10 to 1e17 Msun): a value
  outside is a unit slip (units of 1e10 Msun/h, log10 M, grams), and at least one halo is at or above ``m_min``;
* ``halo_id`` and ``seed`` are integers in [0, 2**63) (no fraction, no NaN); ``halo_id`` is unique;
* no two rows are identical in every column of the table above: a duplicated halo would be realised twice with
  different seeds and could land in both the training and the test set (give distinct ``halo_id`` values to
  keep distinct halos of equal properties);
* ``rot_qx`` ... ``rot_qw`` come all four or none, finite and not all zero; the centre columns all three or none,
  finite.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import cosmology as cosmo_mod
from ..cosmology import PAPER, CosmologyParams

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

#: Boolean column of a drawn catalogue with a test box: True for the test box's halos.
TEST_ONLY = "test_only"

#: Halo centre in a simulation box (physical Mpc); kept from a user catalogue when all three are present.
CENTRE_COLUMNS = ["centre_x_Mpc", "centre_y_Mpc", "centre_z_Mpc"]

#: Columns a user catalogue must have; every other one is drawn when missing.
REQUIRED_USER_COLUMNS = ["M200m_Msun"]

#: Plausible M200m of a halo in Msun (no h); a user's mass outside is taken for a unit slip.
M200M_RANGE_MSUN = (1e10, 1e17)

ROTATION_COLUMNS = ["rot_qx", "rot_qy", "rot_qz", "rot_qw"]

#: What each readable format must look like (quoted by the errors on a file that cannot be read).
_FORMATS = {
    "csv": "CSV file (UTF-8 text, comma-separated, a header line of column names, one halo per line)",
    "parquet": "parquet file (a table, as written by pandas.DataFrame.to_parquet)",
}


@dataclass(frozen=True)
class HaloModel:
    """How halo properties are drawn (docs/physics.md section 2)."""

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
    for i, name in enumerate(ROTATION_COLUMNS):
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
    test_box_Mpc: float | None = None,
    test_box_m_min: float | None = None,
) -> pd.DataFrame:
    """Draw a halo catalogue for a periodic box of side ``box_Mpc`` (physical Mpc, no h).

    Halos are sorted by decreasing mass and numbered from 0. Positions are not drawn: every cluster is
    generated in isolation with its own environment (docs/physics.md section 5).

    ``test_box_Mpc``: also draw the halos above ``test_box_m_min`` (default ``m_min``) of a second box of that
    side (a Poisson number, from its own random stream, so the main box's halos are the same with or without
    it), numbered after the main box's and flagged in the column :data:`TEST_ONLY` (see the module docstring).
    """
    if box_Mpc <= 0 or m_min <= 0 or m_max <= m_min:
        raise ValueError(f"need box_Mpc > 0 and 0 < m_min < m_max, got {box_Mpc}, {m_min}, {m_max}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    M = draw_masses(rng, box_Mpc**3, m_min, m_max, n_halos, params, model.mass_function)
    main = _fill_properties(pd.DataFrame({"M200m_Msun": M}), rng, model, params)
    if test_box_Mpc is None:
        return main
    m_test = m_min if test_box_m_min is None else test_box_m_min
    if test_box_Mpc <= 0 or not 0 < m_test < m_max:
        raise ValueError(f"need test_box_Mpc > 0 and 0 < test_box_m_min < m_max, got {test_box_Mpc}, {m_test}, {m_max}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, 1]))
    M = draw_masses(rng, test_box_Mpc**3, m_test, m_max, None, params, model.mass_function)
    ids = np.arange(len(main), len(main) + M.size, dtype=np.int64)
    extra = _fill_properties(pd.DataFrame({"M200m_Msun": M, "halo_id": ids}), rng, model, params)
    return pd.concat([main.assign(**{TEST_ONLY: False}), extra.assign(**{TEST_ONLY: True})], ignore_index=True)


def test_only_mask(cat: pd.DataFrame) -> np.ndarray:
    """True for the halos of a drawn catalogue's test box (none in a catalogue without the column)."""
    return cat[TEST_ONLY].to_numpy(dtype=bool) if TEST_ONLY in cat else np.zeros(len(cat), dtype=bool)


def _utf8_text(path: Path) -> str:
    """The text of a CSV file, with a ValueError naming the first byte that is not UTF-8 and its line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: byte offset {err.start} (line {line}) is not UTF-8 ({data[err.start : err.start + 1]!r}); "
            f"expected a {_FORMATS['csv']}"
        ) from err


def _positional(df: pd.DataFrame) -> pd.DataFrame:
    """Rows numbered 0..n-1; a named index a parquet file restored (e.g. halo_id) goes back to a column."""
    index = df.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None:
        return df
    return df.reset_index(drop=all(name is None for name in index.names))


def _read_table(path: Path) -> pd.DataFrame:
    """The table in ``path``, or a ValueError naming the file and the format expected of it."""
    kind = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unknown catalogue format {path.suffix!r}; expected .csv or .parquet")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; expected a {_FORMATS[kind]}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: is empty (0 bytes); expected a {_FORMATS[kind]}")
    text = _utf8_text(path) if kind == "csv" else None
    try:
        df = pd.read_csv(io.StringIO(text)) if kind == "csv" else pd.read_parquet(path)
    except (ValueError, OSError, pa.ArrowException) as err:  # pandas' ParserError and EmptyDataError included
        raise ValueError(f"{path}: cannot be read ({str(err).strip()}); expected a {_FORMATS[kind]}") from err
    return _positional(df)


def _floats(column: pd.Series) -> np.ndarray:
    return column.to_numpy(dtype=float, na_value=np.nan)


def _cell(df: pd.DataFrame, column: str, row: int):
    """The value at a row position, as a plain Python object for the error messages."""
    value = df[column].iloc[row]
    return value.item() if isinstance(value, np.generic) else value


def _check(df: pd.DataFrame, source, column: str, bad, expected: str) -> None:
    """Raise a ValueError naming ``source``, ``column`` and the first rows where ``bad`` holds."""
    rows = np.flatnonzero(np.asarray(bad))
    if rows.size:
        more = f"; {rows.size} bad rows, the first: {rows[:5].tolist()}" if rows.size > 1 else ""
        raise ValueError(
            f"{source}: column {column!r} must be {expected}; row {rows[0]} (counted from 0 after the header) "
            f"holds {_cell(df, column, rows[0])!r}{more}"
        )


def _check_numeric(df: pd.DataFrame, source) -> None:
    """Every known column must have a numeric dtype (text in a parquet file, or text in a CSV, is rejected)."""
    for column in [c for c in COLUMNS + CENTRE_COLUMNS if c in df]:
        dtype = df[column].dtype
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            continue
        not_number = pd.to_numeric(df[column], errors="coerce").isna() & df[column].notna()
        row = int(np.argmax(not_number.to_numpy())) if not_number.any() else int(np.argmax(df[column].notna()))
        raise ValueError(
            f"{source}: column {column!r} must hold numbers, found dtype {dtype}; row {row} (counted from 0 "
            f"after the header) holds {_cell(df, column, row)!r} (store numbers, not text or booleans)"
        )


def _bad_integers(column: pd.Series) -> np.ndarray:
    """Rows of a numeric column that are not integers in [0, 2**63): fractions, NaN, negative, too large."""
    if pd.api.types.is_unsigned_integer_dtype(column.dtype):
        return column.isna().to_numpy() | (column.fillna(0).to_numpy() > np.iinfo(np.int64).max)
    if pd.api.types.is_integer_dtype(column.dtype):
        return column.isna().to_numpy() | (column.fillna(0).to_numpy() < 0)
    values = _floats(column)
    return ~np.isfinite(values) | (values % 1 != 0) | (values < 0) | (values >= 2.0**63)


def _check_values(df: pd.DataFrame, source) -> None:
    """Ranges of the numeric columns; ``df`` has passed :func:`_check_numeric`."""
    lo, hi = M200M_RANGE_MSUN
    mass = _floats(df["M200m_Msun"])
    expected = f"finite and positive, M200m in Msun without h, within [{lo:.0e}, {hi:.0e}] Msun"
    _check(df, source, "M200m_Msun", ~((mass >= lo) & (mass <= hi)), expected)
    for column in [c for c in ["halo_id", "seed"] if c in df]:
        _check(df, source, column, _bad_integers(df[column]), "an integer in [0, 2**63)")
    for column in [c for c in ["R200m_Mpc", "c200m", "axis_ratio_s", "axis_ratio_q"] if c in df]:
        values = _floats(df[column])
        _check(df, source, column, ~np.isfinite(values) | (values <= 0), "finite and positive")
    for column in [c for c in ["axis_ratio_s", "axis_ratio_q"] if c in df]:
        _check(df, source, column, _floats(df[column]) > 1, "at most 1")
    if "axis_ratio_s" in df and "axis_ratio_q" in df:
        _check(df, source, "axis_ratio_q", _floats(df["axis_ratio_q"]) < _floats(df["axis_ratio_s"]), ">= axis_ratio_s")
    for kind, group in (("centre", CENTRE_COLUMNS), ("rotation", ROTATION_COLUMNS)):
        partial = [c for c in group if c in df]
        if partial and len(partial) < len(group):
            raise ValueError(f"{source}: has {partial} but not all of the {kind} columns {group}")
        for column in partial:
            _check(df, source, column, ~np.isfinite(_floats(df[column])), "finite")
    if "rot_qw" in df:
        norm = np.linalg.norm(np.stack([_floats(df[c]) for c in ROTATION_COLUMNS], axis=1), axis=1)
        _check(df, source, "rot_qw", norm == 0, "such that (rot_qx, rot_qy, rot_qz, rot_qw) is not all zero")


def _first_duplicate(frame: pd.DataFrame) -> tuple[int, int] | None:
    """The first rows (i < j) that are identical in every column of ``frame``, or None."""
    later = frame.duplicated(keep="first").to_numpy()
    if not later.any():
        return None
    j = int(np.argmax(later))
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return int(np.argmax(hashes == hashes[j])), j


def _check_duplicates(df: pd.DataFrame, source) -> None:
    """Duplicated halo ids, and rows identical in every catalogue column, are rejected."""
    pair = _first_duplicate(df[["halo_id"]]) if "halo_id" in df else None
    if pair:
        raise ValueError(
            f"{source}: column 'halo_id' must be unique; rows {pair[0]} and {pair[1]} (counted from 0 after the "
            f"header) both hold {_cell(df, 'halo_id', pair[1])!r}"
        )
    columns = [c for c in COLUMNS + CENTRE_COLUMNS if c in df]
    pair = _first_duplicate(df[columns])
    if pair:
        raise ValueError(
            f"{source}: rows {pair[0]} and {pair[1]} (counted from 0 after the header) are identical in every "
            f"catalogue column {columns}; duplicated halos are rejected (the same cluster would be realised twice, "
            "with different seeds, and could land in both the training and the test set): remove the copy, or give "
            "distinct halo_id values to keep distinct halos of equal properties"
        )


def validate_catalog(df: pd.DataFrame, source: str | os.PathLike = "<catalogue>") -> None:
    """Raise a ValueError naming ``source``, the column and the first row that break the catalogue rules.

    The rules are listed in the module's docstring; rows are counted from 0 (the first data row after the header).
    """
    missing = [c for c in REQUIRED_USER_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {missing}; a halo catalogue needs {REQUIRED_USER_COLUMNS} "
            f"(optional: {[c for c in COLUMNS if c not in REQUIRED_USER_COLUMNS]}); found {list(df.columns)}"
        )
    if len(df) == 0:
        raise ValueError(f"{source}: the catalogue has no rows")
    _check_numeric(df, source)
    _check_values(df, source)
    _check_duplicates(df, source)


def read_catalog(
    path: str | os.PathLike,
    *,
    seed: int = 0,
    m_min: float | None = None,
    model: HaloModel = HaloModel(),
    params: CosmologyParams = PAPER,
) -> pd.DataFrame:
    """Read a user catalogue (CSV or parquet), validate it, keep the halos with M200m >= ``m_min``, and draw
    every optional column it lacks.

    A file that cannot be read, or that breaks a rule of the module's docstring (masses in Msun without h within
    :data:`M200M_RANGE_MSUN`, integer and unique ``halo_id``, integer ``seed`` >= 0, numeric columns, no
    duplicated rows), gets a ValueError naming the file, the column and the first bad row; so does a catalogue
    with no halo left at or above ``m_min`` (the config key ``catalog.m_min_Msun``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: halo catalogue not found")
    df = _read_table(path)
    validate_catalog(df, path)
    if m_min is not None:
        largest = df["M200m_Msun"].max()
        df = df[df["M200m_Msun"] >= m_min]
        if df.empty:
            raise ValueError(
                f"{path}: no halo has M200m_Msun >= m_min = {m_min:.4g} Msun (config key catalog.m_min_Msun); "
                f"the largest mass found is {largest:.4g} Msun"
            )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    return _fill_properties(df.sort_values("M200m_Msun", ascending=False, kind="stable"), rng, model, params)


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table to parquet through :func:`massmaps.files.atomic_path`."""
    from ..files import atomic_path

    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


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
