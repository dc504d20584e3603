"""Global per-field min-max normalisation to [0, 1] (paper section 3.1).

Each field (gas, dm, tsz, xray) is mapped with ONE pair of bounds taken over the whole training
split, so that relative intensities between clusters of different mass survive (the paper's choice).
An optional monotonic stretch is applied before the min-max step:

- ``"none"``: y = x (the paper);
- ``"log"``: y = log10(max(x, floor) + offset); values below ``floor`` are clipped (the only
  non-invertible case), ``floor + offset`` must be positive;
- ``"asinh"``: y = asinh(x / scale), linear below ``scale`` and logarithmic above.

Given by name only (``stretch="log"`` or ``"asinh"``), the parameter is fitted from the training split
in a first pass: the log floor is ``10**-log_decades`` times the field's largest value (values more than
``log_decades`` decades below the brightest pixel are clipped), and the asinh scale is the median over
chunks of each chunk's median of |x| (a typical outskirt value) times ``asinh_scale_factor`` (1 by
default; per field or one for all). A larger scale makes the stretch linear further in: the network's error,
a fraction of the stretched range, then costs fewer per cent of mass in a cluster's core.

The bounds are fitted over an iterable of chunks (a few hundred sightlines at a time), so the full
data set never has to be in memory. Values outside the training range (validation and test maps)
map outside [0, 1]; nothing is clipped. Arithmetic is in float64, results are float32, and
``invert(apply(x)) == x`` to float32 precision. ``to_dict``/``from_dict`` give a JSON-able record
stored beside the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import xarray as xr

from ..store import INPUTS, TARGETS

FIELDS = ("gas", "dm", "tsz", "xray")
STRETCHES = ("none", "log", "asinh")
FORMAT = "massmaps-normaliser"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FieldScaling:
    """Stretch parameters and fitted bounds (in stretched units) of one field.

    ``floor`` (log) or ``scale`` (asinh) may be ``None``: fitted from the data by :meth:`Normaliser.fit`.
    """

    stretch: str = "none"
    floor: float | None = 0.0  # "log" only
    offset: float = 0.0  # "log" only
    scale: float | None = 1.0  # "asinh" only
    vmin: float | None = None
    vmax: float | None = None

    @property
    def needs_data(self) -> bool:
        return (self.stretch == "log" and self.floor is None) or (self.stretch == "asinh" and self.scale is None)

    def __post_init__(self):
        if self.stretch not in STRETCHES:
            raise ValueError(f"unknown stretch {self.stretch!r}; valid: {STRETCHES}")
        if self.needs_data:
            if self.vmin is not None:
                raise ValueError("a fitted FieldScaling needs its stretch parameter")
            return
        if self.stretch == "log" and not (self.floor + self.offset > 0):
            raise ValueError(f"log stretch needs floor + offset > 0, got floor={self.floor}, offset={self.offset}")
        if self.stretch == "asinh" and not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"asinh stretch needs scale > 0, got {self.scale}")
        if (self.vmin is None) != (self.vmax is None):
            raise ValueError("vmin and vmax must both be set or both be None")
        if self.vmin is not None and not (np.isfinite(self.vmin) and self.vmax > self.vmin):
            raise ValueError(f"need finite vmin < vmax, got {self.vmin}, {self.vmax}")

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The stretch, float64 in and out."""
        if self.stretch == "log":
            return np.log10(np.maximum(x, self.floor) + self.offset)
        if self.stretch == "asinh":
            return np.arcsinh(x / self.scale)
        return x

    def inverse(self, y: np.ndarray) -> np.ndarray:
        if self.stretch == "log":
            return np.power(10.0, y) - self.offset
        if self.stretch == "asinh":
            return np.sinh(y) * self.scale
        return y


class Normaliser:
    """Per-field global min-max scaling with an optional stretch.

    Parameters
    ----------
    fields : names of the fields, in the order of the field axis of the chunks given to ``fit``.
    stretch : one stretch name for all fields, or a mapping field -> name or
        field -> {"stretch": name, "floor": ..., "offset": ..., "scale": ...}; fields not in the
        mapping get "none".
    asinh_scale_factor : multiplies a fitted asinh scale; one number (fields without a fitted asinh scale
        ignore it), or a mapping field -> number (fields not in it: 1; a field in it must have a fitted asinh
        scale).
    """

    def __init__(
        self,
        fields: Sequence[str] = FIELDS,
        stretch="none",
        *,
        log_decades: float = 6.0,
        asinh_scale_factor: float | Mapping[str, float] = 1.0,
    ):
        fields = tuple(fields)
        if len(set(fields)) != len(fields) or not fields:
            raise ValueError(f"fields must be distinct and non-empty, got {fields}")
        factors = (
            asinh_scale_factor if isinstance(asinh_scale_factor, Mapping) else dict.fromkeys(fields, asinh_scale_factor)
        )
        unknown = set(factors) - set(fields)
        if unknown:
            raise ValueError(f"asinh_scale_factor given for unknown fields {sorted(unknown)}; fields: {fields}")
        for f, v in factors.items():
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"asinh_scale_factor of field {f!r} must be a finite number > 0, got {v!r}")
        self.asinh_scale_factor = {f: float(factors.get(f, 1.0)) for f in fields}
        if isinstance(stretch, str):
            stretch = {f: stretch for f in fields}
        unknown = set(stretch) - set(fields)
        if unknown:
            raise ValueError(f"stretch given for unknown fields {sorted(unknown)}; fields: {fields}")
        self.log_decades = float(log_decades)
        self.fields = fields
        self.scalings: dict[str, FieldScaling] = {}
        for f in fields:
            spec = stretch.get(f, "none")
            if isinstance(spec, str):  # by name: the parameter is fitted from the data
                spec = {
                    "stretch": spec,
                    **({"floor": None} if spec == "log" else {"scale": None} if spec == "asinh" else {}),
                }
            spec = dict(spec)
            bad = set(spec) - {"stretch", "floor", "offset", "scale"}
            if bad:
                raise ValueError(f"unknown stretch parameters {sorted(bad)} for field {f!r}")
            self.scalings[f] = FieldScaling(**spec)
        if isinstance(asinh_scale_factor, Mapping):  # a factor named for a field must have a scale to multiply
            idle = [f for f in factors if not (self.scalings[f].stretch == "asinh" and self.scalings[f].needs_data)]
            if idle:
                raise ValueError(
                    f"asinh_scale_factor given for fields {idle} without a fitted asinh stretch (stretch: "
                    f"{ {f: self.scalings[f].stretch for f in idle} }); expected stretch asinh with the scale left to the data"
                )

    # ----------------------------------------------------------------------------------- fitting
    @property
    def is_fitted(self) -> bool:
        return all(s.vmin is not None for s in self.scalings.values())

    def _fit_stretch(self, chunks: Iterable, field_axis: int) -> None:
        """First pass: the log floors and asinh scales left to the data."""
        todo = [k for k, f in enumerate(self.fields) if self.scalings[f].needs_data]
        peak = np.zeros(len(self.fields))
        medians: list[list[float]] = [[] for _ in self.fields]
        for chunk in chunks:
            chunk = np.moveaxis(np.asarray(chunk), field_axis, 0)
            for k in todo:
                a = np.abs(chunk[k].astype(np.float64))
                if not np.all(np.isfinite(a)):
                    raise ValueError(f"field {self.fields[k]!r}: non-finite values in the data")
                peak[k] = max(peak[k], a.max(initial=0.0))
                medians[k].append(float(np.median(a)))
        for k in todo:
            f = self.fields[k]
            s = self.scalings[f]
            if s.stretch == "log":
                if not peak[k] > 0:
                    raise ValueError(f"field {f!r}: no positive value to set a log floor from")
                self.scalings[f] = replace(s, floor=float(peak[k] * 10.0**-self.log_decades))
            else:
                scale = float(np.median(medians[k])) if medians[k] else 0.0
                if not scale > 0:
                    scale = float(peak[k] * 1e-3)
                if not scale > 0:
                    raise ValueError(f"field {f!r}: all zero, cannot set an asinh scale")
                self.scalings[f] = replace(s, scale=scale * self.asinh_scale_factor[f])

    def fit(self, chunks: Iterable, *, field_axis: int = 1) -> Normaliser:
        """Fit the bounds over an iterable of arrays, each with all ``fields`` along ``field_axis``.

        Only one chunk is in memory at a time. NaN or infinite values raise ValueError (in a zarr
        store NaN marks a region that was never written). A stretch parameter left to the data needs
        a second pass: then ``chunks`` must be re-iterable (a list, or :meth:`fit_dataarray`).
        """
        if any(s.needs_data for s in self.scalings.values()):
            if iter(chunks) is chunks:
                raise ValueError(
                    "fitting a stretch parameter from the data needs re-iterable chunks (a list, not a generator)"
                )
            self._fit_stretch(chunks, field_axis)
        lo = np.full(len(self.fields), np.inf)
        hi = np.full(len(self.fields), -np.inf)
        n_chunks = 0
        for chunk in chunks:
            chunk = np.moveaxis(np.asarray(chunk), field_axis, 0)
            if chunk.shape[0] != len(self.fields):
                raise ValueError(
                    f"chunk has {chunk.shape[0]} entries on axis {field_axis}, "
                    f"expected {len(self.fields)} fields {self.fields}"
                )
            for k, f in enumerate(self.fields):
                y = self.scalings[f].forward(chunk[k].astype(np.float64))
                if not np.all(np.isfinite(y)):
                    raise ValueError(f"field {f!r}: non-finite values in the data (after stretch)")
                if y.size:
                    lo[k] = min(lo[k], y.min())
                    hi[k] = max(hi[k], y.max())
            n_chunks += 1
        if n_chunks == 0 or not np.all(np.isfinite(lo)):
            raise ValueError("fit() received no data")
        for k, f in enumerate(self.fields):
            if not hi[k] > lo[k]:
                raise ValueError(f"field {f!r} is constant ({lo[k]}): cannot min-max normalise it")
            self.scalings[f] = replace(self.scalings[f], vmin=float(lo[k]), vmax=float(hi[k]))
        return self

    def fit_dataarray(self, maps, sightlines, *, chunk_size: int = 256, field_dim: str = "field"):
        """Fit over ``maps`` (an xarray DataArray, lazily backed) restricted to ``sightlines``.

        ``maps`` has dims (sightline, field, y, x) or any order containing ``field_dim``; chunks of
        ``chunk_size`` sightlines are read one at a time.
        """
        sightlines = np.asarray(sightlines)
        sub = maps.sel({field_dim: list(self.fields)}).transpose("sightline", field_dim, ...)

        class Chunks:  # re-iterable: the stretch parameters may need a first pass
            def __iter__(self):
                for start in range(0, len(sightlines), chunk_size):
                    yield sub.isel(sightline=sightlines[start : start + chunk_size]).values

        return self.fit(Chunks(), field_axis=1)

    # ------------------------------------------------------------------------------ application
    def _prepare(self, x, fields, field_axis):
        if not self.is_fitted:
            raise RuntimeError("Normaliser is not fitted: call fit() or from_dict() first")
        fields = self.fields if fields is None else tuple(fields)
        unknown = [f for f in fields if f not in self.scalings]
        if unknown:
            raise ValueError(f"unknown fields {unknown}; known: {self.fields}")
        x = np.moveaxis(np.asarray(x), field_axis, 0)
        if x.shape[0] != len(fields):
            raise ValueError(f"array has {x.shape[0]} fields on axis {field_axis}, expected {fields}")
        return x, fields

    def apply(self, x, fields: Sequence[str] | None = None, *, field_axis: int = -3) -> np.ndarray:
        """Physical units -> normalised float32 (training range -> [0, 1]).

        ``fields`` names the entries along ``field_axis`` (default: all fields, in order); the
        default axis -3 fits both (F, H, W) maps and (B, F, H, W) batches.
        """
        x, fields = self._prepare(x, fields, field_axis)
        out = np.empty(x.shape, dtype=np.float32)
        for k, f in enumerate(fields):
            s = self.scalings[f]
            out[k] = (s.forward(x[k].astype(np.float64)) - s.vmin) / (s.vmax - s.vmin)
        return np.moveaxis(out, 0, field_axis)

    def invert(self, u, fields: Sequence[str] | None = None, *, field_axis: int = -3) -> np.ndarray:
        """Normalised -> physical units, float32."""
        u, fields = self._prepare(u, fields, field_axis)
        out = np.empty(u.shape, dtype=np.float32)
        for k, f in enumerate(fields):
            s = self.scalings[f]
            out[k] = s.inverse(u[k].astype(np.float64) * (s.vmax - s.vmin) + s.vmin)
        return np.moveaxis(out, 0, field_axis)

    # ---------------------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "method": "global_minmax",
            "fields": {
                f: {
                    "stretch": s.stretch,
                    "floor": s.floor,
                    "offset": s.offset,
                    "scale": s.scale,
                    "min": s.vmin,
                    "max": s.vmax,
                }
                for f, s in self.scalings.items()
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Normaliser:
        if d.get("format") != FORMAT or d.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"not a {FORMAT} v{FORMAT_VERSION} record: format={d.get('format')!r}, version={d.get('version')!r}"
            )
        fields = tuple(d["fields"])
        norm = cls(fields)
        for f, spec in d["fields"].items():
            norm.scalings[f] = FieldScaling(
                stretch=spec["stretch"],
                floor=float(spec["floor"]),
                offset=float(spec["offset"]),
                scale=float(spec["scale"]),
                vmin=None if spec["min"] is None else float(spec["min"]),
                vmax=None if spec["max"] is None else float(spec["max"]),
            )
        return norm

    def __repr__(self) -> str:
        parts = [
            f"{f}: {s.stretch} [{s.vmin:.4g}, {s.vmax:.4g}]" if s.vmin is not None else f"{f}: {s.stretch}"
            for f, s in self.scalings.items()
        ]
        return f"Normaliser({'; '.join(parts)})"


def fit_normaliser(
    ds: xr.Dataset,
    train_index: np.ndarray,
    stretch="none",
    chunk_size: int = 256,
    *,
    log_decades: float = 6.0,
    asinh_scale_factor: float | Mapping[str, float] = 1.0,
) -> Normaliser:
    """Global per-field min-max over the training sightlines (read ``chunk_size`` sightlines at a time), of
    the fields the model sees (its inputs and targets), in the store's order."""
    fields = [str(f) for f in ds["field"].values if str(f) in (*INPUTS, *TARGETS)]
    stretch = dict(stretch) if isinstance(stretch, Mapping) else stretch
    if isinstance(asinh_scale_factor, Mapping):  # the config may name fields this store does not hold
        asinh_scale_factor = {f: v for f, v in asinh_scale_factor.items() if f in fields}
    norm = Normaliser(fields=fields, stretch=stretch, log_decades=log_decades, asinh_scale_factor=asinh_scale_factor)
    return norm.fit_dataarray(ds["maps"], np.sort(train_index), chunk_size=chunk_size)


def _normalised_chunks(ds: xr.Dataset, index: np.ndarray, norm: Normaliser, fields: Sequence[str], chunk_size: int):
    """The normalised ``fields`` (float64) of the sightlines ``index``, ``chunk_size`` sightlines at a time."""
    for start in range(0, index.size, chunk_size):
        maps = ds["maps"].isel(sightline=index[start : start + chunk_size]).sel(field=list(fields)).values
        yield norm.apply(maps.astype(np.float64), list(fields), field_axis=1)


def training_mean(
    ds: xr.Dataset,
    train_index: np.ndarray,
    norm: Normaliser,
    fields: Sequence[str] = TARGETS,
    *,
    per_pixel: bool = True,
    chunk_size: int = 256,
) -> np.ndarray:
    """Mean of the normalised ``fields`` over the training sightlines: (C, H, W), or (C,) with
    ``per_pixel=False``. Reads ``chunk_size`` sightlines at a time."""
    index = np.sort(np.asarray(train_index))
    if index.size == 0:
        raise ValueError("no training sightlines to average")
    total = None
    for part in _normalised_chunks(ds, index, norm, fields, chunk_size):
        part = part.sum(axis=0)
        total = part if total is None else total + part
    mean = total / index.size
    return mean if per_pixel else mean.mean(axis=(1, 2))


def training_std(
    ds: xr.Dataset, train_index: np.ndarray, norm: Normaliser, fields: Sequence[str] = TARGETS, *, chunk_size: int = 256
) -> float:
    """Standard deviation of the normalised ``fields`` over every pixel of the training sightlines."""
    total, total_sq, n = 0.0, 0.0, 0
    for part in _normalised_chunks(ds, np.sort(np.asarray(train_index)), norm, fields, chunk_size):
        total, total_sq, n = total + part.sum(), total_sq + (part**2).sum(), n + part.size
    return float(np.sqrt(total_sq / n - (total / n) ** 2))
