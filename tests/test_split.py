import numpy as np
import pytest

from massmaps.learning.split import SPLIT_NAMES, assign_splits, eval_mask, mass_bin_index, split_counts


def _catalogue(n_halos=700, seed=3):
    """Halos with a steep mass function and 1-3 projections each, in shuffled order."""
    rng = np.random.default_rng(seed)
    logm = 14.0 + rng.exponential(0.25, n_halos)
    n_proj = rng.integers(1, 4, n_halos)
    halo_ids = rng.choice(10**6, n_halos, replace=False)
    halo_id = np.repeat(halo_ids, n_proj)
    log10_mass = np.repeat(logm, n_proj)
    order = rng.permutation(len(halo_id))
    return halo_id[order], log10_mass[order]


def test_clusters_never_span_two_splits():
    halo_id, logm = _catalogue()
    split = assign_splits(halo_id, logm, seed=1)
    assert split.shape == halo_id.shape
    assert set(np.unique(split)) == set(SPLIT_NAMES)
    for h in np.unique(halo_id):
        assert len(set(split[halo_id == h])) == 1, f"halo {h} in several splits"


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.6, 0.25, 0.15), (1.0, 0.0, 0.0)])
def test_per_bin_counts_within_one_cluster_of_target(fractions):
    halo_id, logm = _catalogue()
    split = assign_splits(halo_id, logm, fractions=fractions, bin_width=0.1, seed=7)
    ids, first = np.unique(halo_id, return_index=True)
    bins = mass_bin_index(logm[first], 0.1)
    cluster_split = split[first]
    assert len(np.unique(bins)) > 8  # many bins, including sparse high-mass ones
    for b in np.unique(bins):
        in_bin = bins == b
        n = in_bin.sum()
        for name, f in zip(SPLIT_NAMES, fractions):
            count = np.sum(cluster_split[in_bin] == name)
            assert abs(count - f * n) < 1, (b, name, count, f * n)


def test_sparse_bins_do_not_all_go_to_train():
    # 300 bins holding one cluster each: the odd cluster is drawn, not always given to "train".
    halo_id = np.arange(300)
    logm = 13.0 + 0.1 * np.arange(300) + 0.05
    split = assign_splits(halo_id, logm, seed=0)
    frac = [np.mean(split == s) for s in SPLIT_NAMES]
    assert frac[0] == pytest.approx(0.8, abs=0.07)
    assert frac[1] == pytest.approx(0.1, abs=0.05) and frac[2] == pytest.approx(0.1, abs=0.05)


def test_deterministic_and_order_independent():
    halo_id, logm = _catalogue()
    a = assign_splits(halo_id, logm, seed=11)
    b = assign_splits(halo_id, logm, seed=11)
    np.testing.assert_array_equal(a, b)
    perm = np.random.default_rng(0).permutation(len(halo_id))
    c = assign_splits(halo_id[perm], logm[perm], seed=11)
    np.testing.assert_array_equal(a[perm], c)
    d = assign_splits(halo_id, logm, seed=12)
    assert np.any(a != d)


def test_split_counts_are_unbiased():
    rng = np.random.default_rng(5)
    counts = np.array([split_counts(7, (0.8, 0.1, 0.1), rng) for _ in range(4000)])
    assert np.all(counts.sum(axis=1) == 7)
    np.testing.assert_allclose(counts.mean(axis=0), [5.6, 0.7, 0.7], atol=0.05)


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.8, 0.1, 0.2), (1.1, -0.05, -0.05), (0.8, 0.1, float("nan"))])
def test_bad_fractions_raise(fractions):
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(np.arange(5), np.full(5, 14.2), fractions=fractions, seed=0)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="different log10_mass"):
        assign_splits(np.array([1, 1]), np.array([14.0, 14.5]), seed=0)
    with pytest.raises(ValueError, match="equal length"):
        assign_splits(np.arange(3), np.full(2, 14.0), seed=0)
    with pytest.raises(ValueError, match="bin_width"):
        assign_splits(np.arange(3), np.full(3, 14.0), bin_width=0, seed=0)


def test_bin_edges_and_eval_mask():
    np.testing.assert_array_equal(mass_bin_index([14.3, 14.2999, 14.0]), [143, 142, 140])
    m = np.array([1.9e14, 2e14, 5e14, 1e15, 1.1e15])
    np.testing.assert_array_equal(eval_mask(m), [False, True, True, True, False])
    with pytest.raises(ValueError):
        eval_mask(m, lo=1e15, hi=2e14)
