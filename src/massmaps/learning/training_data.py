"""The training data: the dataset store's sightlines as normalised tensor pairs, and the stream of batches.

* :class:`ZarrMapsDataset`: (target, condition) pairs read one sightline at a time from the assembled zarr
  store, normalised, kept in an in-memory item cache, optionally under one of the 8 symmetries of the
  square (:func:`dihedral`);
* :class:`StreamSampler`: an infinite stream of per-epoch permutations drawn from the seed; batch k always
  holds the same sightlines, so a resumed run sees the data an uninterrupted run would have seen.

The training loop that consumes them is :mod:`massmaps.learning.training`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .normalise import Normaliser

__all__ = ["StreamSampler", "ZarrMapsDataset", "dihedral"]


class ZarrMapsDataset(Dataset):
    """Sightlines of the assembled zarr store as normalised (target, condition) tensor pairs.

    The store is opened lazily in each process (DataLoader workers included) and read one sightline
    at a time; nothing is loaded whole. Item i is sightline ``indices[i]`` (positional index along
    the ``sightline`` dimension) as ``(x_target (len(targets), H, W), cond (len(inputs), H, W))``.
    Items are read with zarr directly (xarray's indexing added about 3 ms an item, more than the
    read of a one-sightline chunk) after xarray has checked the store's fields and dimensions.

    Normalised items are kept in memory once read, up to ``cache_mb`` per process (each DataLoader
    worker has its own): all of a laptop-sized training set, the first-read part of a paper-sized one.
    Rotations and flips are applied after the cache; they commute with the per-pixel normalisation,
    so items are the same bytes with or without it.
    """

    def __init__(
        self,
        store_path: str | os.PathLike,
        indices: Sequence[int],
        normaliser: Normaliser,
        inputs: Sequence[str] = ("tsz", "xray"),
        targets: Sequence[str] = ("gas", "dm"),
        variable: str = "maps",
        cache_mb: float = 1024.0,
    ):
        self.store_path = str(store_path)
        self.cache_mb = float(cache_mb)
        self._cache: dict[int, np.ndarray] = {}
        self.indices = np.asarray(indices, dtype=np.int64)
        self.normaliser = normaliser
        self.inputs = tuple(inputs)
        self.targets = tuple(targets)
        self.variable = variable
        self._array = None
        self._pid = None
        from ..store import open_store

        maps = open_store(self.store_path)[variable]  # refuses an incomplete or damaged store
        names = [str(f) for f in maps["field"].values]
        missing = [f for f in self.targets + self.inputs if f not in names]
        if missing:
            raise ValueError(f"{self.store_path}: fields {missing} not in the store's fields {names}")
        if maps.dims[:2] != ("sightline", "field"):
            raise ValueError(f"{self.store_path}: expected dims (sightline, field, y, x), got {maps.dims}")
        self._field_pos = [names.index(f) for f in self.targets + self.inputs]
        n = maps.sizes["sightline"]
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
            raise ValueError(f"indices out of range for {n} sightlines")
        self.map_shape = tuple(maps.shape[2:])

    def _open(self):
        if self._array is None or self._pid != os.getpid():
            import zarr

            self._array = zarr.open_array(Path(self.store_path) / self.variable, mode="r")
            self._pid = os.getpid()
        return self._array

    def _read(self, index: int) -> np.ndarray:
        """The fields of sightline ``index``; a damaged chunk or a non-finite pixel names the store and sightline."""
        try:
            raw = self._open()[index][self._field_pos]
        except ValueError as err:  # e.g. a chunk whose checksum no longer matches
            raise ValueError(
                f"{self.store_path}: sightline {index} cannot be read ({err}); the store is damaged: "
                "delete it and run snakemake again"
            ) from err
        if not np.isfinite(raw).all():
            raise ValueError(
                f"{self.store_path}: sightline {index} has non-finite pixels in fields "
                f"{[f for f, a in zip(self.targets + self.inputs, raw) if not np.isfinite(a).all()]}"
            )
        return raw

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_array"] = None
        state["_pid"] = None
        state["_cache"] = {}
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        """Item ``i``, or ``(i, code)``: item i under the dihedral transform ``code`` (see :func:`dihedral`)."""
        i, code = i if isinstance(i, tuple) else (i, 0)
        nt = len(self.targets)
        block = self._cache.get(i)
        if block is None:
            raw = self._read(int(self.indices[i]))
            block = np.concatenate(
                [self.normaliser.apply(raw[:nt], self.targets), self.normaliser.apply(raw[nt:], self.inputs)]
            )
            if (len(self._cache) + 1) * block.nbytes <= self.cache_mb * 2**20:
                self._cache[i] = block
        block = dihedral(block, code) if code else block.copy()  # the cached array is never handed out
        return torch.from_numpy(block[:nt]), torch.from_numpy(block[nt:])


def dihedral(a: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 symmetries of the square on the last two axes: rotation by (code % 4) x 90 degrees,
    then a flip of the last axis when code >= 4. Code 0 is the identity."""
    out = np.rot90(a, k=code % 4, axes=(-2, -1))
    if code >= 4:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


class StreamSampler(Sampler):
    """Infinite stream of per-epoch random permutations of range(n), starting at position ``start``.

    Epoch e is ``permutation(n)`` from ``default_rng([seed, e])`` (then, with ``augment``, one dihedral
    code per item from the same generator, yielded as ``(index, code)``); the stream does not depend on
    where it was started, so batch k of a resumed run equals batch k of an uninterrupted one.
    """

    def __init__(self, n: int, seed: int, start: int = 0, augment: bool = False):
        if n < 1:
            raise ValueError("the training dataset is empty")
        self.n, self.seed, self.start, self.augment = n, seed, start, augment

    def __iter__(self):
        epoch, offset = divmod(self.start, self.n)
        while True:
            rng = np.random.default_rng([self.seed, epoch])
            perm = rng.permutation(self.n)
            codes = rng.integers(0, 8, self.n) if self.augment else None
            for j in range(offset, self.n):
                yield (int(perm[j]), int(codes[j])) if self.augment else int(perm[j])
            epoch, offset = epoch + 1, 0
