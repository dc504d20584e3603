"""Wendland C2 kernel, its line-of-sight (column) integral and the 2D cumulative corner table.

Everything here is in kernel units: lengths are divided by the support radius ``H`` (the kernel
vanishes for ``r >= H``), so the 3D kernel is ``W(r, H) = w(r / H) / H**3`` and the column kernel
is ``W2D(R, H) = F(R / H) / H**2`` (docs/physics.md section 7; docs/projection.md sections 2-3 explain
the tables below and their accuracy).

Three exact objects describe how the projected kernel fills a pixel:

* ``F(s)``, the column kernel, in closed form (the line-of-sight integral of the polynomial kernel
  has elementary antiderivatives);
* ``f1(x)``, the 1D marginal of the kernel (its integral over y and z) and its cumulative
  ``M(u) = int_{-1}^{u} f1``, both polynomials: for a radial 3D kernel the 1D marginal is
  ``2 pi int_{|x|}^{1} w(r) r dr``;
* the corner table ``C(u, v) = int_{-1}^{u} int_{-1}^{v} F(sqrt(x^2 + y^2)) dy dx``: the kernel mass in
  the quadrant below and left of ``(u, v)``. It has no closed form; we tabulate its odd part
  ``G(u, v) = int_0^u int_0^v F`` on ``[0, 1]^2`` with its derivatives (``G_u``, ``G_v`` and
  ``G_uv = F``) and interpolate with bicubic Hermite polynomials, so
  ``C(u, v) = 1/4 + (m(u) + m(v)) / 2 + G(u, v)`` with ``m(u) = M(u) - 1/2`` and ``G`` extended as an
  odd function of each argument (accurate to about 5e-10). The weight of a pixel
  ``[u0, u1] x [v0, v1]`` is the mixed difference ``C(u1, v1) - C(u0, v1) - C(u1, v0) + C(u0, v0)``.

For speed the projection writes ``C(u, v) = M(u) M(v) + K(u, v)``: the product of the exact
marginals carries the whole answer on the edges of the support square (``K = 0`` there), and the
small non-separable correction ``K`` is interpolated bilinearly in a fine float32 table
(:func:`correction_table`, about 1.4e-7 per corner), so a pixel's weight is
``Delta M(u) Delta M(v) + (mixed difference of K)``. For footprints of many pixels ``K`` is also
written as a sum of a few separable modes, ``K(u, v) = sum_r s_r phi_r(u) phi_r(v)``
(:func:`correction_modes`), so that a footprint's weights are a small matrix product.

The scalar functions decorated with :func:`numba.njit` are the building blocks of the projection
backends (:mod:`massmaps.projection.pixels`, :mod:`massmaps.projection.exact`,
:mod:`massmaps.projection.exact_fast`) and of :mod:`massmaps.projection.sph`.

References
----------
.. [1] Wendland H., 1995, Adv. Comput. Math., 4, 389
.. [2] Dehnen W., Aly H., 2012, MNRAS, 425, 1068
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import vectorize

from massmaps.jit import njit

__all__ = [
    "KERNEL_NORM_3D",
    "F0",
    "CORNER_TABLE_SIZE",
    "wendland_c2",
    "column_kernel",
    "projected_kernel",
    "marginal_1d",
    "marginal_cdf",
    "corner_table",
    "corner",
    "correction_table",
    "column_kernel_table",
]

#: Normalisation of the 3D Wendland C2 kernel with support radius 1: w(q) = 21/(2 pi) (1-q)^4 (1+4q).
KERNEL_NORM_3D = 21.0 / (2.0 * math.pi)
#: Central value of the column kernel, F(0) = 7 / pi.
F0 = 7.0 / math.pi
#: Default number of intervals of the corner table along each axis of [0, 1].
CORNER_TABLE_SIZE = 128
#: Default number of intervals of the bilinear correction table (:func:`correction_table`).
CORRECTION_TABLE_SIZE = 256
#: Default number of intervals of the 1D tables of the separable modes of K (:func:`correction_modes`).
CORRECTION_MODES_SIZE = 1024
#: Number of separable modes of K that the projection of large footprints uses (:func:`correction_modes`).
CORRECTION_MODES = 7


# ---------------------------------------------------------------------------------------------
# Scalar kernels (numba), in kernel units
# ---------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def w3d_unit(q: float) -> float:
    """3D Wendland C2 kernel with unit support radius, ``21/(2 pi) (1-q)^4 (1+4q)`` for ``q < 1``."""
    if q >= 1.0:
        return 0.0
    a = 1.0 - q
    a2 = a * a
    return KERNEL_NORM_3D * a2 * a2 * (1.0 + 4.0 * q)


@njit(cache=True)
def column_kernel_unit(s: float) -> float:
    """Column kernel ``F(s)`` in closed form (unit support radius); see :func:`column_kernel`."""
    if s >= 1.0:
        return 0.0
    s2 = s * s
    ell2 = 1.0 - s2
    ell = math.sqrt(ell2)
    lg = math.log((1.0 + ell) / s) if s > 0.0 else 0.0
    s4 = s2 * s2
    i1 = ell
    i2 = s2 * ell + ell * ell2 / 3.0
    i3 = ell * (2.0 * ell2 + 5.0 * s2) / 8.0 + 0.375 * s4 * lg
    i4 = s4 * ell + 2.0 * s2 * ell * ell2 / 3.0 + ell * ell2 * ell2 / 5.0
    i5 = ell * (8.0 * ell2 * ell2 + 26.0 * s2 * ell2 + 33.0 * s4) / 48.0 + 0.3125 * s4 * s2 * lg
    return (21.0 / math.pi) * (i1 - 10.0 * i2 + 20.0 * i3 - 15.0 * i4 + 4.0 * i5)


@njit(cache=True, inline="always")
def half_cdf_unit(u: float) -> float:
    """Odd part of the 1D cumulative marginal, ``m(u) = int_0^u f1 = M(u) - 1/2`` (``|u| <= 1``)."""
    a = min(abs(u), 1.0)
    a2 = a * a
    # 3/2 a - 7/2 a^3 + 21/2 a^5 - 14 a^6 + 15/2 a^7 - 3/2 a^8 (exactly 1/2 at a = 1)
    r = a * (1.5 + a2 * (-3.5 + a2 * (10.5 + a * (-14.0 + a * (7.5 - 1.5 * a)))))
    return math.copysign(r, u)


@njit(cache=True, inline="always")
def fold_axis(u: float, n: int):
    """Locate ``u`` in the corner table: returns (sign, cell, h00, h01, h10, h11).

    ``G`` is odd in each argument, so the table covers ``|u|`` in ``[0, 1]``; ``sign`` restores the
    sign. The four numbers are the cubic Hermite basis functions at the local coordinate ``t`` of
    ``|u|`` in its cell (values at the two nodes, then derivatives pre-scaled by the node spacing).
    """
    sgn = 1.0
    if u < 0.0:
        sgn = -1.0
        u = -u
    if u > 1.0:
        u = 1.0
    fu = u * n
    i = int(fu)
    if i > n - 1:
        i = n - 1
    t = fu - i
    t2 = t * t
    t3 = t2 * t
    h01 = 3.0 * t2 - 2.0 * t3
    h00 = 1.0 - h01
    h10 = t3 - 2.0 * t2 + t
    h11 = t3 - t2
    return sgn, i, h00, h01, h10, h11


@njit(cache=True, inline="always")
def corner_g_folded(su, i, a0, a1, b0, b1, sv, j, c0, c1, d0, d1, tab):
    """Bicubic Hermite value of ``G`` from the outputs of :func:`fold_axis` for u and for v."""
    # u-value part at nodes i, i+1: Hermite in v of G and of delta*G_v
    g_i = c0 * tab[i, j, 0] + c1 * tab[i, j + 1, 0] + d0 * tab[i, j, 2] + d1 * tab[i, j + 1, 2]
    g_i1 = c0 * tab[i + 1, j, 0] + c1 * tab[i + 1, j + 1, 0] + d0 * tab[i + 1, j, 2] + d1 * tab[i + 1, j + 1, 2]
    # u-derivative part: Hermite in v of delta*G_u and of delta^2*G_uv
    gu_i = c0 * tab[i, j, 1] + c1 * tab[i, j + 1, 1] + d0 * tab[i, j, 3] + d1 * tab[i, j + 1, 3]
    gu_i1 = c0 * tab[i + 1, j, 1] + c1 * tab[i + 1, j + 1, 1] + d0 * tab[i + 1, j, 3] + d1 * tab[i + 1, j + 1, 3]
    return su * sv * (a0 * g_i + a1 * g_i1 + b0 * gu_i + b1 * gu_i1)


@njit(cache=True)
def corner_g(u: float, v: float, tab) -> float:
    """Odd part ``G(u, v)`` of the corner table at one point (``u, v`` clipped to [-1, 1])."""
    n = tab.shape[0] - 1
    su, i, a0, a1, b0, b1 = fold_axis(u, n)
    sv, j, c0, c1, d0, d1 = fold_axis(v, n)
    return corner_g_folded(su, i, a0, a1, b0, b1, sv, j, c0, c1, d0, d1, tab)


@njit(cache=True, inline="always")
def fold_linear(u: float, n: int):
    """Locate ``u`` in the correction table: returns (sign, cell, t) with ``|u| = (cell + t) / n``."""
    fu = min(abs(u), 1.0) * n
    i = min(int(fu), n - 1)
    return math.copysign(1.0, u), i, fu - i


@njit(cache=True, inline="always")
def correction_bilinear(su, i, t, sv, j, s, ktab) -> float:
    """Bilinear value of the non-separable part ``K`` from the outputs of :func:`fold_linear`."""
    k0 = ktab[i, j] + s * (ktab[i, j + 1] - ktab[i, j])
    k1 = ktab[i + 1, j] + s * (ktab[i + 1, j + 1] - ktab[i + 1, j])
    return su * sv * (k0 + t * (k1 - k0))


@njit(cache=True)
def _corner_many(u, v, tab, out):
    for k in range(u.size):
        uk = min(max(u[k], -1.0), 1.0)
        vk = min(max(v[k], -1.0), 1.0)
        out[k] = 0.25 + 0.5 * (half_cdf_unit(uk) + half_cdf_unit(vk)) + corner_g(uk, vk, tab)


# ---------------------------------------------------------------------------------------------
# Vectorised public functions
# ---------------------------------------------------------------------------------------------


def wendland_c2(r, h):
    """3D Wendland C2 kernel ``W(r, H) = 21/(2 pi H^3) (1-q)^4 (1+4q)``, ``q = r/H < 1``.

    Parameters
    ----------
    r : array_like
        Distances from the particle.
    h : array_like
        Support radius ``H`` (the kernel vanishes for ``r >= H``), broadcastable against ``r``.

    Returns
    -------
    numpy.ndarray
        Kernel values in inverse length cubed; ``int W d^3r = 1``.

    References
    ----------
    .. [1] Wendland H., 1995, Adv. Comput. Math., 4, 389
    .. [2] Dehnen W., Aly H., 2012, MNRAS, 425, 1068 (Table 1)
    """
    r = np.asarray(r, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    q = r / h
    a = np.clip(1.0 - q, 0.0, None)
    return KERNEL_NORM_3D * a**4 * (1.0 + 4.0 * q) / h**3


def column_kernel(s):
    """Column kernel ``F(s) = 2 int_0^sqrt(1-s^2) w(sqrt(s^2 + z^2)) dz`` in closed form.

    With ``r^2 = s^2 + z^2`` the kernel is ``21/(2 pi) (1 - 10 r^2 + 20 r^3 - 15 r^4 + 4 r^5)``; the even
    powers integrate to polynomials in ``z`` and the odd ones (``r^3``, ``r^5``) to polynomials plus
    ``s^4 ln((1 + L)/s)`` and ``s^6 ln((1 + L)/s)`` terms, with ``L = sqrt(1 - s^2)``.

    Parameters
    ----------
    s : array_like
        Projected distance in units of the support radius.

    Returns
    -------
    numpy.ndarray
        ``F(s)``; zero for ``s >= 1``. ``F(0) = 7/pi`` and ``int_0^1 2 pi s F(s) ds = 1``.
        The absolute error is at round-off level (about 1e-15); near ``s = 1``, where
        ``F ~ (1 - s)^4.5``, the relative error grows accordingly.

    References
    ----------
    .. [1] Wendland H., 1995, Adv. Comput. Math., 4, 389
    .. [2] Dehnen W., Aly H., 2012, MNRAS, 425, 1068
    """
    # The compiled branch at s = 0 may evaluate log(1/0) before discarding it: silence the FP flags.
    with np.errstate(divide="ignore", invalid="ignore"):
        return _column_kernel_ufunc(np.abs(np.asarray(s, dtype=np.float64)))


def _column_kernel_scalar(s):
    return column_kernel_unit(s)


# The array version is the scalar closed form as a ufunc: one formula, used by numba and numpy alike. It is
# built from its own function so that its cache entry (numba's plain cache, one signature, so nothing for two
# processes to mix up) has its own index rather than sharing column_kernel_unit's checked one.
_column_kernel_ufunc = vectorize(["float64(float64)"], cache=True)(_column_kernel_scalar)


def projected_kernel(R, h):
    """Projected (column) kernel ``W2D(R, H) = F(R/H) / H^2`` in inverse length squared.

    Parameters
    ----------
    R : array_like
        Projected distance from the particle.
    h : array_like
        Support radius ``H``.

    Returns
    -------
    numpy.ndarray
        ``W2D``; its integral over the plane is 1.
    """
    h = np.asarray(h, dtype=np.float64)
    return column_kernel(np.asarray(R, dtype=np.float64) / h) / h**2


def column_kernel_table(n: int = 2048):
    """Tabulate ``F`` on ``n + 1`` equally spaced points of ``[0, 1]``.

    Parameters
    ----------
    n : int
        Number of intervals (at least 1000, as docs/physics.md section 7 asks of a table).

    Returns
    -------
    s, F : numpy.ndarray
        Abscissae and values (from the closed form).
    """
    if n < 1000:
        raise ValueError(f"column_kernel_table needs n >= 1000 intervals, got {n}")
    s = np.linspace(0.0, 1.0, n + 1)
    return s, column_kernel(s)


def marginal_1d(x):
    """1D marginal of the kernel, ``f1(x) = int int w(sqrt(x^2+y^2+z^2)) dy dz``, a polynomial.

    ``f1(x) = 2 pi int_|x|^1 w(r) r dr = 3/2 - 21/2 x^2 + 105/2 x^4 - 84 |x|^5 + 105/2 x^6 - 12 |x|^7``
    for ``|x| < 1``; ``int_{-1}^{1} f1 = 1``.
    """
    a = np.abs(np.asarray(x, dtype=np.float64))
    a2 = a * a
    p = 1.5 + a2 * (-10.5 + a2 * (52.5 + a * (-84.0 + a * (52.5 - 12.0 * a))))
    return np.where(a < 1.0, p, 0.0)


def marginal_cdf(u):
    """Cumulative 1D marginal ``M(u) = int_{-1}^{u} f1``: the kernel mass at ``x < u``.

    A polynomial of degree 8 in ``|u|`` (odd about ``M(0) = 1/2``); ``M(-1) = 0`` and ``M(1) = 1``
    exactly in floating point.
    """
    u = np.clip(np.asarray(u, dtype=np.float64), -1.0, 1.0)
    a = np.abs(u)
    a2 = a * a
    m = a * (1.5 + a2 * (-3.5 + a2 * (10.5 + a * (-14.0 + a * (7.5 - 1.5 * a)))))
    return 0.5 + np.sign(u) * m


def _gauss_legendre_01(q: int):
    x, w = np.polynomial.legendre.leggauss(q)
    return 0.5 * (x + 1.0), 0.5 * w


@lru_cache(maxsize=4)
def corner_table(n: int = CORNER_TABLE_SIZE, order: int = 10) -> np.ndarray:
    """Tabulate the odd part ``G(u, v) = int_0^u int_0^v F`` of the corner table on ``[0, 1]^2``.

    Parameters
    ----------
    n : int
        Number of equal intervals along each axis (nodes ``i / n``, ``i = 0..n``).
    order : int
        Gauss-Legendre order per interval of the quadratures that build the table.

    Returns
    -------
    numpy.ndarray
        Read-only array of shape ``(n + 1, n + 1, 4)``: at node ``(u_i, v_j)``, ``G``,
        ``delta * dG/du``, ``delta * dG/dv`` and ``delta^2 * d2G/dudv = delta^2 F`` with
        ``delta = 1 / n``, the data of a bicubic Hermite interpolant (error of order ``delta^4``:
        about 1e-10 at the default ``n = 128``).

    Notes
    -----
    ``P(x, v) = int_0^v F(sqrt(x^2 + y^2)) dy`` is integrated by Gauss-Legendre on each ``v``
    interval, cut where the support boundary ``y = sqrt(1 - x^2)`` crosses it, at the table's
    ``u`` nodes (giving ``G_u``; ``G_v`` follows by symmetry) and at the Gauss points of each
    ``u`` interval, whose sums give ``G``. The edges ``u = 1`` and ``v = 1`` are set from the exact
    polynomial ``G(1, v) = m(v) / 2`` and ``G_u(u, 1) = f1(u) / 2``, so ``G(1, 1) = 1/4`` exactly and
    the weights of any particle fully inside the map sum to 1 to round-off.
    """
    if n < 4:
        raise ValueError(f"corner table needs n >= 4 intervals, got {n}")
    delta = 1.0 / n
    nodes = np.arange(n + 1) * delta
    gx, gw = _gauss_legendre_01(order)
    # abscissae in u: the nodes, then the Gauss points of every interval
    xg = (nodes[:-1, None] + delta * gx[None, :]).ravel()
    xs = np.concatenate([nodes, xg])
    # P(x, v_j) for every x in xs, cumulative over the v intervals
    yb = np.sqrt(np.clip(1.0 - xs * xs, 0.0, None))  # support boundary at this x
    a = nodes[None, :-1]
    b = np.minimum(nodes[None, 1:], yb[:, None])
    length = np.clip(b - a, 0.0, None)  # (nx, n)
    ys = a[..., None] + length[..., None] * gx  # (nx, n, order)
    fvals = column_kernel(np.sqrt(xs[:, None, None] ** 2 + ys**2))
    seg = (fvals * gw).sum(axis=-1) * length
    P = np.zeros((xs.size, n + 1))
    P[:, 1:] = np.cumsum(seg, axis=1)
    Pn = P[: n + 1]  # at the u nodes: G_u(u_i, v_j)
    Pg = P[n + 1 :].reshape(n, order, n + 1)
    G = np.zeros((n + 1, n + 1))
    G[1:] = np.cumsum(delta * np.einsum("q,iqj->ij", gw, Pg), axis=0)
    # exact edges: G(1, v) = m(v)/2, G_u(u, 1) = f1(u)/2, G_u(1, v) = 0
    half_m = 0.5 * (marginal_cdf(nodes) - 0.5)
    G[n, :] = half_m
    G[:, n] = half_m
    G[n, n] = 0.25
    Pn = Pn.copy()
    Pn[:, n] = 0.5 * marginal_1d(nodes)
    Pn[n, :] = 0.0
    # symmetrise G (it is symmetric in u, v; the quadrature is not exactly)
    G = 0.5 * (G + G.T)
    tab = np.empty((n + 1, n + 1, 4))
    tab[..., 0] = G
    tab[..., 1] = delta * Pn  # G_u(u_i, v_j) = P(u_i, v_j)
    tab[..., 2] = delta * Pn.T  # G_v(u_i, v_j) = P(v_j, u_i)
    tab[..., 3] = delta * delta * column_kernel(np.hypot(nodes[:, None], nodes[None, :]))
    tab.setflags(write=False)
    return tab


@lru_cache(maxsize=4)
def correction_table(n: int = CORRECTION_TABLE_SIZE) -> np.ndarray:
    """Non-separable part of the corner table, ``K(u, v) = G(u, v) - m(u) m(v)``, on a fine grid.

    ``C(u, v) = M(u) M(v) + K(u, v)`` with ``M = 1/2 + m`` the exact polynomial cumulative marginal:
    the product is the whole answer on the edges of the square (``K = 0`` there, so a particle's
    pixel weights telescope to exactly one) and ``K`` is a small correction (``|K| < 1.4e-3``,
    ``|K_uu| < 0.04``), so bilinear interpolation on ``n = 256`` intervals is accurate to about
    1.4e-7 per corner (3.7e-8 at 512, 5.7e-7 at 128): four loads instead of the sixteen of a bicubic
    lookup. At 256 the float32 table (264 kB) stays in a core's L2 cache beside the images; at 512
    (1.05 MB) it does not, and the projection is slower for an accuracy far beyond the 1e-5 needed
    (docs/projection.md section 3). The node values come from the bicubic interpolant of
    :func:`corner_table` (accurate to about 5e-10).

    Parameters
    ----------
    n : int
        Intervals along each axis of ``[0, 1]``.

    Returns
    -------
    numpy.ndarray, shape (n + 1, n + 1), float32
        Read-only ``K(i / n, j / n)`` (float32 halves its cache footprint; its round-off, below
        1e-10, is far below the interpolation error). ``K`` is odd in each argument.
    """
    out = _correction_nodes(n).astype(np.float32)
    out.setflags(write=False)
    return out


def _correction_nodes(n: int) -> np.ndarray:
    """``K(i / n, j / n)`` in float64 (see :func:`correction_table`)."""
    if n < 4:
        raise ValueError(f"correction table needs n >= 4 intervals, got {n}")
    nodes = np.arange(n + 1) / n
    uu, vv = np.meshgrid(nodes, nodes, indexing="ij")
    m = marginal_cdf(nodes) - 0.5
    g = corner(uu, vv) - 0.25 - 0.5 * (m[:, None] + m[None, :])
    k = g - np.outer(m, m)
    k = 0.5 * (k + k.T)
    k[0, :] = k[:, 0] = 0.0
    k[n, :] = k[:, n] = 0.0
    return k


@lru_cache(maxsize=4)
def correction_modes(n: int = CORRECTION_MODES_SIZE, rank: int = CORRECTION_MODES) -> np.ndarray:
    """Separable modes of the correction ``K``: ``K(u, v) = sum_r s_r phi_r(u) phi_r(v)``, r < ``rank``.

    ``K`` (:func:`correction_table`) is symmetric, so its leading eigenvectors on the nodes ``i / n``
    give the best approximation of a given rank; ``phi_r`` is the r-th of them scaled by the square
    root of its eigenvalue's magnitude and ``s_r`` the eigenvalue's sign. The eigenvalues fall fast
    (relative to the first: 6e-2, 2.6e-3, 1.2e-3, 1.6e-4, 2.5e-5, 1.9e-5, 3.9e-6), and at rank 7 the
    corners are within 1e-8 of ``K``. ``phi_r`` vanishes at 0 and 1 as ``K`` does (exactly: those
    nodes are set to zero), and is odd like ``K`` in each argument. Interpolated linearly, a mode
    costs one 1D lookup per footprint edge instead of a 2D lookup per pixel corner: the projection
    uses them for footprints of 8 x 8 pixels and more. Against the quadrature reference, 300
    particles of a 1e14 Msun mock cluster (support radii of 1-20 pixels) all projected with the
    modes had a summed error of 5.9e-7 of their mass (1.2e-5 with 4 modes, 2.2e-6 with 6), against
    9.6e-7 with the bilinear table.

    The values are rounded to float32 (stored as float64), so that they are the same bytes on any
    machine and with any number of LAPACK threads; their round-off moves ``K`` by 1.4e-10 at most,
    against 1.0e-8 for the truncation to rank 7.

    Parameters
    ----------
    n : int
        Intervals of the 1D tables along ``[0, 1]``.
    rank : int
        Number of modes.

    Returns
    -------
    numpy.ndarray, shape (n + 2, rank + 1), float64
        Read-only. Rows ``0..n``: ``phi_r(i / n)`` in column ``r + 1`` (column 0 is zero: the
        projection puts the marginal ``m`` there); row ``n + 1``: ``s_r`` in column ``r + 1`` and 1 in
        column 0.
    """
    if not 1 <= rank <= n:
        raise ValueError(f"correction modes need 1 <= rank <= n, got rank {rank} with n {n}")
    k = _correction_nodes(n)
    val, vec = np.linalg.eigh(k)
    top = np.argsort(-np.abs(val), kind="stable")[:rank]
    phi = vec[:, top] * np.sqrt(np.abs(val[top]))[None, :]
    # the sign of an eigenvector is arbitrary: make each mode's largest value positive
    phi *= np.sign(phi[np.argmax(np.abs(phi), axis=0), np.arange(rank)])[None, :]
    phi[0] = phi[n] = 0.0
    out = np.zeros((n + 2, rank + 1))
    out[: n + 1, 1:] = phi.astype(np.float32)
    out[n + 1, 0] = 1.0
    out[n + 1, 1:] = np.sign(val[top])
    out.setflags(write=False)
    return out


def corner(u, v, table: np.ndarray | None = None):
    """Corner table ``C(u, v)``: kernel mass in ``x < u, y < v`` (kernel units, clipped to [-1, 1]).

    Parameters
    ----------
    u, v : array_like
        Corner coordinates in units of the support radius, broadcast together.
    table : numpy.ndarray, optional
        Output of :func:`corner_table` (default size if omitted).

    Returns
    -------
    numpy.ndarray
        ``C(u, v)``, with ``C(1, 1) = 1``, ``C(-1, v) = C(u, -1) = 0`` and ``C(u, 1) = M(u)``.
    """
    tab = corner_table() if table is None else table
    u, v = np.broadcast_arrays(np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64))
    shape = u.shape
    uf = np.ascontiguousarray(u).ravel()
    vf = np.ascontiguousarray(v).ravel()
    out = np.empty(uf.size)
    _corner_many(uf, vf, tab, out)
    return out.reshape(shape)
