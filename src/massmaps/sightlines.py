"""Sightline plan: a flat distribution in log mass (PHYSICS.md section 8; the paper's Fig. 1).

Per 0.1-dex bin of log10 M200m holding N_b clusters and a target of T images:

1. if 3 N_b >= T, pick T of the 3 N_b cardinal projections uniformly without replacement (subsampling);
2. else give each cluster k = min(n_max, ceil(T / N_b)) projections: its 3 cardinal ones, then
   ceil((k - 3) / 3) extra uniform rotations about the DM centre (3 projections each), truncated to k;
3. if the bin then holds more than T images, drop random ones.

A sightline is (halo, rotation, axis): ``rotation`` 0 is the halo's generated orientation, and the
quaternion columns ``view_q*`` give the extra rotation applied to the particles before projecting along
``axis`` (0, 1, 2 = x, y, z). Rotations reuse one particle realisation, so SPH quantities are reused.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .catalog import draw_rotations

PLAN_COLUMNS = [
    "sightline_id",
    "halo_id",
    "M200m_Msun",
    "log10_M200m",
    "rotation",
    "axis",
    "view_qx",
    "view_qy",
    "view_qz",
    "view_qw",
    "shard",
]


def mass_bin_index(log10_mass: np.ndarray, log10_min: float, bin_dex: float) -> np.ndarray:
    """Index of the ``bin_dex``-wide bin of log10 mass, counted from ``log10_min``."""
    # A small tolerance keeps values on an edge (14.0 exactly) in the upper bin despite round-off.
    return np.floor((np.asarray(log10_mass) - log10_min) / bin_dex + 1e-9).astype(np.int64)


def plan_sightlines(
    catalog: pd.DataFrame,
    *,
    target_per_bin: int,
    max_per_cluster: int,
    n_shards: int,
    seed: int = 0,
    bin_dex: float = 0.1,
    log10_min: float = 14.0,
) -> pd.DataFrame:
    """Build the sightline table for ``catalog`` (see the module docstring for the algorithm).

    Shards group whole halos (every sightline of a halo is projected from one particle realisation in
    one job); halos are dealt to shards round-robin in decreasing mass so that shards cost about the same.
    """
    if target_per_bin < 1 or max_per_cluster < 1 or n_shards < 1:
        raise ValueError(
            f"target_per_bin, max_per_cluster and n_shards must be >= 1, "
            f"got {target_per_bin}, {max_per_cluster}, {n_shards}"
        )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    cat = catalog[catalog["log10_M200m"] >= log10_min - 1e-9].sort_values("halo_id", kind="stable")
    bins = mass_bin_index(cat["log10_M200m"].to_numpy(), log10_min, bin_dex)
    rows: list[tuple[int, int, int, np.ndarray]] = []  # (halo_id, rotation, axis, quaternion)
    identity = np.array([0.0, 0.0, 0.0, 1.0])
    for b in np.unique(bins):
        halos = cat["halo_id"].to_numpy()[bins == b]
        n_b = halos.size
        if 3 * n_b >= target_per_bin:
            cardinal = [(h, 0, a) for h in halos for a in range(3)]
            pick = np.sort(rng.choice(len(cardinal), size=target_per_bin, replace=False))
            rows.extend((*cardinal[i], identity) for i in pick)
            continue
        k = min(max_per_cluster, math.ceil(target_per_bin / n_b))
        bin_rows = []
        for h in halos:
            n_extra = math.ceil(max(k - 3, 0) / 3)
            quats = np.vstack([identity, draw_rotations(rng, n_extra)]) if n_extra else identity[None]
            views = [(h, r, a, quats[r]) for r in range(1 + n_extra) for a in range(3)]
            bin_rows.extend(views[:k])
        if len(bin_rows) > target_per_bin:
            keep = np.sort(rng.choice(len(bin_rows), size=target_per_bin, replace=False))
            bin_rows = [bin_rows[i] for i in keep]
        rows.extend(bin_rows)

    plan = pd.DataFrame(
        {
            "halo_id": np.array([r[0] for r in rows], dtype=np.int64),
            "rotation": np.array([r[1] for r in rows], dtype=np.int64),
            "axis": np.array([r[2] for r in rows], dtype=np.int64),
        }
    )
    quats = np.array([r[3] for r in rows]).reshape(-1, 4)
    for i, name in enumerate(["view_qx", "view_qy", "view_qz", "view_qw"]):
        plan[name] = quats[:, i]
    masses = cat.set_index("halo_id")["M200m_Msun"]
    plan["M200m_Msun"] = masses.loc[plan["halo_id"]].to_numpy()
    plan["log10_M200m"] = np.log10(plan["M200m_Msun"])
    plan = plan.sort_values(["M200m_Msun", "halo_id", "rotation", "axis"], ascending=[False, True, True, True])
    plan = plan.reset_index(drop=True)
    order = plan.drop_duplicates("halo_id")["halo_id"].to_numpy()  # halos by decreasing mass
    if order.size < n_shards:
        raise ValueError(
            f"n_shards (config sightlines.n_shards) = {n_shards} projection jobs, but only {order.size} halos of "
            f"{len(catalog)} in the catalogue get sightlines (log10 M200m >= {log10_min}); expected at most one "
            "job per halo"
        )
    shard_of = pd.Series(np.arange(order.size) % n_shards, index=order)
    plan["shard"] = shard_of.loc[plan["halo_id"]].to_numpy().astype(np.int64)
    plan["sightline_id"] = np.arange(len(plan), dtype=np.int64)
    return plan[PLAN_COLUMNS]


def view_rotation_matrix(row) -> np.ndarray:
    """3x3 rotation matrix of a plan row's ``view_q*`` quaternion."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_quat([row["view_qx"], row["view_qy"], row["view_qz"], row["view_qw"]]).as_matrix()


def bin_counts(
    log10_mass: np.ndarray, *, bin_dex: float = 0.1, log10_min: float = 14.0
) -> tuple[np.ndarray, np.ndarray]:
    """(left bin edges, counts) of log10 masses in ``bin_dex`` bins from ``log10_min``."""
    idx = mass_bin_index(log10_mass, log10_min, bin_dex)
    n = int(idx.max()) + 1 if idx.size else 0
    counts = np.bincount(idx[idx >= 0], minlength=n)
    return log10_min + bin_dex * np.arange(n), counts
