"""Project SPH particles onto a pixel grid with the Wendland C2 column kernel.

One public function, :func:`project`, picks a backend by name from the plain dict :data:`BACKENDS`;
every backend has the same signature ``(x, y, h, weights, xlim, ylim, npix, z, zlim)`` and returns
an array of shape ``(nw, npix, npix)`` whose pixel ``[k, iy, ix]`` holds
``sum_j weights[k, j] * int_pixel W2D(R, h_j) dA``: each particle deposits its weight times the
fraction of its projected kernel that falls in the pixel (docs/projection.md; docs/physics.md section 7).

Backends
--------
``"exact"``
    Pixel weights from the 2D cumulative corner table of :mod:`massmaps.projection.kernels`: the weight of a
    pixel is the mixed difference of ``C(u, v)`` (the kernel mass below and left of a point) at its
    four corners, for any support radius however small or large. ``C = M(u) M(v) + K(u, v)``
    with ``M`` the exact polynomial 1D cumulative marginal and ``K`` a small non-separable
    correction, zero on the support boundary, interpolated bilinearly in a 264 kB table (about
    1.4e-7 per corner). The weights of a particle telescope to exactly one (mass conserved to
    round-off) and the part of a kernel outside the map is dropped exactly. Fast paths: a
    support inside one pixel deposits everything there; 1x2 and 2x1 footprints need one
    polynomial; 2x2 footprints two polynomials and one table lookup; 3x3 footprints (written
    out) four of each; larger footprints ``nx + ny - 2`` polynomials and ``(nx - 1)(ny - 1)``
    lookups (the edges and corners on the support boundary are known exactly), written out with
    fixed loop counts for the common 2x3 to 5x5 footprints. Footprints with at least 49 inner
    corners (8 x 8 pixels and up, or clipped ones as large) write ``K`` as seven separable modes
    instead (:func:`massmaps.projection.kernels.correction_modes`): one 1D lookup per edge, and weights that
    are an eight-term matrix product, four pixels and two rows at a time (numba leaves LLVM's SLP
    vectoriser off; that path's runner alone compiles with it on). These are most of the pixels of
    a mock cluster's map, whose support radii are 5-10 pixels: the DM and gas maps of clusters of
    1-2e14 Msun took 1.5-1.8 times less time on one thread (1.1-1.2 for 3.6e15 Msun, whose
    particles are smaller), and the modes are more accurate than the bilinear table (L1 5.9e-7
    against 9.6e-7 per particle). Below 49 corners the bilinear path is faster (its cost grows with
    the pixels, the modes' with the edges: they cross at 7 x 7 to 8 x 8 pixels inside the map, and
    at support radii of about 6 pixels across the map's edge). Blocks of up to 4,096 particles (at
    least 8 per image) go in turn to 8 float64 partial images (numba ``prange`` over the images),
    summed in a fixed order at the end: the threads stay balanced when the cost per particle drifts
    along the arrays, and the map is the same bytes whatever the number of threads. Each block is
    first sorted by footprint size (a counting sort, which also checks the inputs), so that
    consecutive particles take the same branches: an NFW halo of 1e6 particles in random order took
    28.5 ms instead of 36.8 (2 threads, same run). Neither change gains much alone (the sort 1-4%,
    the written-out footprints 6%): the written-out paths pay once the sort makes the choice between
    them predictable. Compiling the backend takes about 50 s once (numba caches it). One field is
    deposited into a 2D image without a loop over fields; several fields (the gas's mass, tSZ and
    X-ray) take a footprint row's weights once and add them a field at a time along the image row, a
    loop that vectorises (26% faster for a mock cluster's gas). Tried and dropped: skipping the
    pixels of a large footprint that the support disc does not touch (19% fewer pixels, 15% fewer
    lookups, yet 25% slower than the plain square loops).
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
import numba.core.event
import numpy as np
from numba import njit, prange
from numba.extending import overload

from massmaps.projection.kernels import (
    column_kernel_unit,
    CORRECTION_MODES,
    correction_bilinear,
    correction_modes,
    correction_table,
    fold_linear,
    half_cdf_unit,
    w3d_unit,
)

__all__ = ["BACKENDS", "project", "pixel_edges", "pixel_centres"]

#: Particles per block of the exact backend, at most; the threads take blocks in turn (see
#: :func:`_exact_chunk`). Fewer particles get smaller blocks, at least _BLOCKS_PER_PART per partial image,
#: so that the two threads stay balanced on a mock cluster of 2e4-1e5 particles (with 4,096 always,
#: such a cluster took up to 40% longer on 2 threads than with the 512 of before).
_BLOCK = 4096
_BLOCKS_PER_PART = 8
#: Partial images of the exact backend: block b goes to image b % _PARTS, and the images are summed in a
#: fixed order, so the maps are the same bytes whatever the number of threads (which share the parts).
_PARTS = 8
#: Footprints of up to _NSIDE x _NSIDE pixels inside the map have a class of their own in a block's sort.
_NSIDE = 8
#: Footprint classes: off the map, any other (clipped or wide), one per size up to _NSIDE x _NSIDE inside
#: the map, then those with at least _MODES_MIN inner corners in the map (the separable path).
_CLS_MODES = 2 + _NSIDE * _NSIDE
_NCLS = _CLS_MODES + 1
#: Terms of a pixel weight on the separable path: the marginals' product and the modes of K.
_NTERMS = 1 + CORRECTION_MODES
#: Unsigned 1, 2, 3 and _NTERMS, for indices that LLVM's vectorisers can prove non-negative.
_U1 = np.uint64(1)
_U2 = np.uint64(2)
_U3 = np.uint64(3)
_UNT = np.uint64(_NTERMS)
#: Extra columns of the partial images (they have one extra row too): the separable path pads its footprint
#: rows to a multiple of 4 pixels and deposits rows in pairs.
_PAD = 4
#: Footprints of at least this many pixels (inner corners: (nx - 1)(ny - 1)) take the separable path.
_MODES_MIN = 49
#: Footprints (columns, rows) inside the map with a written-out path of their own (:func:`_make_runner`):
#: they are 93% of the footprints other than 1x1, 1x2, 2x2 and 3x3 of an NFW halo of 1e6 particles on
#: 128^2 pixels (benchmarks/projection.py); 5x6 to 6x6 (the next 6%) gained nothing measurable.
_FIXED = ((2, 3), (3, 2), (3, 4), (4, 3), (4, 4), (4, 5), (5, 4), (5, 5))


# ---------------------------------------------------------------------------------------------
# Exact backend: corner-table pixel integration
# ---------------------------------------------------------------------------------------------


def _deposit(img, w, j, iy, ix, frac):
    """Add ``w[..., j] * frac`` to pixel (iy, ix) of every field (numba overload below)."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(_deposit, inline="always")
def _deposit_impl(img, w, j, iy, ix, frac):
    # one field: a 2D image and 1D weights, no loop over fields (the common case; measured
    # 20% faster on 2x2 footprints)
    if img.ndim == 2:

        def one(img, w, j, iy, ix, frac):
            img[iy, ix] += w[j] * frac

        return one

    def many(img, w, j, iy, ix, frac):
        for c in range(w.shape[0]):
            img[c, iy, ix] += w[c, j] * frac

    return many


def _deposit_row(img, w, j, iy, ia, nx, dmx, dmy, cur, prv, row):
    """Deposit one row of a footprint: pixel (iy, ia + k), k < nx, gets ``w[..., j]`` times
    ``dmx[k] dmy + (cur[k + 1] - cur[k]) - (prv[k + 1] - prv[k])`` (numba overload below)."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(_deposit_row, inline="always")
def _deposit_row_impl(img, w, j, iy, ia, nx, dmx, dmy, cur, prv, row):
    if img.ndim == 2:
        # one field: weight and deposit in one pass (a separate pass over a row buffer was 5-8% slower)
        def one(img, w, j, iy, ia, nx, dmx, dmy, cur, prv, row):
            wj = w[j]
            for k in range(nx):
                img[iy, ia + k] += wj * (dmx[k] * dmy + ((cur[k + 1] - cur[k]) - (prv[k + 1] - prv[k])))

        return one

    # several fields: the row's weights once, then a field at a time along the contiguous image row, a
    # loop that vectorises (the per-pixel loop over fields did not): the 3 gas fields of a mock cluster
    # took 32 ms instead of 44. Every pixel still gets one addition per particle and field, in the same
    # order, so the maps are the same bytes.
    def many(img, w, j, iy, ia, nx, dmx, dmy, cur, prv, row):
        for k in range(nx):
            row[k] = dmx[k] * dmy + ((cur[k + 1] - cur[k]) - (prv[k + 1] - prv[k]))
        for c in range(w.shape[0]):
            wc = w[c, j]
            dst = img[c, iy, ia : ia + nx]
            for k in range(nx):
                dst[k] += wc * row[k]

    return many


@njit(cache=True, inline="always")
def _clip1(u):
    return min(max(u, -1.0), 1.0)


@njit(cache=True, inline="always")
def _edges(lo, hi, first_exact, last_exact, p, inv_h, nk, m, sgn, cell, frac):
    """Per edge ``lo..hi+1`` of a footprint: ``m(u)``, and the sign, cell and offset of ``|u|``.

    Edges on the support boundary are exactly -1 or +1 (``m = -1/2`` or ``1/2``, ``K = 0``): only
    ``m`` is set there. Edges clipped by the map and interior edges get everything. Returns the
    first and last edge that need table lookups.
    """
    ne = hi - lo + 2
    k0 = 0
    k1 = ne - 1
    if first_exact:
        m[0] = -0.5
        k0 = 1
    if last_exact:
        m[ne - 1] = 0.5
        k1 = ne - 2
    for k in range(k0, k1 + 1):
        u = _clip1((lo + k - p) * inv_h)
        su, iu, tu = fold_linear(u, nk)
        m[k] = half_cdf_unit(u)
        sgn[k] = su
        cell[k] = iu
        frac[k] = tu
    return k0, k1


@njit(cache=True, inline="always")
def _clipped(ixl, ixh, iyl, iyh, npix, hx, hy):
    """A footprint clipped to the map: first and last column and row, their counts, 1/hx and 1/hy."""
    ia = max(ixl, 0)
    ib = min(ixh, npix - 1)
    ja = max(iyl, 0)
    jb = min(iyh, npix - 1)
    inv_hx = 1.0 / hx if hx > 0.0 else 0.0
    inv_hy = 1.0 / hy if hy > 0.0 else 0.0
    return ia, ib, ja, jb, ib - ia + 1, jb - ja + 1, inv_hx, inv_hy


@njit(cache=True, inline="always")
def _exact_general(img, w, j, px, py, hx, hy, ixl, ixh, iyl, iyh, npix, ktab, fs, ci, kc):
    """Pixel weights of one particle, footprint clipped to the map.

    The weight of pixel (k, l) is ``dM_x[k] dM_y[l] + (mixed difference of K over its corners)``
    with ``M`` the exact cumulative marginal and ``K`` the bilinear correction table, zero on the
    support boundary. ``fs`` (8, npix + 1), ``ci`` (2, npix + 1) and ``kc`` (2, npix + 1) are
    scratch: m, sign and offset per x edge then per y edge, dM per column, one row of weights, the
    table cells and two rows of K.
    """
    nk = ktab.shape[0] - 1
    ia, ib, ja, jb, nx, ny, inv_hx, inv_hy = _clipped(ixl, ixh, iyl, iyh, npix, hx, hy)
    mx = fs[0]
    sx = fs[1]
    tx = fs[2]
    my = fs[3]
    sy = fs[4]
    ty = fs[5]
    dmx = fs[6]
    row = fs[7]
    cx = ci[0]
    cy = ci[1]
    k0, k1 = _edges(ia, ib, ia == ixl, ib == ixh, px, inv_hx, nk, mx, sx, cx, tx)
    l0, l1 = _edges(ja, jb, ja == iyl, jb == iyh, py, inv_hy, nk, my, sy, cy, ty)
    for k in range(nx):
        dmx[k] = mx[k + 1] - mx[k]
    # K vanishes on the support boundary: it is looked up only at corners strictly inside
    prv = kc[0]
    cur = kc[1]
    for k in range(nx + 1):
        prv[k] = 0.0
        cur[k] = 0.0
    for l in range(ny + 1):
        if l0 <= l <= l1:
            sv = sy[l]
            jv = cy[l]
            tv = ty[l]
            # K is symmetric: K(u, v) = K(v, u) and the table too, so look up (v, u): the row's
            # loads then fall in two table rows (ktab[jv], ktab[jv + 1]) that stay in L1
            for k in range(k0, k1 + 1):
                cur[k] = correction_bilinear(sv, jv, tv, sx[k], cx[k], tx[k], ktab)
        else:
            for k in range(k0, k1 + 1):
                cur[k] = 0.0
        if l > 0:
            _deposit_row(img, w, j, ja + l - 1, ia, nx, dmx, my[l] - my[l - 1], cur, prv, row)
        prv, cur = cur, prv


@njit(cache=True, inline="always")
def _load4(a, i):
    """``a[i:i + 4]`` as four scalars (``i`` unsigned: no negative-index handling, so that LLVM's SLP
    vectoriser sees four consecutive loads)."""
    return a[i], a[i + _U1], a[i + _U2], a[i + _U3]


@njit(cache=True, inline="always")
def _store4(a, i, v0, v1, v2, v3):
    a[i] = v0
    a[i + _U1] = v1
    a[i + _U2] = v2
    a[i + _U3] = v3


@njit(cache=True, inline="always")
def _mode_edges(lo, ne, first_exact, last_exact, p, inv_h, modes, e, sg, mm, tt, ii):
    """``e[q, 0] = m(u_q)`` and ``e[q, r] = phi_r(u_q)`` (r >= 1) at the edges ``u_q = (lo + q - p) / h``
    (q < ne).

    Edges on the support boundary (``first_exact``, ``last_exact``) are exactly -1 or 1 (``m = -1/2``
    or ``1/2``, ``phi = 0``). Two passes: the polynomial and the table cell of every edge (no table
    loads: in one pass with the lookups an edge took 12 ns, in two 6 ns), then the modes of one edge
    at a time (``_NTERMS`` lanes).
    """
    nt = modes.shape[0] - 2
    for q in range(ne):
        u = min(max((lo + q - p) * inv_h, -1.0), 1.0)
        a = abs(u)
        a2 = a * a
        r = a * (1.5 + a2 * (-3.5 + a2 * (10.5 + a * (-14.0 + a * (7.5 - 1.5 * a)))))
        fu = a * nt
        i = min(int(fu), nt - 1)
        sg[q] = math.copysign(1.0, u)
        mm[q] = math.copysign(r, u)
        ii[q] = i
        tt[q] = fu - i
    if first_exact:
        mm[0] = -0.5
        ii[0] = 0
        tt[0] = 0.0
    if last_exact:
        mm[ne - 1] = 0.5
        ii[ne - 1] = 0
        tt[ne - 1] = 0.0
    for q in range(ne):
        i = np.uint64(ii[q])
        s = sg[q]
        t = tt[q]
        t0 = modes[i]
        t1 = modes[i + _U1]
        eq = e[np.uint64(q)]
        for r in range(_UNT):
            eq[r] = s * (t0[r] + t * (t1[r] - t0[r]))
        eq[0] = mm[q]


@njit(cache=True, inline="always")
def _add_rows4(A, b, c, uk, d0, d1, d2, d3, e0, e1, e2, e3):
    """``d += sum_r b[r] A[r, uk:uk + 4]`` and ``e += sum_r c[r] A[r, uk:uk + 4]``, four lanes each."""
    for r in range(_NTERMS):
        br = b[r]
        cr = c[r]
        a0, a1, a2, a3 = _load4(A[r], uk)
        d0 += br * a0
        d1 += br * a1
        d2 += br * a2
        d3 += br * a3
        e0 += cr * a0
        e1 += cr * a1
        e2 += cr * a2
        e3 += cr * a3
    return d0, d1, d2, d3, e0, e1, e2, e3


def _mode_rows(img, w, j, iy, ia, nxp, A, b, c, row, row2):
    """Add the footprint rows ``sum_r b[r] A[r, k]`` and ``sum_r c[r] A[r, k]``, k < nxp, to pixels
    (iy, ia + k) and (iy + 1, ia + k) (overload below)."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(_mode_rows, inline="always")
def _mode_rows_impl(img, w, j, iy, ia, nxp, A, b, c, row, row2):
    # Two rows at a time: each load of A serves both, and their sums are two independent chains of
    # multiply-adds (one row at a time was latency-bound: 1.2 ns per pixel)
    if img.ndim == 2:
        # one field: the particle's weight is in b and c already
        def one(img, w, j, iy, ia, nxp, A, b, c, row, row2):
            dst = img[iy]
            dst2 = img[iy + 1]
            uia = np.uint64(ia)
            for kb in range(0, nxp, 4):
                uk = np.uint64(kb)
                d0, d1, d2, d3 = _load4(dst, uia + uk)
                e0, e1, e2, e3 = _load4(dst2, uia + uk)
                d0, d1, d2, d3, e0, e1, e2, e3 = _add_rows4(A, b, c, uk, d0, d1, d2, d3, e0, e1, e2, e3)
                _store4(dst, uia + uk, d0, d1, d2, d3)
                _store4(dst2, uia + uk, e0, e1, e2, e3)

        return one

    # several fields: the rows' weights once, then a field at a time
    def many(img, w, j, iy, ia, nxp, A, b, c, row, row2):
        uia = np.uint64(ia)
        for kb in range(0, nxp, 4):
            uk = np.uint64(kb)
            d0 = d1 = d2 = d3 = 0.0
            e0 = e1 = e2 = e3 = 0.0
            d0, d1, d2, d3, e0, e1, e2, e3 = _add_rows4(A, b, c, uk, d0, d1, d2, d3, e0, e1, e2, e3)
            _store4(row, uk, d0, d1, d2, d3)
            _store4(row2, uk, e0, e1, e2, e3)
        for f in range(w.shape[0]):
            wf = w[f, j]
            dst = img[f, iy]
            dst2 = img[f, iy + 1]
            for kb in range(0, nxp, 4):
                uk = np.uint64(kb)
                d0, d1, d2, d3 = _load4(dst, uia + uk)
                a0, a1, a2, a3 = _load4(row, uk)
                _store4(dst, uia + uk, d0 + wf * a0, d1 + wf * a1, d2 + wf * a2, d3 + wf * a3)
            for kb in range(0, nxp, 4):
                uk = np.uint64(kb)
                d0, d1, d2, d3 = _load4(dst2, uia + uk)
                a0, a1, a2, a3 = _load4(row2, uk)
                _store4(dst2, uia + uk, d0 + wf * a0, d1 + wf * a1, d2 + wf * a2, d3 + wf * a3)

    return many


def _row_scale(w, j):
    """The factor folded into a footprint's row coefficients: ``w[j]`` for one field, else 1."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(_row_scale, inline="always")
def _row_scale_impl(w, j):
    if w.ndim == 1:
        return lambda w, j: w[j]
    return lambda w, j: 1.0


@njit(cache=True, inline="always")
def _exact_modes(img, w, j, px, py, hx, hy, ixl, ixh, iyl, iyh, npix, modes, ex, ey, A, vec, mi):
    """Pixel weights of one particle from the separable modes of K, footprint clipped to the map.

    ``C(u, v) = M(u) M(v) + sum_r s_r phi_r(u) phi_r(v)`` (:func:`massmaps.projection.kernels.correction_modes`),
    so the weights of a footprint are the product of its column differences ``A[r, k]``
    (``Delta M``, then ``Delta phi_r``) and its row differences times ``s_r``: eight terms per pixel
    (``_NTERMS``), four pixels and two rows at a time (SLP-vectorised). The rows are padded with zero
    weights to a multiple of four pixels and an even number of rows, which the images' extra columns
    and row absorb. Scratch: ``ex``, ``ey`` (npix + 2, _NTERMS), ``A`` (_NTERMS, npix + 4), ``vec``
    (8, npix + 4), ``mi`` (npix + 2,) int64.
    """
    ia, ib, ja, jb, nx, ny, inv_hx, inv_hy = _clipped(ixl, ixh, iyl, iyh, npix, hx, hy)
    sg = vec[0]
    mm = vec[1]
    tt = vec[2]
    row = vec[3]
    row2 = vec[4]
    b = vec[5]
    c = vec[6]
    sc = vec[7]
    _mode_edges(ia, nx + 1, ia == ixl, ib == ixh, px, inv_hx, modes, ex, sg, mm, tt, mi)
    nxp = (nx + 3) // 4 * 4
    for k in range(nx):
        for r in range(_NTERMS):
            A[r, k] = ex[k + 1, r] - ex[k, r]
    for r in range(_NTERMS):
        for k in range(nx, nxp):
            A[r, k] = 0.0
    _mode_edges(ja, ny + 1, ja == iyl, jb == iyh, py, inv_hy, modes, ey, sg, mm, tt, mi)
    signs = modes[modes.shape[0] - 1]
    scale = _row_scale(w, j)
    for r in range(_NTERMS):
        sc[r] = scale * signs[r]
    # rows in pairs; an odd last row pairs with a zero row, which the images' extra row absorbs
    for l in range(0, ny, 2):
        for r in range(_NTERMS):
            b[r] = (ey[l + 1, r] - ey[l, r]) * sc[r]
            c[r] = (ey[l + 2, r] - ey[l + 1, r]) * sc[r] if l + 1 < ny else 0.0
        _mode_rows(img, w, j, ja + l, ia, nxp, A, b, c, row, row2)


@njit(cache=True, inline="always")
def _exact_small(img, w, j, px, py, hx, ryx, ixl, ixh, iyl, iyh, ktab, nk):
    """1x2, 2x1 and 2x2 footprints inside the map: polynomials and at most one table lookup."""
    if ixl == ixh:
        # one column, two rows: split at the row edge
        fb = 0.5 + half_cdf_unit(_clip1((iyl + 1 - py) * (ryx / hx)))
        _deposit(img, w, j, iyl, ixl, fb)
        _deposit(img, w, j, iyh, ixl, 1.0 - fb)
    elif iyl == iyh:
        fl = 0.5 + half_cdf_unit(_clip1((ixl + 1 - px) / hx))
        _deposit(img, w, j, iyl, ixl, fl)
        _deposit(img, w, j, iyl, ixh, 1.0 - fl)
    else:
        # 2x2: C(a, b) = M(a) M(b) + K(a, b) for the lower-left pixel, the rest from the
        # marginals
        ihx = 1.0 / hx
        a = _clip1((ixl + 1 - px) * ihx)
        b = _clip1((iyl + 1 - py) * (ihx * ryx))
        fl = 0.5 + half_cdf_unit(a)
        fb = 0.5 + half_cdf_unit(b)
        su, iu, tu = fold_linear(a, nk)
        sv, jv, tv = fold_linear(b, nk)
        kab = correction_bilinear(su, iu, tu, sv, jv, tv, ktab)
        _deposit(img, w, j, iyl, ixl, fl * fb + kab)
        _deposit(img, w, j, iyl, ixh, (1.0 - fl) * fb - kab)
        _deposit(img, w, j, iyh, ixl, fl * (1.0 - fb) - kab)
        _deposit(img, w, j, iyh, ixh, (1.0 - fl) * (1.0 - fb) + kab)


@njit(cache=True, inline="always")
def _kcorner(u, v, nk, ktab):
    su, iu, tu = fold_linear(u, nk)
    sv, jv, tv = fold_linear(v, nk)
    return correction_bilinear(su, iu, tu, sv, jv, tv, ktab)


@njit(cache=True, inline="always")
def _exact_3x3(img, w, j, px, py, hx, ryx, ixl, iyl, ktab, nk):
    """3x3 footprints inside the map, written out: four marginals and four table lookups."""
    inv_hx = 1.0 / hx
    inv_hy = inv_hx * ryx
    u1 = _clip1((ixl + 1 - px) * inv_hx)
    u2 = _clip1((ixl + 2 - px) * inv_hx)
    v1 = _clip1((iyl + 1 - py) * inv_hy)
    v2 = _clip1((iyl + 2 - py) * inv_hy)
    mu1 = half_cdf_unit(u1)
    mu2 = half_cdf_unit(u2)
    mv1 = half_cdf_unit(v1)
    mv2 = half_cdf_unit(v2)
    dx0 = 0.5 + mu1
    dx1 = mu2 - mu1
    dx2 = 0.5 - mu2
    dy0 = 0.5 + mv1
    dy1 = mv2 - mv1
    dy2 = 0.5 - mv2
    k11 = _kcorner(u1, v1, nk, ktab)
    k21 = _kcorner(u2, v1, nk, ktab)
    k12 = _kcorner(u1, v2, nk, ktab)
    k22 = _kcorner(u2, v2, nk, ktab)
    # K is zero on the support boundary, so only the four inner corners enter
    _deposit(img, w, j, iyl, ixl, dx0 * dy0 + k11)
    _deposit(img, w, j, iyl, ixl + 1, dx1 * dy0 + (k21 - k11))
    _deposit(img, w, j, iyl, ixl + 2, dx2 * dy0 - k21)
    _deposit(img, w, j, iyl + 1, ixl, dx0 * dy1 + (k12 - k11))
    _deposit(img, w, j, iyl + 1, ixl + 1, dx1 * dy1 + ((k22 - k12) - (k21 - k11)))
    _deposit(img, w, j, iyl + 1, ixl + 2, dx2 * dy1 - (k22 - k21))
    _deposit(img, w, j, iyl + 2, ixl, dx0 * dy2 - k12)
    _deposit(img, w, j, iyl + 2, ixl + 1, dx1 * dy2 - (k22 - k12))
    _deposit(img, w, j, iyl + 2, ixl + 2, dx2 * dy2 + k22)


def _make_runner(NX, NY):
    """A block's particles whose footprint is ``NX x NY`` pixels inside the map.

    The same formulas as :func:`_exact_general` (a particle's pixel weights agree to the last bit,
    or to about 1e-14 where the compiler fuses a multiply-add differently), with trip counts known
    at compile time: the loops unroll and the scratch rows stay in registers. The math is written
    out rather than called: numba inlines at the level of its IR, and inlining the helpers into
    every runner tripled the module's compile time (140 s).
    """

    @njit(fastmath={"contract"})
    def run(x, y, h, w, order, corner, b0, s0, s1, x0, y0, inv_dx, inv_dy, ktab, img, sc, ic):
        nk = ktab.shape[0] - 1
        ryx = inv_dx / inv_dy
        mx = sc[0]
        sx = sc[1]
        tx = sc[2]
        my = sc[3]
        sy = sc[4]
        ty = sc[5]
        dmx = sc[6]
        row = sc[7]
        cx = ic[0]
        cy = ic[1]
        # the edges on the support boundary are exact: m = -1/2 and 1/2, K = 0
        mx[0] = -0.5
        mx[NX] = 0.5
        my[0] = -0.5
        my[NY] = 0.5
        prv = sc[8]
        cur = sc[9]
        for k in range(NX + 1):
            prv[k] = 0.0
            cur[k] = 0.0
        for jj in range(s0, s1):
            o = order[jj]
            j = b0 + o
            px = (x[j] - x0) * inv_dx
            py = (y[j] - y0) * inv_dy
            hx = h[j] * inv_dx
            # the footprint's corner as the sort found it (recomputed, it might round the other way)
            ixl = corner[0, o]
            iyl = corner[1, o]
            inv_hx = 1.0 / hx
            inv_hy = inv_hx * ryx
            # interior edges: m(u) and the table cell of |u| (half_cdf_unit and fold_linear)
            for e in range(1, NX + NY - 1):
                if e < NX:
                    u = min(max((ixl + e - px) * inv_hx, -1.0), 1.0)
                else:
                    u = min(max((iyl + e - NX + 1 - py) * inv_hy, -1.0), 1.0)
                a = abs(u)
                a2 = a * a
                r = a * (1.5 + a2 * (-3.5 + a2 * (10.5 + a * (-14.0 + a * (7.5 - 1.5 * a)))))
                fu = a * nk
                i = min(int(fu), nk - 1)
                if e < NX:
                    mx[e] = math.copysign(r, u)
                    sx[e] = math.copysign(1.0, u)
                    cx[e] = i
                    tx[e] = fu - i
                else:
                    l = e - NX + 1
                    my[l] = math.copysign(r, u)
                    sy[l] = math.copysign(1.0, u)
                    cy[l] = i
                    ty[l] = fu - i
            for k in range(NX):
                dmx[k] = mx[k + 1] - mx[k]
            for l in range(1, NY + 1):
                if l < NY:
                    # K at the row's interior corners (correction_bilinear, looked up as (v, u))
                    sv = sy[l]
                    jv = cy[l]
                    tv = ty[l]
                    for k in range(1, NX):
                        iu = cx[k]
                        tu = tx[k]
                        k0 = ktab[jv, iu] + tu * (ktab[jv, iu + 1] - ktab[jv, iu])
                        k1 = ktab[jv + 1, iu] + tu * (ktab[jv + 1, iu + 1] - ktab[jv + 1, iu])
                        cur[k] = sv * sx[k] * (k0 + tv * (k1 - k0))
                else:
                    for k in range(1, NX):
                        cur[k] = 0.0
                _deposit_row(img, w, j, iyl + l - 1, ixl, NX, dmx, my[l] - my[l - 1], cur, prv, row)
                prv, cur = cur, prv

    return run


_RUNNERS = tuple(_make_runner(nx, ny) for nx, ny in _FIXED)
_r23, _r32, _r34, _r43, _r44, _r45, _r54, _r55 = _RUNNERS


@njit
def _run_fixed(nx, ny, x, y, h, w, order, corner, b0, s0, s1, x0, y0, inv_dx, inv_dy, ktab, img, sc, ic):
    """Deposit order[s0:s1] with the runner of footprint nx x ny; False when there is none."""
    args = (x, y, h, w, order, corner, b0, s0, s1, x0, y0, inv_dx, inv_dy, ktab, img, sc, ic)
    if nx == 4 and ny == 4:
        _r44(*args)
    elif nx == 5 and ny == 5:
        _r55(*args)
    elif nx == 2 and ny == 3:
        _r23(*args)
    elif nx == 3 and ny == 2:
        _r32(*args)
    elif nx == 3 and ny == 4:
        _r34(*args)
    elif nx == 4 and ny == 3:
        _r43(*args)
    elif nx == 4 and ny == 5:
        _r45(*args)
    elif nx == 5 and ny == 4:
        _r54(*args)
    else:
        return False
    return True


@njit(fastmath={"contract"})
def _run_any(x, y, h, w, order, b0, s0, s1, x0, y0, inv_dx, inv_dy, npix, ktab, img, fs, ci, kc):
    """Deposit order[s0:s1], any footprint: one pixel, 1x2 to 2x2, 3x3, or clipped and large ones."""
    nk = ktab.shape[0] - 1
    fnpix = float(npix)
    ryx = inv_dx / inv_dy  # hx / hy: one division per particle gives both 1/hx and 1/hy
    for jj in range(s0, s1):
        j = b0 + order[jj]
        hj = h[j]
        px = (x[j] - x0) * inv_dx
        py = (y[j] - y0) * inv_dy
        hx = hj * inv_dx
        hy = hj * inv_dy
        # footprint in pixel indices, clamped to [-1, npix] before the integer conversion
        ixl = int(math.floor(max(px - hx, -1.0)))
        ixh = int(math.floor(min(px + hx, fnpix)))
        iyl = int(math.floor(max(py - hy, -1.0)))
        iyh = int(math.floor(min(py + hy, fnpix)))
        inside = ixl >= 0 and ixh < npix and iyl >= 0 and iyh < npix
        if inside and ixl == ixh and iyl == iyh:
            # support inside one pixel
            _deposit(img, w, j, iyl, ixl, 1.0)
        elif inside and ixh - ixl <= 1 and iyh - iyl <= 1:
            _exact_small(img, w, j, px, py, hx, ryx, ixl, ixh, iyl, iyh, ktab, nk)
        elif inside and ixh - ixl == 2 and iyh - iyl == 2:
            _exact_3x3(img, w, j, px, py, hx, ryx, ixl, iyl, ktab, nk)
        else:
            _exact_general(img, w, j, px, py, hx, hy, ixl, ixh, iyl, iyh, npix, ktab, fs, ci, kc)


@njit(fastmath={"contract"})
def _run_modes(x, y, h, w, order, corner, b0, s0, s1, x0, y0, inv_dx, inv_dy, npix, modes, img, ex, ey, A, vec, mi):
    """Deposit order[s0:s1], footprints with at least _MODES_MIN inner corners in the map, with the
    separable modes of K (:func:`_exact_modes`). Compiled with LLVM's SLP vectoriser on (see
    :class:`_SLPForModes`)."""
    fnpix = float(npix)
    for jj in range(s0, s1):
        o = order[jj]
        j = b0 + o
        px = (x[j] - x0) * inv_dx
        py = (y[j] - y0) * inv_dy
        hx = h[j] * inv_dx
        hy = h[j] * inv_dy
        ixh = int(math.floor(min(px + hx, fnpix)))
        iyh = int(math.floor(min(py + hy, fnpix)))
        _exact_modes(img, w, j, px, py, hx, hy, corner[0, o], ixh, corner[1, o], iyh, npix, modes, ex, ey, A, vec, mi)


class _SLPForModes(numba.core.event.Listener):
    """Turns LLVM's SLP vectoriser on while numba compiles :func:`_run_modes`, and only then.

    numba leaves the SLP vectoriser off, and :func:`_exact_modes` is written for it (four pixels at a
    time, unsigned indices): without it the separable path is slower than the bilinear one. With it on
    for the whole backend, the other paths were 5% slower (1e6 NFW particles: 18.5 ms against 17.5).
    The runner is compiled as its own function when the backend compiles, so switching the flag
    around that compilation vectorises it alone; the compiled code then goes into numba's cache with
    the rest.
    """

    def __init__(self):
        self._saved = []

    def _mine(self, event):
        return getattr(event.data.get("dispatcher"), "py_func", None) is _run_modes.py_func

    def on_start(self, event):
        if self._mine(event):
            self._saved.append(numba.core.config.SLP_VECTORIZE)
            numba.core.config.SLP_VECTORIZE = 1

    def on_end(self, event):
        if self._mine(event):
            numba.core.config.SLP_VECTORIZE = self._saved.pop()


numba.core.event.register("numba:compile", _SLPForModes())


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


@njit(cache=True)
def _exact_chunk(x, y, h, w, first, step, block, x0, y0, inv_dx, inv_dy, npix, ktab, modes, img):
    """Deposit blocks ``first, first + step, ...`` of ``block`` particles into ``img`` (one thread's share).

    Interleaved blocks balance the threads when the cost per particle drifts along the arrays (a mock
    cluster lists its compact host particles before the wide ones of its outskirts: contiguous halves
    took 12 and 52 ms). Each block is sorted by footprint class first (:func:`_sort_block`) and its
    classes deposited in turn: consecutive particles then take the same branches and loop counts
    (random footprints cost a mispredicted branch or loop exit every few pixels), and footprints of
    2x3 to 5x5 pixels go to written-out runners. ``img`` is (npix, npix) with ``w`` of shape (N,), or
    (nw, npix, npix) with ``w`` (nw, N). Returns True if :func:`_sort_block` found an invalid input.
    """
    # scratch reused by every particle
    fs = np.empty((8, npix + 1))
    ci = np.empty((2, npix + 1), dtype=np.int64)
    kc = np.empty((2, npix + 1))
    ex = np.empty((npix + 2, _NTERMS))
    ey = np.empty((npix + 2, _NTERMS))
    A = np.empty((_NTERMS, npix + _PAD))
    vec = np.empty((8, npix + _PAD))
    mi = np.empty(npix + 2, dtype=np.int64)
    sc = np.empty((10, _NSIDE + 1))
    ic = np.empty((2, _NSIDE + 1), dtype=np.int64)
    cls = np.empty(_BLOCK, dtype=np.int64)
    order = np.empty(_BLOCK, dtype=np.int64)
    corner = np.empty((2, _BLOCK), dtype=np.int64)
    end = np.empty(_NCLS + 1, dtype=np.int64)
    w2 = w.reshape(1, w.size) if w.ndim == 1 else w
    bad = False
    n_part = x.size
    for b0 in range(first * block, n_part, step * block):
        b1 = min(b0 + block, n_part)
        bad |= _sort_block(x, y, h, w2, b0, b1, x0, y0, inv_dx, inv_dy, npix, cls, order, corner, end)
        for c in range(1, _NCLS):
            s0 = end[c - 1]
            s1 = end[c]
            if s0 == s1:
                continue
            if c == _CLS_MODES:
                _run_modes(
                    x, y, h, w, order, corner, b0, s0, s1, x0, y0, inv_dx, inv_dy, npix, modes, img, ex, ey, A, vec, mi
                )
                continue
            if c >= 2 and _run_fixed(
                (c - 2) // _NSIDE + 1, (c - 2) % _NSIDE + 1,
                x, y, h, w, order, corner, b0, s0, s1, x0, y0, inv_dx, inv_dy, ktab, img, sc, ic,
            ):  # fmt: skip
                continue
            _run_any(x, y, h, w, order, b0, s0, s1, x0, y0, inv_dx, inv_dy, npix, ktab, img, fs, ci, kc)
    return bad


@njit(parallel=True, cache=True)
def _exact_kernel(x, y, h, w, x0, y0, inv_dx, inv_dy, npix, ktab, modes):
    nw = w.shape[0]
    images = np.zeros((_PARTS, nw, npix + 1, npix + _PAD))
    bad = np.zeros(_PARTS, dtype=np.bool_)
    # depends on the number of particles only: the same bytes for any number of threads
    block = min(_BLOCK, max(1, -(-x.size // (_PARTS * _BLOCKS_PER_PART))))
    for t in prange(_PARTS):
        if nw == 1:
            bad[t] = _exact_chunk(
                x, y, h, w[0], t, _PARTS, block, x0, y0, inv_dx, inv_dy, npix, ktab, modes, images[t, 0]
            )
        else:
            bad[t] = _exact_chunk(x, y, h, w, t, _PARTS, block, x0, y0, inv_dx, inv_dy, npix, ktab, modes, images[t])
    out = np.zeros((nw, npix, npix))
    for t in range(_PARTS):
        out += images[t, :, :npix, :npix]
    return out, bad.any()


def _backend_exact(x, y, h, weights, xlim, ylim, npix, z, zlim):
    """Exact pixel integration with the corner table (see the module docstring)."""
    dx = (xlim[1] - xlim[0]) / npix
    dy = (ylim[1] - ylim[0]) / npix
    out, bad = _exact_kernel(
        x, y, h, weights, float(xlim[0]), float(ylim[0]), 1.0 / dx, 1.0 / dy, npix,
        correction_table(), correction_modes(),
    )  # fmt: skip
    # the values are checked in the kernel's first pass over each block (a separate pass over 1e6
    # particles took 1.7 ms of the 30): a non-finite weight of a particle on the map makes the map
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
