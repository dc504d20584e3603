"""Footprint classes of the exact backend's speed paths, and the counting sort that groups a block of
particles by class (:func:`_sort_block`), so that consecutive particles take the same branches and loop
counts in :mod:`massmaps.projection.exact_fast` (docs/projection.md section 5).
"""

from __future__ import annotations

import math

import numpy as np

from massmaps.jit import njit

#: Footprints of up to _NSIDE x _NSIDE pixels inside the map have a class of their own in a block's sort.
_NSIDE = 8
#: Footprint classes: off the map, any other (clipped or wide), one per size up to _NSIDE x _NSIDE inside
#: the map, then those with at least _MODES_MIN inner corners in the map (the separable path).
_CLS_MODES = 2 + _NSIDE * _NSIDE
_NCLS = _CLS_MODES + 1
#: Footprints of at least this many pixels (inner corners: (nx - 1)(ny - 1)) take the separable path.
_MODES_MIN = 49


@njit(fastmath={"contract"})
def _sort_block(x, y, h, w, b0, b1, x0, y0, inv_dx, inv_dy, npix, cls, order, corner, end):
    """Counting-sort particles b0..b1-1 by footprint class; True if one of them is invalid.

    Class 0: off the map; ``_CLS_MODES``: at least ``_MODES_MIN`` inner corners in the map (the
    separable path); 1: other footprints clipped by the map edge or wider than ``_NSIDE`` pixels;
    otherwise ``2 + (nx - 1) _NSIDE + (ny - 1)`` for a footprint of nx x ny pixels inside the map. On return
    ``order[end[c - 1]:end[c]]`` lists the block's particles of class c (offsets from b0), in their
    input order, and ``corner[:, o]`` holds the lower-left pixel (ix, iy) of particle b0 + o.
    Also checks the input: ``0 <= h < inf`` for every particle, and finite positions and weights
    for the particles off the map (non-finite positions land there; the weights of the others
    reach the map, which the caller checks).
    """
    fnpix = float(npix)
    bad = False
    end[:] = 0
    for j in range(b0, b1):
        hj = h[j]
        bad |= not (0.0 <= hj < np.inf)
        px = (x[j] - x0) * inv_dx
        py = (y[j] - y0) * inv_dy
        hx = hj * inv_dx
        hy = hj * inv_dy
        fxl = px - hx
        fxh = px + hx
        fyl = py - hy
        fyh = py + hy
        c = 0
        if fxh >= 0.0 and fxl < fnpix and fyh >= 0.0 and fyl < fnpix:
            ixl = int(math.floor(max(fxl, -1.0)))
            ixh = int(math.floor(min(fxh, fnpix)))
            iyl = int(math.floor(max(fyl, -1.0)))
            iyh = int(math.floor(min(fyh, fnpix)))
            dxn = ixh - ixl
            dyn = iyh - iyl
            corner[0, j - b0] = ixl
            corner[1, j - b0] = iyl
            c = 1
            if (min(ixh, npix - 1) - max(ixl, 0)) * (min(iyh, npix - 1) - max(iyl, 0)) >= _MODES_MIN:
                c = _CLS_MODES
            elif ixl >= 0 and ixh < npix and iyl >= 0 and iyh < npix and dxn < _NSIDE and dyn < _NSIDE:
                c = 2 + dxn * _NSIDE + dyn
        else:
            bad |= not (math.isfinite(x[j]) and math.isfinite(y[j]))
            for f in range(w.shape[0]):
                bad |= not math.isfinite(w[f, j])
        cls[j - b0] = c
        end[c + 1] += 1
    # starts of the classes, then each particle to its place; end[c] is then the end of class c
    for c in range(1, _NCLS):
        end[c] += end[c - 1]
    for jj in range(b1 - b0):
        c = cls[jj]
        order[end[c]] = jj
        end[c] += 1
    return bad
