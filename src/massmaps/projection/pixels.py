"""Project SPH particles onto a pixel grid with the Wendland C2 column kernel.

One public function, :func:`project`, picks a backend by name from the plain dict :data:`BACKENDS`;
every backend has the same signature ``(x, y, h, weights, xlim, ylim, npix, z, zlim)`` and returns
an array of shape ``(nw, npix, npix)`` whose pixel ``[k, iy, ix]`` holds
``sum_j weights[k, j] * int_pixel W2D(R, h_j) dA``: each particle deposits its weight times the
fraction of its projected kernel that falls in the pixel (docs/projection.md; docs/physics.md section 7).
Several fields (the gas's mass, tSZ and X-ray weights) share one pass over the particles.

Backends
--------
``"exact"``
    Pixel weights from the 2D cumulative corner table of :mod:`massmaps.projection.kernels`: the weight
    of a pixel is the mixed difference of ``C(u, v)`` (the kernel mass below and left of a point) at its
    four corners, for any support radius however small or large. ``C = M(u) M(v) + K(u, v)`` with ``M``
    the exact polynomial 1D cumulative marginal and ``K`` a small non-separable correction, zero on the
    support boundary, interpolated bilinearly in a 264 kB table (about 1.4e-7 per corner). The weights
    of a particle telescope to exactly one (mass conserved to round-off) and the part of a kernel outside
    the map is dropped exactly. :mod:`massmaps.projection.exact` holds the algorithm for a footprint of
    any size; the backend runs it through the speed paths of :mod:`massmaps.projection.exact_fast`
    (particles sorted by footprint size in blocks, written-out paths for small footprints, seven
    separable modes of ``K`` for large ones), and the map is the same bytes whatever the number of
    threads.
``"mesh"``
    The paper's scheme, for comparison: the 3D kernel sampled at the cell centres of an
    ``npix^3`` mesh spanning ``xlim x ylim x zlim``, summed along z times the cell depth and
    multiplied by the pixel area. It loses mass for particles smaller than a cell.
``"reference"``
    Slow and independent: Gauss-Legendre quadrature of the closed-form column kernel over the
    intersection of every pixel with the particle's support square, split on the lines through
    the particle's centre (where the kernel has a weak singularity) and subdivided into squares
    no larger than ``H/2``. The exact pixel-integrated map against which the others are tested.

References
----------
.. [1] Wendland H., 1995, Adv. Comput. Math., 4, 389
.. [2] Dehnen W., Aly H., 2012, MNRAS, 425, 1068
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba
import numpy as np
from numba import prange

from massmaps.jit import njit
from massmaps.projection.exact import _PARTS, _deposit
from massmaps.projection.exact_fast import _exact_kernel
from massmaps.projection.kernels import column_kernel_unit, correction_modes, correction_table, w3d_unit

__all__ = ["BACKENDS", "project", "pixel_edges", "pixel_centres"]


# ---------------------------------------------------------------------------------------------
# Exact backend: corner-table pixel integration (massmaps.projection.exact, exact_fast)
# ---------------------------------------------------------------------------------------------


def _backend_exact(x, y, h, weights, xlim, ylim, npix, z, zlim):
    """Exact pixel integration with the corner table (see the module docstring)."""
    dx = (xlim[1] - xlim[0]) / npix
    dy = (ylim[1] - ylim[0]) / npix
    out, bad = _exact_kernel(
        x, y, h, weights, float(xlim[0]), float(ylim[0]), 1.0 / dx, 1.0 / dy, npix,
        correction_table(), correction_modes(),
    )  # fmt: skip
    # the values are checked in the kernel's first pass over each block (cheaper than a pass of their
    # own, docs/projection.md section 5): a non-finite weight of a particle on the map makes the map
    # non-finite; everything else sets `bad`
    if bad or not np.isfinite(out).all():
        _check_values(x, y, h, weights)
        raise ValueError("non-finite or negative input")  # not reached: _check_values names it
    return out


# ---------------------------------------------------------------------------------------------
# Mesh backend: the paper's cell-centre sampling of the 3D kernel
# ---------------------------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def _mesh_kernel(x, y, z, h, w, x0, y0, z0, dx, dy, dz, npix):
    n_part = x.size
    nw = w.shape[0]
    # a fixed number of partial images summed in order: the same bytes for any number of threads
    images = np.zeros((_PARTS, nw, npix, npix))
    chunk = (n_part + _PARTS - 1) // _PARTS
    cell_area = dx * dy
    big = float(npix + 1)
    for t in prange(_PARTS):
        img = images[t]
        start = t * chunk
        stop = min(n_part, start + chunk)
        for j in range(start, stop):
            hj = h[j]
            if not hj > 0.0:
                continue
            # cells whose centre (i + 1/2) lies within the support
            fx = (x[j] - x0) / dx - 0.5
            fy = (y[j] - y0) / dy - 0.5
            fz = (z[j] - z0) / dz - 0.5
            ia = max(0, int(math.ceil(max(fx - hj / dx, -1.0))))
            ib = min(npix - 1, int(math.floor(min(fx + hj / dx, big))))
            ja = max(0, int(math.ceil(max(fy - hj / dy, -1.0))))
            jb = min(npix - 1, int(math.floor(min(fy + hj / dy, big))))
            ka = max(0, int(math.ceil(max(fz - hj / dz, -1.0))))
            kb = min(npix - 1, int(math.floor(min(fz + hj / dz, big))))
            if ia > ib or ja > jb or ka > kb:
                continue
            inv_h = 1.0 / hj
            norm = dz * cell_area * inv_h * inv_h * inv_h
            for iy in range(ja, jb + 1):
                ddy = (y0 + (iy + 0.5) * dy - y[j]) * inv_h
                for ix in range(ia, ib + 1):
                    ddx = (x0 + (ix + 0.5) * dx - x[j]) * inv_h
                    r2xy = ddx * ddx + ddy * ddy
                    if r2xy >= 1.0:
                        continue
                    col = 0.0
                    for iz in range(ka, kb + 1):
                        ddz = (z0 + (iz + 0.5) * dz - z[j]) * inv_h
                        col += w3d_unit(math.sqrt(r2xy + ddz * ddz))
                    if col > 0.0:
                        _deposit(img, w, j, iy, ix, col * norm)
    out = np.zeros((nw, npix, npix))
    for t in range(_PARTS):
        out += images[t]
    return out


def _backend_mesh(x, y, h, weights, xlim, ylim, npix, z, zlim):
    """Deposit the 3D kernel at the centres of an npix^3 mesh and sum along z (the paper's scheme)."""
    if z is None or zlim is None:
        raise ValueError(
            "backend 'mesh' samples the 3D kernel on an npix^3 mesh and needs the particles' z "
            "coordinates (z=...) and the mesh depth (zlim=(z0, z1))"
        )
    z = _as_1d_float(z, "z", x.size)
    _check_values(x, y, h, weights, z)
    z0, z1 = _check_lim(zlim, "zlim")
    return _mesh_kernel(
        x, y, z, h, weights, float(xlim[0]), float(ylim[0]), z0,
        (xlim[1] - xlim[0]) / npix, (ylim[1] - ylim[0]) / npix, (z1 - z0) / npix, npix,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Reference backend: Gauss-Legendre quadrature of the column kernel over pixels
# ---------------------------------------------------------------------------------------------

_REF_ORDER = 8  # Gauss-Legendre points per dimension per sub-square
_REF_SUB = 0.5  # sub-squares no larger than this fraction of H


@njit(cache=True)
def _gl_rect(xa, xb, ya, yb, inv_h, gx, gw):
    """Integral of F(R/H)/H^2 over [xa, xb] x [ya, yb], coordinates relative to the particle."""
    q = gx.size
    span = _REF_SUB / inv_h
    nx = max(1, int(math.ceil((xb - xa) / span)))
    ny = max(1, int(math.ceil((yb - ya) / span)))
    lx = (xb - xa) / nx
    ly = (yb - ya) / ny
    total = 0.0
    for sx in range(nx):
        xs = xa + sx * lx
        for sy in range(ny):
            ys = ya + sy * ly
            acc = 0.0
            for a in range(q):
                ux = (xs + lx * gx[a]) * inv_h
                ux2 = ux * ux
                row = 0.0
                for b in range(q):
                    uy = (ys + ly * gx[b]) * inv_h
                    s2 = ux2 + uy * uy
                    if s2 < 1.0:
                        row += gw[b] * column_kernel_unit(math.sqrt(s2))
                acc += gw[a] * row
            total += acc * lx * ly
    return total * inv_h * inv_h


@njit(cache=True)
def _ref_pixel(xa, xb, ya, yb, inv_h, gx, gw):
    """Split [xa, xb] x [ya, yb] on the axes through the particle (at 0) and integrate the parts."""
    total = 0.0
    if xa < 0.0 < xb:
        xs0 = xa
        xs1 = 0.0
        xs2 = xb
        nxs = 2
    else:
        xs0 = xa
        xs1 = xb
        xs2 = xb
        nxs = 1
    if ya < 0.0 < yb:
        ys0 = ya
        ys1 = 0.0
        ys2 = yb
        nys = 2
    else:
        ys0 = ya
        ys1 = yb
        ys2 = yb
        nys = 1
    for p in range(nxs):
        lo = xs0 if p == 0 else xs1
        hi = xs1 if p == 0 else xs2
        for r in range(nys):
            blo = ys0 if r == 0 else ys1
            bhi = ys1 if r == 0 else ys2
            total += _gl_rect(lo, hi, blo, bhi, inv_h, gx, gw)
    return total


@njit(parallel=True, cache=True)
def _reference_kernel(x, y, h, w, x0, y0, dx, dy, npix, gx, gw, nthreads):
    n_part = x.size
    nw = w.shape[0]
    images = np.zeros((nthreads, nw, npix, npix))
    chunk = (n_part + nthreads - 1) // nthreads
    fnpix = float(npix)
    for t in prange(nthreads):
        img = images[t]
        start = t * chunk
        stop = min(n_part, start + chunk)
        for j in range(start, stop):
            hj = h[j]
            xj = x[j]
            yj = y[j]
            if hj == 0.0:
                # a point: all of it in the pixel that contains it
                fx = (xj - x0) / dx
                fy = (yj - y0) / dy
                if 0.0 <= fx < fnpix and 0.0 <= fy < fnpix:
                    _deposit(img, w, j, int(fy), int(fx), 1.0)
                continue
            fxl = (xj - hj - x0) / dx
            fxh = (xj + hj - x0) / dx
            fyl = (yj - hj - y0) / dy
            fyh = (yj + hj - y0) / dy
            if not (fxh >= 0.0 and fxl < fnpix and fyh >= 0.0 and fyl < fnpix):
                continue
            ia = max(0, int(math.floor(max(fxl, -1.0))))
            ib = min(npix - 1, int(math.floor(min(fxh, fnpix))))
            ja = max(0, int(math.floor(max(fyl, -1.0))))
            jb = min(npix - 1, int(math.floor(min(fyh, fnpix))))
            inv_h = 1.0 / hj
            for iy in range(ja, jb + 1):
                ya = max(y0 + iy * dy - yj, -hj)
                yb = min(y0 + (iy + 1) * dy - yj, hj)
                if yb <= ya:
                    continue
                for ix in range(ia, ib + 1):
                    xa = max(x0 + ix * dx - xj, -hj)
                    xb = min(x0 + (ix + 1) * dx - xj, hj)
                    if xb <= xa:
                        continue
                    frac = _ref_pixel(xa, xb, ya, yb, inv_h, gx, gw)
                    _deposit(img, w, j, iy, ix, frac)
    out = np.zeros((nw, npix, npix))
    for t in range(nthreads):
        out += images[t]
    return out


def _backend_reference(x, y, h, weights, xlim, ylim, npix, z, zlim):
    """Gauss-Legendre quadrature of the closed-form column kernel over each pixel (slow, exact)."""
    _check_values(x, y, h, weights)
    gx, gw = np.polynomial.legendre.leggauss(_REF_ORDER)
    return _reference_kernel(
        x, y, h, weights, float(xlim[0]), float(ylim[0]),
        (xlim[1] - xlim[0]) / npix, (ylim[1] - ylim[0]) / npix, npix,
        0.5 * (gx + 1.0), 0.5 * gw, numba.get_num_threads(),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------

#: Projection backends by name; each takes ``(x, y, h, weights, xlim, ylim, npix, z, zlim)`` with
#: validated float64 inputs (``weights`` of shape ``(nw, N)``) and returns ``(nw, npix, npix)``.
BACKENDS: dict[str, Callable[..., np.ndarray]] = {
    "exact": _backend_exact,
    "mesh": _backend_mesh,
    "reference": _backend_reference,
}


def _as_1d_float(a, name, n=None):
    arr = np.ascontiguousarray(a, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if n is not None and arr.size != n:
        raise ValueError(f"{name} has {arr.size} entries but x has {n}")
    return arr


def _check_values(x, y, h, weights, z=None):
    """Raise ValueError naming the first input with a non-finite value, or a negative h."""
    named = [("x", x), ("y", y), ("z", z), ("h (the kernel support radius)", h), ("weights", weights)]
    for name, arr in named:
        if arr is not None and not np.isfinite(arr).all():
            raise ValueError(f"{name} {'contain' if name == 'weights' else 'contains'} non-finite values")
    if h.size and h.min() < 0.0:
        raise ValueError("h (the kernel support radius) must be non-negative")


def _check_lim(lim, name):
    try:
        lo, hi = (float(v) for v in lim)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (lo, hi), got {lim!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"{name} must satisfy lo < hi (finite), got {lim!r}")
    return lo, hi


def pixel_edges(lim, npix: int) -> np.ndarray:
    """Edges of ``npix`` equal pixels spanning ``lim = (lo, hi)``: ``lo + i * (hi - lo) / npix``, ``i = 0..npix``."""
    lo, hi = _check_lim(lim, "lim")
    return lo + np.arange(npix + 1) * ((hi - lo) / npix)


def pixel_centres(lim, npix: int) -> np.ndarray:
    """Centres of ``npix`` equal pixels spanning ``lim = (lo, hi)``: ``lo + (i + 1/2) * (hi - lo) / npix``."""
    lo, hi = _check_lim(lim, "lim")
    return lo + (np.arange(npix) + 0.5) * ((hi - lo) / npix)


def project(x, y, h, weights, *, xlim, ylim, npix, backend="exact", z=None, zlim=None):
    """Project particles with the Wendland C2 column kernel onto ``npix x npix`` pixels.

    Parameters
    ----------
    x, y : array_like, shape (N,)
        Particle positions in the projection plane (one length unit throughout).
    h : array_like, shape (N,)
        Kernel support radius ``H`` of each particle (the kernel vanishes beyond ``H``); ``H = 0``
        is a point.
    weights : array_like, shape (nw, N) or (N,), or float
        Quantities to deposit (mass for surface density, ``m P / rho`` for tSZ, ...); a 1-D array
        (or one number for all particles) is one field (``nw = 1``). Several fields share one pass
        over the particles.
    xlim, ylim : tuple of float
        Map extent ``(x0, x1)`` and ``(y0, y1)``; pixel ``ix`` spans ``[x0 + ix dx, x0 + (ix+1) dx)``
        with ``dx = (x1 - x0) / npix``.
    npix : int
        Pixels along each axis.
    backend : str
        A key of :data:`BACKENDS`: ``"exact"`` (default), ``"mesh"`` or ``"reference"``.
    z : array_like, shape (N,), optional
        Line-of-sight coordinates; only the ``"mesh"`` backend uses them (the others integrate the
        kernel along the whole line of sight).
    zlim : tuple of float, optional
        Depth of the ``"mesh"`` backend's mesh.

    Returns
    -------
    numpy.ndarray, shape (nw, npix, npix), float64
        ``out[k, iy, ix] = sum_j weights[k, j] * int_pixel W2D(R, h_j) dA``: rows along y, columns
        along x. Divide by the pixel area for a surface density. With ``"exact"`` a particle whose
        support lies in the map contributes exactly its weight (to round-off); a particle
        straddling the edge loses exactly its outside part. Individual pixel weights are accurate
        to about 1.4e-7 of the particle's weight per pixel corner (the bilinear correction table),
        so a pixel that only grazes a support can hold about -1e-9 of that weight; clip at zero
        before taking logarithms.

    Raises
    ------
    ValueError
        On an unknown backend (the message lists the valid names), inconsistent shapes, non-finite
        values, negative ``h``, non-positive ``npix`` or an empty extent.

    References
    ----------
    .. [1] Wendland H., 1995, Adv. Comput. Math., 4, 389
    .. [2] Dehnen W., Aly H., 2012, MNRAS, 425, 1068
    """
    try:
        func = BACKENDS[backend]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown projection backend {backend!r}; valid backends: {', '.join(sorted(BACKENDS))}"
        ) from None
    x = _as_1d_float(x, "x")
    y = _as_1d_float(y, "y", x.size)
    h = _as_1d_float(h, "h", x.size)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 0:
        w = np.full((1, x.size), float(w))
    elif w.ndim == 1:
        w = w[None, :]
    if w.ndim != 2 or w.shape[1] != x.size:
        raise ValueError(f"weights must have shape (N,) or (nw, N) with N = {x.size}, got {w.shape}")
    w = np.ascontiguousarray(w)
    if isinstance(npix, bool) or int(npix) != npix or npix < 1:
        raise ValueError(f"npix must be a positive integer, got {npix!r}")
    npix = int(npix)
    xlim = _check_lim(xlim, "xlim")
    ylim = _check_lim(ylim, "ylim")
    return func(x, y, h, w, xlim, ylim, npix, z, zlim)
