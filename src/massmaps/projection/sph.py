"""SPH smoothing lengths and densities from the nearest neighbours (docs/physics.md section 7).

The support radius of particle j is the distance to its ``n_ngb``-th nearest neighbour of the same
set, itself included (so ``n_ngb - 1`` other particles lie within it), and its density is the
kernel sum over those neighbours, ``rho_j = sum_k m_k W(|r_j - r_k|, H_j)`` (Springel 2010, Eq. 1;
the ``n_ngb``-th neighbour sits at ``q = 1`` and adds nothing).

Two backends give the same ``H``, bit for bit (tested):

``"numba"`` (default)
    :mod:`massmaps.projection.knn`: a median-split k-d tree walked once per leaf of 32 points for all of them,
    whose pruning radius is the largest of their current ``k``-th neighbour distances, with numba
    threads over the leaves. It answers the all-particles question that SPH asks, rather than one
    query at a time; ``benchmarks/projection.py`` times it against ``"scipy"`` in the same run.
``"scipy"``
    scipy's ``cKDTree``, built unbalanced (``balanced_tree=False``, the sliding-midpoint rule) and
    queried in the tree's own order (``tree.indices``), so consecutive queries walk the same nodes
    and stay in cache (much faster than in random order: docs/projection.md section 8). Queries run in
    chunks so the (chunk, k) neighbour arrays stay small.

The density sums over the same ``n_ngb`` neighbours in both, in a different order (a few units in
the last place apart).

References
----------
.. [1] Springel V., 2010, ARA&A, 48, 391
.. [2] Dehnen W., Aly H., 2012, MNRAS, 425, 1068
"""

from __future__ import annotations

from contextlib import contextmanager

import numba
import numpy as np
from numba import prange
from scipy.spatial import cKDTree

from massmaps.jit import njit
from massmaps.projection import knn
from massmaps.projection.kernels import w3d_unit

__all__ = ["BACKENDS", "smoothing_lengths", "smoothing_lengths_and_density"]

_CHUNK = 1 << 16  # query rows per chunk (scipy backend)
#: Neighbour-search backends (see the module docstring).
BACKENDS = ("numba", "scipy")


def _check_backend(backend):
    if backend not in BACKENDS:
        raise ValueError(f"unknown neighbour backend {backend!r}; valid backends: {', '.join(BACKENDS)}")


@contextmanager
def _numba_threads(workers: int):
    """numba's thread count set to ``workers`` (at most the pool's size) inside the block, then restored."""
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(workers), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _check_inputs(pos, n_ngb, mass=None):
    pos = np.ascontiguousarray(pos, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos must have shape (N, 3), got {pos.shape}")
    if isinstance(n_ngb, bool) or int(n_ngb) != n_ngb or n_ngb < 2:
        raise ValueError(f"n_ngb must be an integer >= 2 (self included), got {n_ngb!r}")
    n_ngb = int(n_ngb)
    n = pos.shape[0]
    if n < n_ngb:
        raise ValueError(f"need at least n_ngb = {n_ngb} particles, got N = {n}")
    if not np.isfinite(pos).all():
        raise ValueError("pos contains non-finite values")
    if mass is not None:
        mass = np.ascontiguousarray(mass, dtype=np.float64)
        if mass.shape != (n,):
            raise ValueError(f"mass must have shape ({n},), got {mass.shape}")
        if not np.isfinite(mass).all():
            raise ValueError("mass contains non-finite values")
    return pos, n_ngb, mass


def _tree(pos):
    # see the module docstring for the measured choices
    return cKDTree(pos, leafsize=16, balanced_tree=False, compact_nodes=False)


def smoothing_lengths(pos, n_ngb: int = 64, workers: int = 2, *, backend: str = "numba") -> np.ndarray:
    """Support radius ``H_j``: distance to the ``n_ngb``-th nearest neighbour, self included.

    Parameters
    ----------
    pos : array_like, shape (N, 3)
        Positions (one set: one species).
    n_ngb : int
        Neighbour number including the particle itself (docs/physics.md section 7: 64; configurable).
    workers : int
        Threads for the neighbour search.
    backend : {"numba", "scipy"}
        Neighbour search (module docstring); the same ``H`` either way.

    Returns
    -------
    numpy.ndarray, shape (N,)
        ``H`` in the units of ``pos``.

    Raises
    ------
    ValueError
        If ``pos`` is not (N, 3) and finite, ``n_ngb < 2``, ``N < n_ngb`` or the backend is unknown.
    """
    _check_backend(backend)
    pos, n_ngb, _ = _check_inputs(pos, n_ngb)
    if backend == "numba":
        with _numba_threads(workers):
            return knn.build_tree(pos).h_rho(n_ngb)[0]
    tree = _tree(pos)
    order = tree.indices
    H = np.empty(pos.shape[0])
    for start in range(0, order.size, _CHUNK):
        idx = order[start : start + _CHUNK]
        d, _ = tree.query(pos[idx], k=[n_ngb], workers=workers)
        H[idx] = d[:, 0]
    return H


@njit(parallel=True, cache=True)
def _density_chunk(dist, nbr, mass, first, out):
    n, k = dist.shape
    for i in prange(n):
        hj = dist[i, k - 1]
        if hj > 0.0:
            inv_h = 1.0 / hj
            acc = 0.0
            for c in range(first, k):
                acc += mass[nbr[i, c]] * w3d_unit(dist[i, c] * inv_h)
            out[i] = acc * inv_h * inv_h * inv_h
        else:
            out[i] = np.inf  # n_ngb particles at one point


def smoothing_lengths_and_density(
    pos, mass, n_ngb: int = 64, workers: int = 2, *, include_self: bool = True, query=None, backend: str = "numba"
):
    """Support radii and SPH densities from the ``n_ngb`` nearest neighbours (self included).

    Parameters
    ----------
    pos : array_like, shape (N, 3)
        Positions of one species.
    mass : array_like, shape (N,)
        Particle masses.
    n_ngb : int
        Neighbour number including the particle itself (docs/physics.md section 7: 64).
    workers : int
        Threads for the neighbour search and the density sum.
    include_self : bool
        Whether the sum includes the particle's own term ``m_j W(0, H_j)`` (the SPH definition,
        the paper's Eq. 1, docs/physics.md section 7; right for the glass-like order of a simulation). For points drawn
        independently (Poisson sampling of a profile) the self term biases the density high: in a
        uniform cloud of density ``n m`` the ball to the ``(k-1)``-th other neighbour has volume
        ``V ~ Gamma(k - 1, 1/n)`` and ``m W(0, H) = 14 m / V``, so ``E[rho] = n m (k + 12) / (k - 2)``
        with ``k = n_ngb`` (+45% at ``k = 33``, +24% at ``k = 64``), while without it the
        ``k - 2`` others inside the ball give ``E[rho] = n m`` exactly. Without it, the particle's
        own term is dropped (``"scipy"``: the nearest neighbour, at distance 0: the particle itself
        or one of several coincident points, the same thing for equal masses).
    query : array_like of bool, shape (N,), optional
        Compute ``H`` and ``rho`` only for these particles (every particle still counts as a
        neighbour). Each value is the one the full computation gives, bit for bit: a particle's
        neighbours do not depend on which others are queried. Used to skip the particles that
        no map will show (a mock cluster is drawn out to a sphere larger than the maps' cube).
    backend : {"numba", "scipy"}
        Neighbour search (module docstring): the same ``H``; ``rho`` to a few units in the last place.

    Returns
    -------
    H : numpy.ndarray, shape (N,) or (query.sum(),)
        Distance to the ``n_ngb``-th neighbour (the Wendland C2 support radius), in particle order
        (of the queried particles only when ``query`` is given).
    rho : numpy.ndarray, same shape as ``H``
        ``rho_j = sum_k m_k W(|r_j - r_k|, H_j)`` over the same ``n_ngb`` neighbours (self
        included), in mass per length cubed. ``inf`` where ``n_ngb`` particles coincide (``H = 0``).

    Raises
    ------
    ValueError
        If ``pos`` is not (N, 3), ``mass`` not (N,), any value is non-finite, ``n_ngb < 2`` or
        ``N < n_ngb``, or the backend is unknown.

    References
    ----------
    .. [1] Springel V., 2010, ARA&A, 48, 391 (Eq. 1)
    .. [2] Dehnen W., Aly H., 2012, MNRAS, 425, 1068
    """
    _check_backend(backend)
    pos, n_ngb, mass = _check_inputs(pos, n_ngb, mass)
    n = pos.shape[0]
    if query is not None:
        query = np.asarray(query)
        if query.dtype != bool or query.shape != (n,):
            raise ValueError(f"query must be a boolean mask of shape ({n},), got {query.dtype} {query.shape}")
    if backend == "numba":
        with _numba_threads(workers):
            H, rho = knn.build_tree(pos).h_rho(n_ngb, mass, query, self_weight=1.0 if include_self else 0.0)
        return (H, rho) if query is None else (H[query], rho[query])
    tree = _tree(pos)
    order = tree.indices
    if query is None:
        slot = None
    else:
        order = order[query[order]]  # the queried particles, still in tree order
        slot = np.cumsum(query) - 1  # particle index -> position among the queried ones
    H = np.empty(order.size)
    rho = np.empty(order.size)
    buf = np.empty(min(_CHUNK, order.size))
    for start in range(0, order.size, _CHUNK):
        idx = order[start : start + _CHUNK]
        d, nbr = tree.query(pos[idx], k=n_ngb, workers=workers)
        out = buf[: idx.size]
        # column 0 is the particle itself (distance 0), unless n_ngb points coincide with it
        _density_chunk(d, nbr, mass, 0 if include_self else 1, out)
        dest = idx if slot is None else slot[idx]
        H[dest] = d[:, -1]
        rho[dest] = out
    return H, rho
