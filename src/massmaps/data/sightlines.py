"""Sightline plan: a flat distribution in log mass (docs/physics.md section 8; the paper's Fig. 1).

Per 0.1-dex bin of log10 M200m holding N_b clusters and a target of T images:

1. if 3 N_b >= T, pick T of the 3 N_b cardinal projections uniformly without replacement (subsampling);
2. else give each cluster k = min(n_max, ceil(T / N_b)) projections: its 3 cardinal ones, then
   ceil((k - 3) / 3) extra uniform rotations about the DM centre (3 projections each), truncated to k;
3. if the bin then holds more than T images, drop random ones.

A sightline is (halo, rotation, axis): ``rotation`` 0 is the halo's generated orientation, and the
quaternion columns ``view_q*`` give the extra rotation applied to the particles before projecting along
``axis`` (0, 1, 2 = x, y, z). Rotations reuse one particle realisation, so SPH quantities are reused.

The plan also splits the clusters into train, val and test (:func:`massmaps.learning.split.assign_splits`, by
cluster and stratified in mass), so that the test split can be given more maps than the flat plan holds,
for a posterior evaluation with statistical power, without taking any from training:

4. ``held_out_per_bin``: in each bin of the evaluation mass range, up to that many clusters the flat plan
   left without a view join the test split; so does every halo of a drawn catalogue's test box (flagged
   ``test_only``; the flat plan never uses them) in the evaluation range;
5. ``test_views``: every test cluster in the evaluation range gets views until it has that many (its
   other cardinal axes first, then extra rotations). Views of one cluster are not independent: the
   evaluation's bootstrap resamples clusters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .catalog import draw_rotations, test_only_mask

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
    "split",
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
    split: Mapping | None = None,
) -> pd.DataFrame:
    """Build the sightline table for ``catalog`` (see the module docstring for the algorithm).

    ``split``: ``fractions``, ``bin_dex``, ``eval_mass_range_Msun``, ``test_views`` and ``held_out_per_bin``
    (the config's ``split`` block); default: the split's defaults, no extra test views. The cluster split
    is drawn with ``seed``.

    Shards group whole halos (every sightline of a halo is projected from one particle realisation in
    one job); halos are dealt to shards round-robin in decreasing mass so that shards cost about the same.
    """
    if target_per_bin < 1 or max_per_cluster < 1 or n_shards < 1:
        raise ValueError(
            f"target_per_bin, max_per_cluster and n_shards must be >= 1, "
            f"got {target_per_bin}, {max_per_cluster}, {n_shards}"
        )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    cat = catalog[(catalog["log10_M200m"] >= log10_min - 1e-9) & ~test_only_mask(catalog)].sort_values(
        "halo_id", kind="stable"
    )
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
    labels = _split_and_test_views(rows, catalog, dict(split or {}), seed)

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
    masses = catalog.set_index("halo_id")["M200m_Msun"]
    plan["M200m_Msun"] = masses.loc[plan["halo_id"]].to_numpy()
    plan["split"] = pd.Series(labels).loc[plan["halo_id"]].to_numpy().astype(object)
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


def _split_and_test_views(rows: list, cat: pd.DataFrame, split: Mapping, seed: int) -> dict[int, str]:
    """Split the planned clusters (appending held-out test clusters and extra test views to ``rows``, in
    place); returns {halo_id: split name}."""
    from ..learning.split import EVAL_MASS_RANGE_MSUN, assign_splits, eval_mask, mass_bin_index

    halos = np.array(sorted({r[0] for r in rows}), dtype=np.int64)
    logm = cat.set_index("halo_id")["log10_M200m"]
    bin_dex = split.get("bin_dex", 0.1)
    names = assign_splits(
        halos,
        logm.loc[halos].to_numpy(),
        fractions=split.get("fractions", (0.8, 0.1, 0.1)),
        bin_width=bin_dex,
        seed=seed,
    )
    labels = dict(zip(halos.tolist(), names.tolist()))
    lo, hi = split.get("eval_mass_range_Msun", EVAL_MASS_RANGE_MSUN)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2, 1]))
    held_out = int(split.get("held_out_per_bin", 0))
    if held_out:
        unused = cat[
            ~cat["halo_id"].isin(halos) & ~test_only_mask(cat) & eval_mask(cat["M200m_Msun"].to_numpy(), lo, hi)
        ]
        bins = mass_bin_index(unused["log10_M200m"].to_numpy(), bin_dex)
        for b in np.unique(bins):
            members = np.sort(unused["halo_id"].to_numpy()[bins == b])
            for h in np.sort(rng.choice(members, size=min(held_out, members.size), replace=False)):
                labels[int(h)] = "test"
    for h in cat.loc[test_only_mask(cat) & eval_mask(cat["M200m_Msun"].to_numpy(), lo, hi), "halo_id"]:
        labels[int(h)] = "test"
    mass = cat.set_index("halo_id")["M200m_Msun"]
    for h in sorted(h for h, name in labels.items() if name == "test" and lo <= mass.loc[h] <= hi):
        rows.extend(_more_views(h, [r for r in rows if r[0] == h], int(split.get("test_views", 0)), rng))
    return labels


def _more_views(halo: int, have: list, want: int, rng: np.random.Generator) -> list:
    """Views that bring ``halo`` from its views ``have`` to ``want``: its unused cardinal axes first, then
    new rotations (three axes each)."""
    identity = np.array([0.0, 0.0, 0.0, 1.0])
    used = {(r[1], r[2]) for r in have}
    new = [(halo, 0, a, identity) for a in range(3) if (0, a) not in used][: max(want - len(have), 0)]
    rotation = max((r[1] for r in have), default=0) + 1
    while len(have) + len(new) < want:
        quat = draw_rotations(rng, 1)[0]
        new.extend((halo, rotation, a, quat) for a in range(3))
        rotation += 1
    return new[: max(want - len(have), 0)]


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
