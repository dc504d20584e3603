"""The exact backend's algorithm: the pixel weights of one particle, for a footprint of any size.

A particle of support radius ``H`` touches the pixels its support square covers, its footprint, clipped
to the map. In units of ``H`` about the particle, the kernel mass below and left of a point is
``C(u, v) = M(u) M(v) + K(u, v)`` (:mod:`massmaps.projection.kernels`): ``M`` the exact polynomial
cumulative marginal, ``K`` a small correction that vanishes on the support boundary, interpolated
bilinearly in a table. The weight of a pixel is the mixed difference of ``C`` at its four corners, so
pixel ``(k, l)`` of a footprint gets ``dM_x[k] dM_y[l]`` (the differences of ``M`` across its column and
row) plus the mixed difference of ``K`` over its corners. Edges on the support boundary are exactly -1
or 1 (``M`` is 0 or 1 there, ``K`` is 0), so only the corners strictly inside the support need the table;
the weights of a particle inside the map telescope to exactly one, and the part of a kernel beyond the
map's edge, where the footprint is clipped, is dropped exactly (docs/projection.md sections 2-4).

:func:`_exact_general` is that algorithm, written once for every footprint. The backend
(:func:`massmaps.projection.pixels.project` with ``backend="exact"``) reaches it through
:mod:`massmaps.projection.exact_fast`, which gives the common footprint sizes paths of their own. The
deposit helpers here serve every backend: one field is added to a 2D image, several fields take each
footprint row's weights once.
"""

from __future__ import annotations

from numba.extending import overload

from massmaps.jit import njit
from massmaps.projection.kernels import correction_bilinear, fold_linear, half_cdf_unit

#: Partial images: a backend's threads deposit into this many float64 images (the exact backend: block b
#: into image b % _PARTS), which are summed in a fixed order, so the maps are the same bytes whatever the
#: number of threads (which share the parts).
_PARTS = 8


def _deposit(img, w, j, iy, ix, frac):
    """Add ``w[..., j] * frac`` to pixel (iy, ix) of every field (numba overload below)."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(_deposit, inline="always")
def _deposit_impl(img, w, j, iy, ix, frac):
    # one field: a 2D image and 1D weights, no loop over fields (the common case, and faster:
    # docs/projection.md section 5)
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
        # one field: weight and deposit in one pass (faster than a separate pass over a row buffer)
        def one(img, w, j, iy, ia, nx, dmx, dmy, cur, prv, row):
            wj = w[j]
            for k in range(nx):
                img[iy, ia + k] += wj * (dmx[k] * dmy + ((cur[k + 1] - cur[k]) - (prv[k + 1] - prv[k])))

        return one

    # several fields: the row's weights once, then a field at a time along the contiguous image row, a
    # loop that vectorises (the per-pixel loop over fields did not; docs/projection.md section 5). Every
    # pixel still gets one addition per particle and field, in the same order, so the maps are the same
    # bytes.
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
