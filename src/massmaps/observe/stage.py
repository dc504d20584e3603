"""The observe stage over a dataset store: clean maps in, observed maps out (same layout, same sightlines).

Every sightline gets a redshift (fixed, or drawn) and, when an instrument is configured, its observed tSZ
and X-ray maps in place of the clean ones; gas and DM maps are copied unchanged. The random numbers of a
sightline (its redshift, noise and Poisson draws) come from a generator seeded by (seed, sightline_id)
alone, so a sightline's observation does not depend on which other sightlines are in the store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np
import xarray as xr

from .. import store as store_mod
from ..cosmology import CosmologyParams
from ..projection.observables import XRAY_NODE_FIELDS, XRAY_NODES_KEV, XRAY_SPECTRUM
from .instruments import TSZInstrument, XrayInstrument, from_config
from .observe import angular_pixel_arcmin, observe_tsz, observe_xray

__all__ = ["observe_store", "observed_units", "sightline_rng"]

_NODES_KEV = np.asarray(XRAY_NODES_KEV)
#: Stream tag of the observe stage's generators (other stages use other tags).
_STREAM = 0x0B5E


def sightline_rng(seed: int, sightline_id: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), _STREAM, int(sightline_id)]))


def observed_units(tsz: TSZInstrument | None, xray: XrayInstrument | None) -> dict[str, tuple[str, str]]:
    """{field: (units, long name)} of the observed input fields."""
    out = {}
    if tsz is not None:
        out["tsz"] = (
            ("1", "observed Compton y")
            if tsz.unit == "y"
            else ("microK", f"observed tSZ Delta T at {tsz.frequency_GHz:g} GHz")
        )
    if xray is not None:
        band = "-".join(f"{e:g}" for e in xray.band_keV)
        what = "counts" if xray.output == "counts" else "surface brightness"
        out["xray"] = (xray.units, f"observed X-ray {what} in {band} keV")
    return out


def _observe_block(block, ids, *, fields, tsz, xray, law, pixel_Mpc, cosmo, seed):
    """Observe the sightlines of one dask block (sightline, field, y, x) of the clean maps."""
    out = block.astype(np.float64)
    i_tsz, i_x = fields.index("tsz"), fields.index("xray")
    for i, sid in enumerate(ids[:, 0, 0, 0]):
        rng = sightline_rng(seed, sid)
        z = _draw_redshift(law, rng)
        pix = angular_pixel_arcmin(pixel_Mpc, z, cosmo)
        if tsz is not None:
            out[i, i_tsz] = observe_tsz(block[i, i_tsz], tsz, pix, rng)
        if xray is not None:
            nodes = block[i, [fields.index(f) for f in XRAY_NODE_FIELDS]]
            out[i, i_x] = observe_xray(nodes, _NODES_KEV, xray, z, pix, rng)
    return out.astype(np.float32)


def _draw_redshift(law, rng: np.random.Generator) -> float:
    """The sightline's redshift: the first draw of its generator (made whether or not it is used)."""
    u = rng.uniform()
    return law.value if law.kind == "fixed" else law.range[0] + u * (law.range[1] - law.range[0])


def observe_store(
    dataset: str | os.PathLike,
    out: str | os.PathLike,
    observe: Mapping,
    *,
    cosmology: Mapping,
    seed: int,
    chunk_sightlines: int = 16,
) -> xr.Dataset:
    """Write the observed version of the dataset store ``dataset`` to ``out`` (chunk by chunk) and return it."""
    import dask.array as da

    tsz, xray, law = from_config(observe)
    ds = store_mod.open_store(dataset).chunk({"sightline": chunk_sightlines})
    fields = [str(f) for f in ds["field"].values]
    for need in ("tsz", "xray") + (XRAY_NODE_FIELDS if xray is not None else ()):
        if need not in fields:
            hint = f" (add {XRAY_SPECTRUM} to projection.fields)" if need in XRAY_NODE_FIELDS else ""
            raise ValueError(f"{dataset}: the observe stage needs field {need!r}{hint}, the store has {fields}")
    cosmo = CosmologyParams(**dict(cosmology))
    pixel_Mpc = float(ds.attrs["pixel_Mpc"])
    ids = ds["sightline_id"].values
    redshift = np.array([_draw_redshift(law, sightline_rng(seed, sid)) for sid in ids])
    pixel_arcmin = np.array([angular_pixel_arcmin(pixel_Mpc, z, cosmo) for z in redshift])
    maps = ds["maps"].data
    id_blocks = da.from_array(ids.reshape(-1, 1, 1, 1), chunks=(maps.chunks[0], 1, 1, 1))
    observed = da.map_blocks(
        _observe_block, maps, id_blocks, dtype=np.float32, fields=fields, tsz=tsz, xray=xray, law=law,
        pixel_Mpc=pixel_Mpc, cosmo=cosmo, seed=seed,
    )  # fmt: skip
    units = [str(u) for u in ds["units"].values]
    long_names = [str(n) for n in ds["long_name"].values]
    for name, (unit, long_name) in observed_units(tsz, xray).items():
        units[fields.index(name)], long_names[fields.index(name)] = unit, long_name
    result = ds.copy()
    result["maps"] = (ds["maps"].dims, observed, ds["maps"].attrs)
    result = result.assign_coords(
        units=("field", np.array(units, dtype=object)),
        long_name=("field", np.array(long_names, dtype=object)),
        redshift=("sightline", redshift, {"long_name": "redshift the cluster is observed at"}),
        pixel_arcmin=("sightline", pixel_arcmin, {"units": "arcmin", "long_name": "pixel side on the sky"}),
    )
    result.attrs["observe"] = json.dumps(dict(observe), sort_keys=True, default=list)
    result.attrs["observe_seed"] = int(seed)
    store_mod.write_store(result, out, chunk_sightlines=chunk_sightlines)
    return store_mod.open_store(out)
