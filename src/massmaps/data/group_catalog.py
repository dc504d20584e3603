"""Halos of a simulation's group catalogue (Subfind/FoF) as a halo-catalogue table (``source: group_catalog``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..cosmology import CosmologyParams
from .catalog import CENTRE_COLUMNS, COLUMNS
from .snapshot_checks import check_values
from .snapshot_config import SnapshotConfig, SnapshotError
from .snapshot_files import SnapshotFiles
from .snapshot_layouts import LAYOUT

__all__ = ["read_group_catalog"]


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
    files = SnapshotFiles(pattern, cfg, "group")
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
                check_values(hd.path, name, q, raw, hd.box)
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
