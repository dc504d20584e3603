"""The exact backend's speed paths: the pixel integrals of :mod:`massmaps.projection.exact`, faster.

:func:`_exact_kernel` is the backend's compiled entry. It deals the particles in blocks to
:data:`~massmaps.projection.exact._PARTS` float64 partial images (numba ``prange`` over the images, summed
in a fixed order at the end, so the map is the same bytes whatever the number of threads) and deposits
each block in turn (:func:`_exact_chunk`):

* :func:`massmaps.projection.footprints._sort_block` counting-sorts the block by footprint class (off the map; clipped or wide; one
  class per size up to ``_NSIDE x _NSIDE`` pixels inside the map; at least ``_MODES_MIN`` inner corners
  in the map), so that consecutive particles take the same branches and loop counts, and checks the
  inputs on the way;
* :func:`_run_fixed`: the sizes of ``_FIXED`` (2x3 to 5x5 inside the map), with runners made by
  :func:`_make_runner`: the general path's arithmetic with loop counts fixed at compile time;
* :func:`_run_modes`: footprints of at least ``_MODES_MIN`` inner corners, from the separable modes of
  ``K`` (:func:`massmaps.projection.kernels.correction_modes`; :func:`_exact_modes`): one lookup per edge
  and an eight-term product per pixel, four pixels and two rows at a time, compiled with LLVM's SLP
  vectoriser on (:class:`_SLPForModes`, the only code compiled so);
* :func:`_run_any`: the rest: a support inside one pixel, 1x2 to 2x2 footprints
  (:func:`_exact_small`), 3x3 written out (:func:`_exact_3x3`), and every other footprint by
  :func:`massmaps.projection.exact._exact_general`.

The runners give the general path's weights to the last bit (or to about 1e-14 where the compiler fuses
a multiply-add differently); the separable modes are more accurate than the bilinear table. Compiled
once, the whole backend goes into numba's cache. docs/projection.md sections 4-6 explain each path and
why it exists, section 9 what was measured.
"""

from __future__ import annotations

import math

import numba
import numba.core.event
import numpy as np
from numba import prange
from numba.extending import overload

from massmaps.jit import njit
from massmaps.projection.exact import _PARTS, _clip1, _clipped, _deposit, _deposit_row, _exact_general
from massmaps.projection.footprints import _CLS_MODES, _NCLS, _NSIDE, _sort_block
from massmaps.projection.kernels import CORRECTION_MODES, correction_bilinear, fold_linear, half_cdf_unit

#: Particles per block, at most; the threads take blocks in turn (see :func:`_exact_chunk`). Fewer
#: particles get smaller blocks, at least _BLOCKS_PER_PART per partial image, so that the threads stay
#: balanced on a mock cluster of 2e4-1e5 particles (docs/projection.md section 5).
_BLOCK = 4096
_BLOCKS_PER_PART = 8
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
#: Footprints (columns, rows) inside the map with a written-out path of their own (:func:`_make_runner`):
#: the commonest sizes beyond 3x3 in an NFW halo of 1e6 particles on 128^2 pixels (docs/projection.md
#: section 4).
_FIXED = ((2, 3), (3, 2), (3, 4), (4, 3), (4, 4), (4, 5), (5, 4), (5, 5))


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
    or ``1/2``, ``phi = 0``). Two passes, faster than one (docs/projection.md section 6): the polynomial
    and the table cell of every edge (no table loads), then the modes of one edge at a time (``_NTERMS``
    lanes).
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
    # multiply-adds (one row at a time was latency-bound)
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

    The same formulas as :func:`massmaps.projection.exact._exact_general` (a particle's pixel weights
    agree to the last bit, or to about 1e-14 where the compiler fuses a multiply-add differently), with
    trip counts known at compile time: the loops unroll and the scratch rows stay in registers. The math
    is written out rather than called: numba inlines at the level of its IR, and inlining the helpers
    into every runner tripled the module's compile time (docs/projection.md section 4).

    Each runner has a qualified name of its own (``run_3x4``): numba names machine code after it and a
    counter that each process starts afresh, so runners of one name could take each other's code where
    cache files from different processes meet in one process (:mod:`massmaps.jit`).
    """

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

    run.__name__ = f"run_{NX}x{NY}"
    run.__qualname__ = f"_make_runner.<locals>.run_{NX}x{NY}"
    return njit(fastmath={"contract"})(run)


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
    for the whole backend, the other paths were slower (docs/projection.md section 6). The runner is
    compiled as its own function when the backend compiles, so switching the flag around that
    compilation vectorises it alone; the compiled code then goes into numba's cache with the rest.
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


@njit(cache=True)
def _exact_chunk(x, y, h, w, first, step, block, x0, y0, inv_dx, inv_dy, npix, ktab, modes, img):
    """Deposit blocks ``first, first + step, ...`` of ``block`` particles into ``img`` (one thread's share).

    Interleaved blocks balance the threads when the cost per particle drifts along the arrays (a mock
    cluster lists its compact host particles before the wide ones of its outskirts). Each block is
    sorted by footprint class first (:func:`_sort_block`) and its classes deposited in turn: consecutive
    particles then take the same branches and loop counts (random footprints cost a mispredicted branch
    or loop exit every few pixels), and footprints of 2x3 to 5x5 pixels go to written-out runners.
    ``img`` is (npix, npix) with ``w`` of shape (N,), or (nw, npix, npix) with ``w`` (nw, N). Returns
    True if :func:`_sort_block` found an invalid input.
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
