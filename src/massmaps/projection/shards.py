"""Project one shard of the sightline plan: build each halo's particles once, project every sightline.

The particles come from the mock generator (``source="mock"``, :func:`massmaps.data.mock.make_cluster`) or
from a simulation snapshot (``source="snapshot"``, :class:`massmaps.data.snapshot.ShardParticles`, which reads
the particles around the shard's halos once). This is what a projection job does; it returns an xarray
Dataset for :func:`massmaps.store.write_store`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from .. import __version__
from ..data.sightlines import PLAN_COLUMNS, view_rotation_matrix
from ..store import maps_dataset

log = logging.getLogger(__name__)


def project_shard(
    catalog: pd.DataFrame,
    plan: pd.DataFrame,
    shard: int,
    *,
    source: str = "mock",
    mock_config: Mapping | None = None,
    snapshot_config: Mapping | None = None,
    cosmology: Mapping | None = None,
    npix: int = 32,
    pixel_Mpc: float = 0.4,
    backend: str = "exact",
    fields: Sequence[str] = ("gas", "dm", "tsz", "xray", "xray_kT", "xray_spectrum"),
    attrs: Mapping | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """Maps (sightline, field, y, x) of every sightline of ``plan`` in ``shard``.

    Each halo's particles are built once (the mock: seeded by its catalogue row; a snapshot: the
    particles around its centre) and rotated for each of its sightlines. ``cosmology`` (a mapping of
    :class:`~massmaps.cosmology.CosmologyParams`) is checked against a snapshot's header and normalises its
    surface densities; the mock takes its cosmology from ``mock_config`` (the workflow passes the run's).
    """
    from .observables import FIELDS, expand_fields

    fields = expand_fields(fields)  # xray_spectrum -> its node maps
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; valid fields are {list(FIELDS)}")
    rows = plan[plan["shard"] == shard].sort_values("sightline_id")
    if rows.empty:
        raise ValueError(f"shard {shard} has no sightlines (the plan has shards {sorted(plan['shard'].unique())})")
    # records keep each column's type (a Series row would turn the int64 seed into a float64)
    halos = {int(r["halo_id"]): r for r in catalog.to_dict("records")}
    groups = list(rows.groupby("halo_id", sort=False))
    rotations = {int(h): [view_rotation_matrix(v) for _, v in views.iterrows()] for h, views in groups}
    build, extra_attrs, source_kw = _particle_source(
        source,
        halos,
        groups,
        rotations,
        fields,
        0.5 * npix * pixel_Mpc,
        mock_config=mock_config,
        snapshot_config=snapshot_config,
        cosmology=cosmology,
    )
    maps = np.full((len(rows), len(fields), npix, npix), np.nan, dtype=np.float32)
    project_kw = dict(npix=npix, pixel_Mpc=pixel_Mpc, backend=backend, fields=tuple(fields), **source_kw)
    timings = _project_halos(
        maps, groups, halos, rotations, build, project_kw, desc=f"shard {shard}", progress=progress
    )
    gen, proj = np.array(timings).sum(axis=0)
    # Timings go to the log, never into the store: same config and seed must give the same bytes.
    log.info("shard %d: %d halos, %d sightlines; build %.1fs, project %.1fs", shard, len(groups), len(rows), gen, proj)
    coords = {c: rows[c].to_numpy() for c in PLAN_COLUMNS}
    coords["sightline"] = rows["sightline_id"].to_numpy()
    all_attrs = {
        "massmaps_version": __version__,
        "shard": int(shard),
        "npix": int(npix),
        "pixel_Mpc": float(pixel_Mpc),
        "field_of_view_Mpc": float(npix * pixel_Mpc),
        "projection_backend": backend,
        **extra_attrs,
    }
    all_attrs.update(attrs or {})
    return maps_dataset(
        maps,
        fields=fields,
        units=[FIELDS[f][0] for f in fields],
        long_names=[FIELDS[f][1] for f in fields],
        pixel_Mpc=pixel_Mpc,
        sightline_coords=coords,
        attrs=all_attrs,
    )


def _particle_source(
    source: str,
    halos: Mapping[int, Mapping],
    groups: list,
    rotations: Mapping[int, list],
    fields: Sequence[str],
    half_Mpc: float,
    *,
    mock_config: Mapping | None,
    snapshot_config: Mapping | None,
    cosmology: Mapping | None,
) -> tuple[Callable, dict, dict]:
    """``(build, attrs, project_kw)`` of a particle source: the function from a catalogue row to the halo's
    :class:`~massmaps.data.particles.Cluster`, the store attributes of the source, and the keywords it
    adds to :func:`~massmaps.projection.observables.project_fields` (cosmology, redshift)."""
    from ..cosmology import PAPER, CosmologyParams
    from .observables import XRAY_NODE_FIELDS

    if source == "mock":
        from ..data.mock import MockConfig, make_cluster

        cfg = MockConfig.from_mapping(dict(mock_config or {}))

        def build(halo):
            # only the particles that this shard's views of the halo project get SPH and thermodynamics
            return make_cluster(halo, cfg, views=rotations[int(halo["halo_id"])], half_Mpc=half_Mpc)

        # surface densities over the run's own mean densities
        return build, {"particle_source": source}, {"cosmo": cfg.cosmology}
    if source == "snapshot":
        from ..data.snapshot import ShardParticles

        params = CosmologyParams(**cosmology) if cosmology else PAPER
        particles = ShardParticles(
            dict(snapshot_config or {}),
            [halos[int(h)] for h, _ in groups],
            rotations,
            half_Mpc,
            params=params,
            thermo=any(f in fields for f in ("tsz", "xray", "xray_kT", *XRAY_NODE_FIELDS)),
            gas=any(f in fields for f in ("gas", "tsz", "xray", "xray_kT", *XRAY_NODE_FIELDS)),
            dm="dm" in fields,
        )
        return particles.cluster, particles.attrs(), {"cosmo": params, "redshift": particles.redshift}
    raise ValueError(f"unknown particle source {source!r}; valid sources are ['mock', 'snapshot']")


def _project_halos(
    maps: np.ndarray,
    groups: list,
    halos: Mapping[int, Mapping],
    rotations: Mapping[int, list],
    build: Callable,
    project_kw: dict,
    *,
    desc: str,
    progress: bool,
) -> list[tuple[float, float]]:
    """Fill ``maps`` (sightline, field, y, x) in plan order: each halo of ``groups`` built once, then
    projected along each of its views; returns the seconds of building and of projecting, per halo."""
    from .observables import project_fields

    fields = project_kw["fields"]
    timings = []
    i = 0
    for halo_id, views in tqdm(groups, desc=desc, unit="halo", disable=not progress):
        t0 = time.perf_counter()
        halo = halos[int(halo_id)]
        cluster = build(halo)
        t1 = time.perf_counter()
        for rot, (_, view) in zip(rotations[int(halo_id)], views.iterrows()):
            out = project_fields(cluster, rot, int(view["axis"]), **project_kw)
            maps[i] = np.stack([out[f] for f in fields]).astype(np.float32)
            i += 1
        timings.append((t1 - t0, time.perf_counter() - t1))
        log.info(
            "halo %d (M200m=%.3g): %d DM + %d gas particles, build %.2fs, %d projections %.2fs",
            halo_id,
            halo["M200m_Msun"],
            cluster.dm.mass.size,
            cluster.gas.mass.size,
            t1 - t0,
            len(views),
            time.perf_counter() - t1,
        )
    return timings
