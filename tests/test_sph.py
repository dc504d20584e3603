"""Smoothing lengths and SPH densities from nearest neighbours (PHYSICS.md section 7)."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from massmaps.kernels import wendland_c2
from massmaps.sph import smoothing_lengths, smoothing_lengths_and_density


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


def test_lattice_smoothing_length(lattice):
    pos, inner = lattice
    spacing = 1 / 24
    # with self: 1 + 6 + 12 + 8 = 27 points within sqrt(3) spacings, the next 6 at 2 spacings
    H = smoothing_lengths(pos, n_ngb=33)
    np.testing.assert_allclose(H[inner], 2 * spacing, rtol=1e-12)
    expected = (3 * 33 / (4 * np.pi * pos.shape[0])) ** (1 / 3)
    assert np.median(H[inner]) == pytest.approx(expected, rel=0.01)


def test_random_cloud_smoothing_length(cloud):
    pos, inner = cloud
    for k in (33, 64):
        H = smoothing_lengths(pos, n_ngb=k)
        expected = (3 * k / (4 * np.pi * pos.shape[0])) ** (1 / 3)
        assert np.median(H[inner]) == pytest.approx(expected, rel=0.03)


def test_smoothing_length_is_kth_neighbour_distance(cloud):
    pos, _ = cloud
    H, _ = smoothing_lengths_and_density(pos, np.ones(len(pos)), n_ngb=40)
    d, _ = cKDTree(pos).query(pos[:500], k=40)
    np.testing.assert_allclose(H[:500], d[:, -1], rtol=1e-15)
    np.testing.assert_array_equal(smoothing_lengths(pos, n_ngb=40), H)


def test_query_subset_gives_the_same_bytes(cloud):
    # Only the queried particles are computed; every particle is still a neighbour, so the values are
    # those of the full computation, bit for bit, in the particles' order.
    pos, inner = cloud
    mass = np.random.default_rng(2).uniform(0.5, 2.0, len(pos))
    H, rho = smoothing_lengths_and_density(pos, mass, n_ngb=40)
    Hq, rhoq = smoothing_lengths_and_density(pos, mass, n_ngb=40, query=inner)
    assert Hq.shape == (inner.sum(),)
    assert Hq.tobytes() == H[inner].tobytes() and rhoq.tobytes() == rho[inner].tobytes()
    H0, rho0 = smoothing_lengths_and_density(pos, mass, n_ngb=40, query=np.zeros(len(pos), bool))
    assert H0.shape == rho0.shape == (0,)
    with pytest.raises(ValueError, match="query must be a boolean mask"):
        smoothing_lengths_and_density(pos, mass, n_ngb=40, query=np.flatnonzero(inner))


def test_density_matches_direct_sum(cloud):
    pos, _ = cloud
    mass = np.random.default_rng(1).uniform(0.5, 2.0, len(pos))
    H, rho = smoothing_lengths_and_density(pos, mass, n_ngb=50)
    d, idx = cKDTree(pos).query(pos[:200], k=50)
    direct = (mass[idx] * wendland_c2(d, H[:200, None])).sum(axis=1)
    np.testing.assert_allclose(rho[:200], direct, rtol=1e-12)


def test_density_of_uniform_cloud(cloud):
    pos, inner = cloud
    n = pos.shape[0]
    mass = np.full(n, 2.0 / n)  # true density 2
    for k in (33, 64):
        _, rho = smoothing_lengths_and_density(pos, mass, n_ngb=k, include_self=False)
        assert np.mean(rho[inner]) == pytest.approx(2.0, rel=0.04)
        # the SPH sum with the self term: biased by (k + 12) / (k - 2) for independent points
        _, rho_self = smoothing_lengths_and_density(pos, mass, n_ngb=k)
        assert np.mean(rho_self[inner]) == pytest.approx(2.0 * (k + 12) / (k - 2), rel=0.03)


def test_density_of_lattice(lattice):
    pos, inner = lattice
    n = pos.shape[0]
    _, rho = smoothing_lengths_and_density(pos, np.full(n, 1.0 / n), n_ngb=64)
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
def test_bad_input(pos, mass, n_ngb, match):
    with pytest.raises(ValueError, match=match):
        if mass is None:
            smoothing_lengths(pos, n_ngb=n_ngb)
        else:
            smoothing_lengths_and_density(pos, mass, n_ngb=n_ngb)
