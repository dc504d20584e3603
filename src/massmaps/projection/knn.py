"""All-particle k-nearest-neighbour search for SPH smoothing lengths and densities, in numba.

Every particle of a set needs its ``k`` nearest neighbours in the same set: a batched problem that a
per-point k-d tree query (scipy's ``cKDTree.query``) does one point at a time. Here the points are
sorted into a k-d tree with median splits (leaves of at most ``leaf_size`` points, contiguous in
memory), and the tree is walked once per *leaf*: all the points of a query leaf share one traversal,
whose pruning radius is the largest of their current ``k``-th neighbour distances, and each visited
leaf is compared against the whole query leaf in a tight loop. Each point keeps its ``k`` best
candidates in a max-heap (8 children per node) of squared distances. The leaves are dealt in turn to many more work parts
than threads, so threads stay balanced; every point's result depends only on the points, so the
answer is the same bytes for any number of threads.

At k = 64 a query point computes about 480 distances and makes about 140 heap insertions, and the
insertions are most of the time: so the candidates of a leaf that beat a point's current k-th distance
(about one in five) are picked out first without branches, and only those go to the heap (the same
bytes).

Squared distances are summed as ``(dx dx + dy dy) + dz dz`` without fused multiply-adds, as scipy's
``cKDTree`` does for three dimensions, so ``H`` (the square root of the ``k``-th smallest) is the same
bytes as ``cKDTree.query(..., k=[k])`` gives (tested). docs/projection.md section 8 sets this search beside
the projection, with what each choice gained and what was tried and dropped; section 9 times it against
``cKDTree``.

References
----------
.. [1] Friedman J. H., Bentley J. L., Finkel R. A., 1977, ACM Trans. Math. Softw., 3, 209
.. [2] Springel V., 2010, ARA&A, 48, 391
"""

from __future__ import annotations

import numpy as np
from numba import prange

from massmaps.jit import njit
from massmaps.projection.kernels import w3d_unit

__all__ = ["KNNTree", "build_tree"]

#: Points per leaf at most (leaves hold between half of it and all of it).
LEAF_SIZE = 32
#: Work parts the query leaves are dealt to (part p takes leaves p, p + _PARTS, ...).
_PARTS = 64


# ---------------------------------------------------------------------------------------- build
@njit(cache=True)
def _select(xyz, perm, s, e, mid, dim):
    """Reorder rows ``s:e`` so that row ``mid`` holds the median along ``dim``, smaller ones before it
    and larger ones after it (Hoare quickselect, median-of-three pivots; rows of ``xyz`` and ``perm``
    move together)."""
    lo = s
    hi = e - 1
    while hi > lo:
        m = (lo + hi) // 2
        a = xyz[lo, dim]
        b = xyz[m, dim]
        c = xyz[hi, dim]
        if a < b:
            piv = b if b < c else (c if a < c else a)
        else:
            piv = a if a < c else (c if b < c else b)
        i = lo
        j = hi
        while i <= j:
            while xyz[i, dim] < piv:
                i += 1
            while xyz[j, dim] > piv:
                j -= 1
            if i <= j:
                for d in range(3):
                    t = xyz[i, d]
                    xyz[i, d] = xyz[j, d]
                    xyz[j, d] = t
                tp = perm[i]
                perm[i] = perm[j]
                perm[j] = tp
                i += 1
                j -= 1
        if mid <= j:
            hi = j
        elif mid >= i:
            lo = i
        else:
            break


@njit(cache=True)
def _build(pos, leaf_size):
    n = pos.shape[0]
    xyz = pos.copy()
    perm = np.arange(n)
    # a split node has more than leaf_size points, so every leaf has at least (leaf_size + 1) // 2
    max_nodes = 2 * (n // ((leaf_size + 1) // 2) + 1)
    lo = np.empty((max_nodes, 3))
    hi = np.empty((max_nodes, 3))
    start = np.empty(max_nodes, dtype=np.int64)
    end = np.empty(max_nodes, dtype=np.int64)
    child = np.full(max_nodes, -1, dtype=np.int64)
    start[0] = 0
    end[0] = n
    n_nodes = 1
    stack = np.empty(128, dtype=np.int64)
    stack[0] = 0
    top = 1
    while top > 0:
        top -= 1
        node = stack[top]
        s = start[node]
        e = end[node]
        for d in range(3):
            lo[node, d] = xyz[s, d]
            hi[node, d] = xyz[s, d]
        for i in range(s + 1, e):
            for d in range(3):
                v = xyz[i, d]
                if v < lo[node, d]:
                    lo[node, d] = v
                elif v > hi[node, d]:
                    hi[node, d] = v
        if e - s <= leaf_size:
            continue
        dim = 0
        ext = hi[node, 0] - lo[node, 0]
        for d in range(1, 3):
            if hi[node, d] - lo[node, d] > ext:
                ext = hi[node, d] - lo[node, d]
                dim = d
        mid = s + (e - s) // 2
        _select(xyz, perm, s, e, mid, dim)
        c = n_nodes
        n_nodes += 2
        child[node] = c
        start[c] = s
        end[c] = mid
        start[c + 1] = mid
        end[c + 1] = e
        stack[top] = c
        stack[top + 1] = c + 1
        top += 2
    return (
        xyz,
        perm,
        lo[:n_nodes].copy(),
        hi[:n_nodes].copy(),
        start[:n_nodes].copy(),
        end[:n_nodes].copy(),
        child[:n_nodes].copy(),
    )


# ---------------------------------------------------------------------------------------- query
@njit(cache=True, inline="always")
def _box_dist2(lo, hi, a, b):
    """Squared distance between the boxes of nodes ``a`` and ``b`` (0 when they overlap)."""
    acc = 0.0
    for d in range(3):
        g = lo[a, d] - hi[b, d]
        g2 = lo[b, d] - hi[a, d]
        if g2 > g:
            g = g2
        if g > 0.0:
            acc += g * g
    return acc


#: Children per node of the candidate heaps: a k = 64 heap is two levels deep, and the largest of a
#: node's children is found without branches (faster than a binary heap: docs/projection.md section 8).
_ARITY = 8


@njit(cache=True, inline="always")
def _heap_replace(hd, hi_, q, k, d2, idx):
    """Replace the largest of the max-heap row ``q`` (full, ``k`` entries) by (d2, idx) and sift down."""
    pos = 0
    while True:
        c = _ARITY * pos + 1
        if c >= k:
            break
        best = c
        bv = hd[q, c]
        for cc in range(c + 1, min(c + _ARITY, k)):
            v = hd[q, cc]
            if v > bv:
                bv = v
                best = cc
        if bv <= d2:
            break
        hd[q, pos] = bv
        hi_[q, pos] = hi_[q, best]
        pos = best
    hd[q, pos] = d2
    hi_[q, pos] = idx


@njit(cache=True, inline="always")
def _heap_push(hd, hi_, q, cnt, d2, idx):
    """Add (d2, idx) to the max-heap row ``q`` holding ``cnt`` entries and sift up."""
    pos = cnt
    while pos > 0:
        p = (pos - 1) // _ARITY
        if hd[q, p] >= d2:
            break
        hd[q, pos] = hd[q, p]
        hi_[q, pos] = hi_[q, p]
        pos = p
    hd[q, pos] = d2
    hi_[q, pos] = idx


@njit(cache=True)
def _leaf_knn(X, Y, Z, lo, hi, start, end, child, leaf, k, qrows, nq, hd, hidx, cnt, stack, buf, sel):
    """The ``k`` nearest neighbours of the ``nq`` points ``qrows`` of ``leaf`` into the max-heaps ``hd``
    (squared distances) and ``hidx`` (rows), one row per query point; ``X, Y, Z`` in tree order."""
    for q in range(nq):
        cnt[q] = 0
    n_full = 0
    bound = np.inf
    stack[0] = 0
    top = 1
    while top > 0:
        top -= 1
        node = stack[top]
        if n_full == nq and _box_dist2(lo, hi, node, leaf) >= bound:
            continue
        c = child[node]
        if c >= 0:
            # push the farther child first, so that the nearer one is walked first
            da = _box_dist2(lo, hi, c, leaf)
            db = _box_dist2(lo, hi, c + 1, leaf)
            if da <= db:
                stack[top] = c + 1
                stack[top + 1] = c
            else:
                stack[top] = c
                stack[top + 1] = c + 1
            top += 2
            continue
        s = start[node]
        e = end[node]
        n = e - s
        for q in range(nq):
            r = qrows[q]
            qx = X[r]
            qy = Y[r]
            qz = Z[r]
            cq = cnt[q]
            if cq == k:
                # this leaf's box against the query point's own k-th distance
                acc = 0.0
                g = max(lo[node, 0] - qx, qx - hi[node, 0])
                if g > 0.0:
                    acc += g * g
                g = max(lo[node, 1] - qy, qy - hi[node, 1])
                if g > 0.0:
                    acc += g * g
                g = max(lo[node, 2] - qz, qz - hi[node, 2])
                if g > 0.0:
                    acc += g * g
                if acc >= hd[q, 0]:
                    continue
            # squared distances to the whole leaf first (a loop that vectorises), then the heap
            for i in range(n):
                dx = X[s + i] - qx
                dy = Y[s + i] - qy
                dz = Z[s + i] - qz
                buf[i] = (dx * dx + dy * dy) + dz * dz
            i = 0
            while cq < k and i < n:
                _heap_push(hd, hidx, q, cq, buf[i], s + i)
                cq += 1
                i += 1
            if cq == k and cnt[q] < k:
                n_full += 1
            cnt[q] = cq
            worst = hd[q, 0]
            # the candidates below the current worst first, without branches (about one in five
            # passes), then the heap for those that are still below it
            nc = 0
            while i < n:
                sel[nc] = i
                nc += 1 if buf[i] < worst else 0
                i += 1
            for t in range(nc):
                ii = sel[t]
                d = buf[ii]
                if d < worst:
                    _heap_replace(hd, hidx, q, k, d, s + ii)
                    worst = hd[q, 0]
        if n_full == nq:
            bound = 0.0
            for q in range(nq):
                if hd[q, 0] > bound:
                    bound = hd[q, 0]


@njit(parallel=True, cache=True)
def _knn_h_rho(X, Y, Z, lo, hi, start, end, child, leaves, k, want, mass, self_weight, out_h, out_rho):
    """``H`` (and, when ``mass.size``, ``rho``) of every wanted row, in rows' order."""
    n_leaves = leaves.size
    leaf_size = 0
    for li in range(n_leaves):
        leaf_size = max(leaf_size, end[leaves[li]] - start[leaves[li]])
    do_rho = mass.size > 0
    for part in prange(_PARTS):
        hd = np.empty((leaf_size, k))
        hidx = np.empty((leaf_size, k), dtype=np.int64)
        cnt = np.empty(leaf_size, dtype=np.int64)
        qrows = np.empty(leaf_size, dtype=np.int64)
        stack = np.empty(256, dtype=np.int64)
        buf = np.empty(leaf_size)
        sel = np.empty(leaf_size, dtype=np.int64)
        for li in range(part, n_leaves, _PARTS):
            leaf = leaves[li]
            nq = 0
            for r in range(start[leaf], end[leaf]):
                if want[r]:
                    qrows[nq] = r
                    nq += 1
            if nq == 0:
                continue
            _leaf_knn(X, Y, Z, lo, hi, start, end, child, leaf, k, qrows, nq, hd, hidx, cnt, stack, buf, sel)
            for q in range(nq):
                r = qrows[q]
                h2 = hd[q, 0]
                hj = np.sqrt(h2)
                out_h[r] = hj
                if do_rho:
                    if hj > 0.0:
                        inv_h = 1.0 / hj
                        acc = 0.0
                        for c in range(k):
                            p = hidx[q, c]
                            wgt = self_weight if p == r else 1.0
                            acc += wgt * mass[p] * w3d_unit(np.sqrt(hd[q, c]) * inv_h)
                        out_rho[r] = acc * inv_h * inv_h * inv_h
                    else:
                        out_rho[r] = np.inf


# ---------------------------------------------------------------------------------------- API
class KNNTree:
    """A k-d tree over one particle set, for the ``k`` nearest neighbours of its own particles.

    Parameters
    ----------
    pos : numpy.ndarray, shape (N, 3), float64, finite
        Positions (validated by the caller: :mod:`massmaps.projection.sph`).
    leaf_size : int
        Points per leaf at most.
    """

    def __init__(self, pos: np.ndarray, leaf_size: int = LEAF_SIZE):
        if leaf_size < 2:
            raise ValueError(f"leaf_size must be >= 2, got {leaf_size}")
        if pos.ndim != 2 or pos.shape[0] < 1 or pos.shape[1] != 3:
            raise ValueError(f"pos must have shape (N, 3) with N >= 1, got {pos.shape}")
        self.n = pos.shape[0]
        xyz, self.perm, self.lo, self.hi, self.start, self.end, self.child = _build(pos, int(leaf_size))
        self.xyz = np.ascontiguousarray(xyz.T)  # (3, N): each coordinate contiguous, for the distance loops
        self.leaves = np.flatnonzero(self.child < 0)

    def h_rho(self, k: int, mass: np.ndarray | None = None, query: np.ndarray | None = None, self_weight: float = 1.0):
        """Distance to the ``k``-th nearest neighbour (self included) and, with ``mass``, the SPH density.

        Returns ``(H, rho)`` in the input order (``rho`` None without ``mass``); with ``query`` (a
        boolean mask over the input) only those particles are computed and the rest hold NaN.
        ``rho_j = sum_c w_c m_c W(|r_j - r_c|, H_j)`` over the ``k`` neighbours with ``w_c = 1``,
        except ``self_weight`` for the particle itself.
        """
        if not 1 <= k <= self.n:
            raise ValueError(f"k must be in [1, N = {self.n}], got {k}")
        want = np.ones(self.n, dtype=np.bool_) if query is None else np.asarray(query)[self.perm]
        m_tree = np.empty(0) if mass is None else np.ascontiguousarray(mass, dtype=np.float64)[self.perm]
        out_h = np.full(self.n, np.nan)
        out_rho = np.full(self.n if mass is not None else 0, np.nan)
        _knn_h_rho(
            self.xyz[0],
            self.xyz[1],
            self.xyz[2],
            self.lo,
            self.hi,
            self.start,
            self.end,
            self.child,
            self.leaves,
            int(k),
            want,
            m_tree,
            float(self_weight),
            out_h,
            out_rho,
        )
        H = np.empty(self.n)
        H[self.perm] = out_h
        if mass is None:
            return H, None
        rho = np.empty(self.n)
        rho[self.perm] = out_rho
        return H, rho


def build_tree(pos: np.ndarray, leaf_size: int = LEAF_SIZE) -> KNNTree:
    """:class:`KNNTree` over ``pos`` (N, 3)."""
    return KNNTree(np.ascontiguousarray(pos, dtype=np.float64), leaf_size)
