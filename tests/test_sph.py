"""Smoothing lengths and SPH densities from nearest neighbours (docs/physics.md section 7)."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from massmaps.projection.kernels import wendland_c2
from massmaps.projection.sph import BACKENDS, smoothing_lengths, smoothing_lengths_and_density


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(scope="module")
def lattice():
    g = (np.arange(24) + 0.5) / 24
    pos = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    inner = np.all((pos > 0.25) & (pos < 0.75), axis=1)
    return pos, inner


@pytest.fixture(scope="module")
def cloud():
    rng = np.random.default_rng(0)
    n = 30000
    pos = rng.uniform(0.0, 1.0, (n, 3))
    inner = np.all((pos > 0.2) & (pos < 0.8), axis=1)
    return pos, inner


def test_lattice_smoothing_length(lattice, backend):
    pos, inner = lattice
    spacing = 1 / 24
    # with self: 1 + 6 + 12 + 8 = 27 points within sqrt(3) spacings, the next 6 at 2 spacings
    H = smoothing_lengths(pos, n_ngb=33, backend=backend)
    np.testing.assert_allclose(H[inner], 2 * spacing, rtol=1e-12)
    expected = (3 * 33 / (4 * np.pi * pos.shape[0])) ** (1 / 3)
    assert np.median(H[inner]) == pytest.approx(expected, rel=0.01)


def test_random_cloud_smoothing_length(cloud, backend):
    pos, inner = cloud
    for k in (33, 64):
        H = smoothing_lengths(pos, n_ngb=k, backend=backend)
        expected = (3 * k / (4 * np.pi * pos.shape[0])) ** (1 / 3)
        assert np.median(H[inner]) == pytest.approx(expected, rel=0.03)


def test_smoothing_length_is_kth_neighbour_distance(cloud, backend):
    pos, _ = cloud
    H, _ = smoothing_lengths_and_density(pos, np.ones(len(pos)), n_ngb=40, backend=backend)
    d, _ = cKDTree(pos).query(pos[:500], k=40)
    np.testing.assert_allclose(H[:500], d[:, -1], rtol=1e-15)
    np.testing.assert_array_equal(smoothing_lengths(pos, n_ngb=40, backend=backend), H)


def test_query_subset_gives_the_same_bytes(cloud, backend):
    # Only the queried particles are computed; every particle is still a neighbour, so the values are
    # those of the full computation, bit for bit, in the particles' order.
    pos, inner = cloud
    mass = np.random.default_rng(2).uniform(0.5, 2.0, len(pos))
    H, rho = smoothing_lengths_and_density(pos, mass, n_ngb=40, backend=backend)
    Hq, rhoq = smoothing_lengths_and_density(pos, mass, n_ngb=40, query=inner, backend=backend)
    assert Hq.shape == (inner.sum(),)
    assert Hq.tobytes() == H[inner].tobytes() and rhoq.tobytes() == rho[inner].tobytes()
    H0, rho0 = smoothing_lengths_and_density(pos, mass, n_ngb=40, query=np.zeros(len(pos), bool), backend=backend)
    assert H0.shape == rho0.shape == (0,)
    with pytest.raises(ValueError, match="query must be a boolean mask"):
        smoothing_lengths_and_density(pos, mass, n_ngb=40, query=np.flatnonzero(inner), backend=backend)


def test_density_matches_direct_sum(cloud, backend):
    pos, _ = cloud
    mass = np.random.default_rng(1).uniform(0.5, 2.0, len(pos))
    H, rho = smoothing_lengths_and_density(pos, mass, n_ngb=50, backend=backend)
    d, idx = cKDTree(pos).query(pos[:200], k=50)
    direct = (mass[idx] * wendland_c2(d, H[:200, None])).sum(axis=1)
    np.testing.assert_allclose(rho[:200], direct, rtol=1e-12)


def test_density_of_uniform_cloud(cloud, backend):
    pos, inner = cloud
    n = pos.shape[0]
    mass = np.full(n, 2.0 / n)  # true density 2
    for k in (33, 64):
        _, rho = smoothing_lengths_and_density(pos, mass, n_ngb=k, include_self=False, backend=backend)
        assert np.mean(rho[inner]) == pytest.approx(2.0, rel=0.04)
        # the SPH sum with the self term: biased by (k + 12) / (k - 2) for independent points
        _, rho_self = smoothing_lengths_and_density(pos, mass, n_ngb=k, backend=backend)
        assert np.mean(rho_self[inner]) == pytest.approx(2.0 * (k + 12) / (k - 2), rel=0.03)


def test_density_of_lattice(lattice, backend):
    pos, inner = lattice
    n = pos.shape[0]
    _, rho = smoothing_lengths_and_density(pos, np.full(n, 1.0 / n), n_ngb=64, backend=backend)
    assert np.mean(rho[inner]) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize(
    "pos, mass, n_ngb, match",
    [
        (np.zeros((10, 2)), None, 4, r"shape \(N, 3\)"),
        (np.zeros((10, 3)), None, 11, "at least n_ngb"),
        (np.full((10, 3), np.nan), None, 4, "non-finite"),
        (np.zeros((10, 3)), None, 1, "n_ngb must be an integer >= 2"),
        (np.zeros((10, 3)), np.ones(9), 4, r"mass must have shape \(10,\)"),
        (np.zeros((10, 3)), np.full(10, np.inf), 4, "mass contains non-finite"),
    ],
)
def test_bad_input(pos, mass, n_ngb, match, backend):
    with pytest.raises(ValueError, match=match):
        if mass is None:
            smoothing_lengths(pos, n_ngb=n_ngb, backend=backend)
        else:
            smoothing_lengths_and_density(pos, mass, n_ngb=n_ngb, backend=backend)


def test_unknown_backend(cloud):
    with pytest.raises(ValueError, match="unknown neighbour backend 'kdtree'; valid backends: numba, scipy"):
        smoothing_lengths(cloud[0], n_ngb=8, backend="kdtree")


@pytest.fixture(scope="module")
def clumpy():
    # a cusp, a sparse halo, a dense clump and repeated points: leaves of very different sizes and ties
    rng = np.random.default_rng(5)
    core = rng.normal(0.0, 1.0, (6000, 3)) ** 3
    clump = rng.normal(4.0, 0.01, (1500, 3))
    grid = np.round(rng.uniform(-2.0, 2.0, (1500, 3)) * 4) / 4
    pos = np.concatenate([core, clump, grid, grid[:200]])
    return pos, rng.uniform(0.5, 2.0, len(pos))


@pytest.mark.parametrize("n_ngb", [2, 33, 64])
def test_backends_agree(clumpy, n_ngb):
    # the same k-th neighbour distance to the last bit; the density over the same neighbours, summed
    # in another order
    pos, mass = clumpy
    H, rho = smoothing_lengths_and_density(pos, mass, n_ngb=n_ngb, backend="numba")
    Hs, rhos = smoothing_lengths_and_density(pos, mass, n_ngb=n_ngb, backend="scipy")
    assert H.tobytes() == Hs.tobytes()
    finite = np.isfinite(rhos)
    assert np.array_equal(finite, np.isfinite(rho))
    np.testing.assert_allclose(rho[finite], rhos[finite], rtol=1e-13)
    assert H.tobytes() == smoothing_lengths(pos, n_ngb=n_ngb, backend="numba").tobytes()
    # without the self term: "scipy" drops the nearest neighbour, which for repeated points may be the
    # twin rather than the particle itself; the same thing for equal masses
    ones = np.ones(len(pos))
    r1 = smoothing_lengths_and_density(pos, ones, n_ngb=n_ngb, include_self=False, backend="numba")[1]
    r2 = smoothing_lengths_and_density(pos, ones, n_ngb=n_ngb, include_self=False, backend="scipy")[1]
    np.testing.assert_allclose(r1[finite], r2[finite], rtol=1e-13)


def test_numba_backend_same_bytes_for_any_number_of_threads(clumpy):
    import numba

    pos, mass = clumpy
    out = [smoothing_lengths_and_density(pos, mass, n_ngb=40, workers=w, backend="numba") for w in (1, 2)]
    assert out[0][0].tobytes() == out[1][0].tobytes() and out[0][1].tobytes() == out[1][1].tobytes()
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS  # restored afterwards
