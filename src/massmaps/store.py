"""Zarr stores of projected maps, written atomically.

A store is an xarray Dataset with one variable ``maps`` of dims (sightline, field, y, x), float32, in
physical units per field (the ``units`` coordinate along ``field``), coordinates in Mpc, the sightline
plan's columns as per-sightline coordinates, and provenance in the attributes.

Atomicity: a store is written under a temporary sibling name and renamed onto its final path only once
complete, so an interrupted job never leaves a store that looks complete. Map variables use NaN as the
fill value, so a chunk that was never written reads back as NaN, never as real-looking zeros.

Integrity: the root attributes hold a manifest of every file of the store with its size and CRC32,
written last. :func:`open_store` refuses a store whose files are missing or changed in size since (a
deleted or truncated chunk), and, for stores up to :data:`FULL_CHECK_BYTES`, whose bytes changed, naming
the store, the file and the sightlines it holds. Larger stores are not read in full at every open: there
each compressed chunk of a map variable carries its own CRC32C, so a chunk whose bytes changed fails its
read instead of decoding to wrong numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

#: Attribute marking a store that was completely written.
#: The fields of a dataset store that condition the model (observables) and that it reconstructs.
INPUTS = ("tsz", "xray")
TARGETS = ("gas", "dm")

COMPLETE_ATTR = "massmaps_complete"
#: Attribute holding {file path inside the store: [size in bytes, CRC32]}, written after every other file.
MANIFEST_ATTR = "massmaps_manifest"
#: Stores up to this size have every file's CRC32 checked when opened (about 1 s per GB here).
FULL_CHECK_BYTES = 2 * 2**30


class StoreError(ValueError):
    """A store that is missing, of the wrong kind, incomplete or damaged; the message names it."""


def config_hash(config: Mapping) -> str:
    """Short, stable hash of a JSON-able configuration."""
    blob = json.dumps(config, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _encoding(ds: xr.Dataset, chunk_sightlines: int) -> dict:
    """Map-like variables (sightline first, 3+ dims): zstd, NaN fill value, one compressed chunk per
    sightline inside shards (files) of ``chunk_sightlines`` sightlines.

    A training batch reads single sightlines in random order: with a chunk per sightline each read
    decompresses that sightline alone (1.1 ms for 4 fields of 128^2 pixels here, against 8.6 ms for
    a chunk of 64 sightlines), while the shards keep the file count of 64-sightline chunks.
    """
    import zarr.codecs

    blosc = zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
    enc = {}
    for name, var in ds.data_vars.items():
        if var.ndim >= 3 and var.dims[0] == "sightline" and np.issubdtype(var.dtype, np.floating):
            enc[name] = {
                "chunks": (1, *var.shape[1:]),
                "shards": (max(1, min(chunk_sightlines, var.shape[0])), *var.shape[1:]),
                "compressors": [blosc, zarr.codecs.Crc32cCodec()],
                "fill_value": var.dtype.type(np.nan),
            }
    return enc


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def clear_stale(path: str | os.PathLike) -> None:
    """Remove temporary stores that a killed writer of ``path`` left behind."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def write_store(ds: xr.Dataset, path: str | os.PathLike, *, chunk_sightlines: int = 16) -> Path:
    """Write ``ds`` to the zarr store ``path`` atomically (temporary name, then rename).

    An existing store at ``path`` is replaced. The dataset is marked complete in its attributes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(path)
    tmp = _tmp_path(path)
    ds = ds.copy()
    for var in ds.variables.values():  # chunking is decided here, not inherited from a source store
        var.encoding = {}
    ds.attrs = {k: v for k, v in ds.attrs.items() if k not in (COMPLETE_ATTR, MANIFEST_ATTR)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        ds.to_zarr(tmp, mode="w-", consolidated=False, encoding=_encoding(ds, chunk_sightlines), zarr_format=3)
    _seal(tmp)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    os.replace(tmp, path)
    return path


def _crc32(path: Path) -> int:
    import zlib

    crc = 0
    with open(path, "rb") as f:
        while block := f.read(2**24):
            crc = zlib.crc32(block, crc)
    return crc


def _manifest(root: Path) -> dict[str, list[int]]:
    """{path relative to the store: [size, CRC32]} of every file but the root metadata (which will hold this)."""
    files = (p for p in root.rglob("*") if p.is_file() and p != root / "zarr.json" and p.name != ".snakemake_timestamp")
    return {p.relative_to(root).as_posix(): [p.stat().st_size, _crc32(p)] for p in sorted(files)}


def _seal(root: Path) -> None:
    """Record the manifest and the completion mark in the root attributes, after every other file."""
    import zarr

    group = zarr.open_group(root, mode="r+", zarr_format=3)
    group.attrs.update({MANIFEST_ATTR: _manifest(root), COMPLETE_ATTR: True})


def _has_dask() -> bool:
    """Whether dask imports (without it xarray opens stores as lazy arrays without dask chunks)."""
    import importlib.util

    return importlib.util.find_spec("dask") is not None


RERUN_HINT = "delete it and run snakemake again (the job that writes it, and what depends on it, rerun)"


#: Attribute of a store that holds one group of a split's sightlines (``"g of G"``, sampling.groups)
GROUP_ATTR = "massmaps_group"


def _open_groups(paths: Sequence, chunks) -> xr.Dataset:
    """The stores of groups 0 .. G-1 of one set of sightlines, as one Dataset along ``sightline``."""
    parts = [open_store(p, chunks=chunks) for p in paths]
    groups = [ds.attrs.get(GROUP_ATTR) for ds in parts]
    want = [f"{g} of {len(parts)}" for g in range(len(parts))]
    if len(parts) > 1 and groups != want:
        raise StoreError(f"{[str(p) for p in paths]}: expected the groups {want} in this order, found {groups}")
    attrs = [{k: v for k, v in ds.attrs.items() if k != GROUP_ATTR} for ds in parts]
    for path, other in zip(paths[1:], attrs[1:]):
        if other != attrs[0]:
            raise StoreError(f"{path}: drawn with other settings than {paths[0]} ({other} != {attrs[0]})")
    if len(parts) == 1:
        return parts[0]
    ds = xr.concat(parts, dim="sightline", data_vars="all", coords="minimal", compat="equals", join="exact")
    ds.attrs = attrs[0]
    return ds


def open_store(path: str | os.PathLike | Sequence, *, chunks: dict | str | None = None) -> xr.Dataset:
    """Open a store lazily (dask chunks as stored unless ``chunks`` says otherwise).

    ``path`` may also be a list: the stores of groups 0 .. G-1 of one set of sightlines (e.g. the posterior
    samples of ``sampling.groups`` jobs), opened as one Dataset along ``sightline``; their attributes must
    agree but for :data:`GROUP_ATTR`, which the result drops.

    Raises FileNotFoundError for a missing store, and :class:`StoreError` naming the store for one that is
    not a zarr store, not completely written, or whose files no longer match its manifest (naming the
    file and its sightlines).
    """
    if isinstance(path, (list, tuple)):
        return _open_groups(list(path), chunks)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: zarr store not found")
    if not (path / "zarr.json").is_file():
        kind = "a file" if path.is_file() else "a directory without zarr.json"
        raise StoreError(f"{path}: expected a zarr store (a directory holding zarr.json), found {kind}; {RERUN_HINT}")
    with warnings.catch_warnings():
        # Snakemake's directory() outputs hold a .snakemake_timestamp file zarr does not know.
        warnings.filterwarnings("ignore", message=".*snakemake_timestamp.*")
        warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy.*")
        ds = xr.open_zarr(path, consolidated=False, chunks=chunks)
    if not ds.attrs.get(COMPLETE_ATTR, False):
        raise StoreError(f"{path}: store is incomplete (attribute {COMPLETE_ATTR!r} missing); {RERUN_HINT}")
    _check_manifest(path, ds)
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != MANIFEST_ATTR}
    if chunks is None and _has_dask():  # dask chunks as stored: a shard, not the one-sightline chunks in it
        for name, var in ds.data_vars.items():
            ds[name] = var.chunk(dict(zip(var.dims, var.encoding.get("shards") or var.encoding["chunks"])))
    # per-sightline metadata is small: hold it in memory, keep only the maps lazy
    ds = ds.assign_coords({k: ds[k].load() for k in ds.coords if k not in ds.dims})
    return ds


def _check_manifest(path: Path, ds: xr.Dataset) -> None:
    """Raise StoreError when a file of the manifest is missing or changed in size since the store was written."""
    manifest = ds.attrs.get(MANIFEST_ATTR)
    if manifest is None:  # written before stores carried a manifest: nothing to compare with
        return
    full = sum(size for size, _ in manifest.values()) <= FULL_CHECK_BYTES
    for rel, (size, crc) in manifest.items():
        f = path / rel
        found = f.stat().st_size if f.is_file() else None
        what = "is missing" if found is None else f"has {found} bytes, {size} were written" if found != size else ""
        if not what and full and _crc32(f) != crc:
            what = "has changed bytes (CRC32 differs from the one written)"
        if what:
            raise StoreError(
                f"{path}: store damaged since it was written: {rel} {what}{_sightlines_of(ds, rel)}; {RERUN_HINT}"
            )


def _sightlines_of(ds: xr.Dataset, rel: str) -> str:
    """' (sightline_id a..b)' for a chunk file of a per-sightline variable, else ''."""
    parts = rel.split("/")
    if len(parts) < 3 or parts[1] != "c" or parts[0] not in ds.data_vars or "sightline_id" not in ds.coords:
        return ""
    var = ds[parts[0]]
    if var.dims[0] != "sightline":
        return ""
    per_file = (var.encoding.get("shards") or var.encoding["chunks"])[0]
    ids = ds["sightline_id"].values[int(parts[2]) * per_file : (int(parts[2]) + 1) * per_file]
    return f" (sightline_id {ids.min()}..{ids.max()})" if ids.size else ""


def maps_dataset(
    maps: np.ndarray,
    *,
    fields: Sequence[str],
    units: Sequence[str],
    long_names: Sequence[str],
    pixel_Mpc: float,
    sightline_coords: Mapping[str, np.ndarray],
    attrs: Mapping,
) -> xr.Dataset:
    """Wrap an array (sightline, field, y, x) of maps with coordinates and metadata."""
    n, nf, ny, nx = maps.shape
    centres = (np.arange(nx) + 0.5 - nx / 2) * pixel_Mpc
    coords = {
        # object arrays are stored as variable-length UTF-8 strings (zarr 3's stable string type)
        "field": ("field", np.array(list(fields), dtype=object)),
        "units": ("field", np.array(list(units), dtype=object)),
        "long_name": ("field", np.array(list(long_names), dtype=object)),
        "y": ("y", centres[:ny], {"units": "Mpc", "long_name": "projected offset from the host DM centre"}),
        "x": ("x", centres[:nx], {"units": "Mpc", "long_name": "projected offset from the host DM centre"}),
    }
    for name, values in sightline_coords.items():
        coords[name] = ("sightline", np.asarray(values))
    ds = xr.Dataset(
        {
            "maps": (
                ("sightline", "field", "y", "x"),
                np.asarray(maps, dtype=np.float32),
                {"long_name": "projected maps; units per field in the 'units' coordinate"},
            )
        },
        coords=coords,
        attrs=dict(attrs),
    )
    if "M200m_Msun" in ds.coords:
        ds["M200m_Msun"].attrs["units"] = "Msun"
    return ds


def assemble(
    shard_paths: Sequence[str | os.PathLike], path: str | os.PathLike, *, chunk_sightlines: int = 16
) -> xr.Dataset:
    """Concatenate complete shard stores along ``sightline`` (sorted by sightline_id) into one store."""
    parts = [open_store(p) for p in shard_paths]
    if not parts:
        raise ValueError("assemble: no shard stores given")
    ref = {k: v for k, v in parts[0].attrs.items() if k not in ("shard",)}
    for p, part in zip(shard_paths, parts):
        for key in ("config_hash", "massmaps_version", "pixel_Mpc", "npix"):
            if part.attrs.get(key) != ref.get(key):
                raise ValueError(
                    f"{p}: attribute {key!r} = {part.attrs.get(key)!r} differs from the first shard's {ref.get(key)!r}; "
                    "rerun the projection jobs with one configuration"
                )
    ds = xr.concat(parts, dim="sightline", join="exact", combine_attrs="drop_conflicts")
    ds = ds.sortby("sightline_id").load()
    if np.isnan(ds["maps"].values).any():
        raise ValueError(f"{path}: NaN in the assembled maps (a shard was not completely written)")
    ids = ds["sightline_id"].values
    if np.unique(ids).size != ids.size:
        raise ValueError(f"{path}: duplicate sightline_id across shards")
    ds.attrs = dict(ref)
    ds.attrs["n_shards"] = len(parts)
    write_store(ds, path, chunk_sightlines=chunk_sightlines)
    return ds
