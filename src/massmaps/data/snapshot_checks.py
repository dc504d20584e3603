"""The content checks of snapshot and group-catalogue files.

Every value read is checked: finite, positions (``Coordinates``, ``GroupPos``) inside [0, BoxSize],
masses, densities, smoothing lengths and internal energies > 0, electron abundances and the group masses
and radii >= 0; the header's per-type arrays (``NumPart_ThisFile``, ``NumPart_Total``,
``NumPart_Total_HighWord``, ``MassTable``) of one length, finite and >= 0. Every error names the file and
the dataset or attribute (and the row and value).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .snapshot_config import SnapshotError

__all__ = ["BOX_TOLERANCE", "VALID", "check_values", "header_type_arrays"]

#: What the values of each quantity must be besides finite: "box" (inside [0, BoxSize]), "> 0" or ">= 0"
VALID = {"pos": "box", "group_pos": "box", "mass": "> 0", "density": "> 0", "hsml": "> 0", "u": "> 0", "x_e": ">= 0",
         "group_m200m": ">= 0", "group_r200m": ">= 0"}  # fmt: skip
#: Slack of the box check relative to BoxSize (positions wrapped and rounded in single precision)
BOX_TOLERANCE = 1e-4


def check_values(path, name: str, quantity: str, values: np.ndarray, box: np.ndarray, first_row: int = 0) -> None:
    """Raise naming file, dataset, row and value unless every value is finite and in the range VALID gives.

    ``values``: rows of the dataset as stored, from ``first_row`` on; ``box``: the header's BoxSize (per axis).
    """
    v = values.reshape(len(values), -1)
    rule = VALID[quantity]
    if rule == "box":
        ok = (v >= -BOX_TOLERANCE * box) & (v <= (1 + BOX_TOLERANCE) * box)
    else:
        ok = v > 0 if rule == "> 0" else v >= 0
    bad = np.argwhere(~(ok & np.isfinite(v)))
    if bad.size == 0:
        return
    row, col = bad[0]
    where = f"row {first_row + row}" + (f", column {col}" if v.shape[1] > 1 else "")
    if rule == "box":
        expected = f" outside [0, BoxSize={box[col]:g}]; expected finite positions inside the box"
    else:
        expected = f"; expected finite values {rule}"
    raise SnapshotError(f"{path}: dataset {name}: value {v[row, col]:.6g} at {where}{expected}")


def header_type_arrays(path, hdr, names: Sequence[str]) -> dict:
    """The header's per-type arrays ``names`` that are present, as floats: of one length, finite and >= 0."""
    arrays = {k: np.asarray(hdr[k], dtype=float).reshape(-1) for k in names if k in hdr}
    if len({a.size for a in arrays.values()}) > 1:
        sizes = ", ".join(f"Header/{k} has {a.size}" for k, a in arrays.items())
        raise SnapshotError(
            f"{path}: header arrays of different lengths ({sizes}); expected one entry per particle type in each"
        )
    for k, a in arrays.items():
        bad = np.flatnonzero(~(np.isfinite(a) & (a >= 0)))
        if bad.size:
            raise SnapshotError(f"{path}: attribute Header/{k}[{bad[0]}] = {a[bad[0]]:g}; expected finite values >= 0")
    return arrays
