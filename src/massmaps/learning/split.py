"""Train / validation / test split by cluster, stratified in halo mass (paper section 3.1).

Every projection (sightline) of a halo lands in exactly one split, so the model never trains on a
cluster it is tested on. Clusters are grouped in bins of ``bin_width`` dex in log10 M200m, and each
bin is divided in the target fractions: the number of clusters a split gets in a bin differs from
``fraction * n_bin`` by less than one. Which split gets the odd cluster of a bin is drawn at random
with probability equal to the fractional part of its quota (systematic sampling), so sparse bins at
the high-mass tail do not all fall into the training set and the expected count of every split is
exactly its target. Everything is drawn from ``numpy.random.default_rng(seed)``: the same inputs and
seed give the same split, whatever the order of the sightlines.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

SPLIT_NAMES = ("train", "val", "test")

# Paper section 4.1: test on 2e14 <= M/Msun <= 1e15 only.
EVAL_MASS_RANGE_MSUN = (2.0e14, 1.0e15)


def _check_fractions(fractions) -> np.ndarray:
    f = np.asarray(fractions, dtype=float)
    if f.shape != (len(SPLIT_NAMES),):
        raise ValueError(f"fractions must have {len(SPLIT_NAMES)} entries for {SPLIT_NAMES}, got {fractions!r}")
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ValueError(f"fractions must be finite and non-negative, got {fractions!r}")
    if abs(f.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {f.sum():.6g})")
    return f


def split_counts(n: int, fractions, rng: np.random.Generator) -> np.ndarray:
    """Integer counts summing to ``n`` with ``|count_k - n f_k| < 1`` and ``E[count_k] = n f_k``."""
    quota = n * np.asarray(fractions, dtype=float)
    counts = np.floor(quota).astype(int)
    residual = quota - counts  # each in [0, 1); their sum is the number of clusters left
    n_left = n - counts.sum()
    if n_left > 0:
        # Systematic sampling: points u, u+1, ... on the cumulative residuals pick n_left distinct
        # splits, split k with probability residual_k.
        edges = np.cumsum(residual)
        edges *= n_left / edges[-1]  # remove round-off so the last edge is exactly n_left
        points = rng.uniform() + np.arange(n_left)
        chosen = np.searchsorted(edges, points, side="right")
        counts[chosen] += 1
    return counts


def mass_bin_index(log10_mass, bin_width: float = 0.1) -> np.ndarray:
    """Index of the ``bin_width``-dex bin (edges at integer multiples of ``bin_width``)."""
    if not (np.isfinite(bin_width) and bin_width > 0):
        raise ValueError(f"bin_width must be a positive number, got {bin_width!r}")
    # Round first so that a value on an edge (e.g. 14.3 / 0.1 = 142.99999...) falls in the bin above.
    return np.floor(np.round(np.asarray(log10_mass, dtype=float) / bin_width, 9)).astype(np.int64)


def assign_splits(
    halo_id,
    log10_mass,
    *,
    fractions=(0.8, 0.1, 0.1),
    bin_width: float = 0.1,
    seed: int,
) -> np.ndarray:
    """Split name ("train", "val" or "test") for every sightline, split by cluster.

    Parameters
    ----------
    halo_id : array of int, shape (n_sightlines,)
        Halo of each sightline; projections of one halo share the id.
    log10_mass : array of float, shape (n_sightlines,)
        log10(M200m / Msun) of each sightline; must agree between projections of one halo.
    fractions : (train, val, test), non-negative, summing to 1.
    bin_width : width in dex of the mass bins used for stratification.
    seed : seed of ``numpy.random.default_rng``.
    """
    f = _check_fractions(fractions)
    halo_id = np.asarray(halo_id)
    logm = np.asarray(log10_mass, dtype=float)
    if halo_id.ndim != 1 or logm.shape != halo_id.shape:
        raise ValueError(f"halo_id and log10_mass must be 1-d of equal length, got {halo_id.shape} and {logm.shape}")
    if not np.all(np.isfinite(logm)):
        raise ValueError("log10_mass contains non-finite values")
    if not np.issubdtype(halo_id.dtype, np.integer):
        raise ValueError(f"halo_id must be integers, got dtype {halo_id.dtype}")

    clusters, inverse = np.unique(halo_id, return_inverse=True)  # sorted ids: order-independent
    cluster_logm = np.full(len(clusters), np.nan)
    cluster_logm[inverse] = logm
    spread = np.abs(logm - cluster_logm[inverse])
    if np.any(spread > 1e-4):
        bad = halo_id[np.argmax(spread)]
        raise ValueError(f"halo {bad} has projections with different log10_mass")

    rng = np.random.default_rng(seed)
    bins = mass_bin_index(cluster_logm, bin_width)
    cluster_split = np.empty(len(clusters), dtype=np.int64)
    for b in np.unique(bins):
        members = np.flatnonzero(bins == b)
        counts = split_counts(len(members), f, rng)
        members = rng.permutation(members)
        cluster_split[members] = np.repeat(np.arange(len(SPLIT_NAMES)), counts)
    return np.asarray(SPLIT_NAMES)[cluster_split[inverse]]


def eval_mask(mass_msun, lo: float = EVAL_MASS_RANGE_MSUN[0], hi: float = EVAL_MASS_RANGE_MSUN[1]):
    """True where ``lo <= M <= hi`` (M in Msun, not log): the paper's evaluation range."""
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"need 0 < lo < hi, got lo={lo!r}, hi={hi!r}")
    m = np.asarray(mass_msun, dtype=float)
    return (m >= lo) & (m <= hi)


def split_table(
    ds: xr.Dataset,
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    bin_dex: float = 0.1,
    seed: int = 0,
    eval_range_Msun: Sequence[float] = EVAL_MASS_RANGE_MSUN,
) -> pd.DataFrame:
    """One row per sightline of the dataset: its position, ids, mass, split and evaluation flag.

    The split is the one the sightline plan drew (the store's ``split`` coordinate); stores without it
    are split here, by cluster and stratified in mass."""
    table = pd.DataFrame(
        {
            "index": np.arange(ds.sizes["sightline"], dtype=np.int64),
            "sightline_id": ds["sightline_id"].values.astype(np.int64),
            "halo_id": ds["halo_id"].values.astype(np.int64),
            "M200m_Msun": ds["M200m_Msun"].values,
            "log10_M200m": ds["log10_M200m"].values,
        }
    )
    if "split" in ds.coords:  # drawn with the sightline plan (which may give the test split extra views)
        table["split"] = [str(v) for v in ds["split"].values]
    else:
        table["split"] = assign_splits(
            table["halo_id"].to_numpy(),
            table["log10_M200m"].to_numpy(),
            fractions=tuple(fractions),
            bin_width=bin_dex,
            seed=seed,
        )
    table["in_eval_range"] = eval_mask(table["M200m_Msun"].to_numpy(), *eval_range_Msun)
    return table
