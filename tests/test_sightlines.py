import numpy as np
import pandas as pd
import pytest

from massmaps.data import catalog, sightlines


@pytest.fixture(scope="module")
def paper_catalog():
    return catalog.draw_catalog(box_Mpc=500 / 0.7, n_halos=6233, seed=5)


def test_paper_plan_is_flat_and_capped(paper_catalog):
    plan = sightlines.plan_sightlines(paper_catalog, target_per_bin=3000, max_per_cluster=69, n_shards=64, seed=5)
    # docs/physics.md section 8: about 34,692 images with a cap of 69 (the paper: 34,714)
    assert abs(len(plan) - 34714) < 0.01 * 34714
    edges, counts = sightlines.bin_counts(plan["log10_M200m"].to_numpy())
    _, halos_per_bin = sightlines.bin_counts(paper_catalog["log10_M200m"].to_numpy())
    assert counts.max() <= 3000
    for n_img, n_halo in zip(counts, halos_per_bin):
        assert n_img == min(3000, n_halo * 69)  # flat where possible, capped otherwise
    per_cluster = plan.groupby("halo_id").size()
    assert per_cluster.max() <= 69
    # no duplicate view of a cluster
    assert not plan.duplicated(["halo_id", "rotation", "axis"]).any()
    # cardinal views keep the identity rotation, extra rotations are unit quaternions
    q = plan[["view_qx", "view_qy", "view_qz", "view_qw"]].to_numpy()
    assert np.allclose(np.linalg.norm(q, axis=1), 1)
    assert np.allclose(q[plan["rotation"] == 0], [0, 0, 0, 1])
    # every halo's sightlines are in one shard, shards balanced
    assert (plan.groupby("halo_id")["shard"].nunique() == 1).all()
    sizes = plan.groupby("shard").size()
    assert sizes.size == 64 and sizes.max() < 1.3 * sizes.mean()
    assert (plan["sightline_id"] == np.arange(len(plan))).all()


def test_subsampled_bins_use_cardinal_views_only(paper_catalog):
    plan = sightlines.plan_sightlines(paper_catalog, target_per_bin=3000, max_per_cluster=69, n_shards=8, seed=5)
    low = plan[plan["log10_M200m"] < 14.2]
    assert (low["rotation"] == 0).all()


def test_plan_deterministic(paper_catalog):
    a = sightlines.plan_sightlines(paper_catalog, target_per_bin=100, max_per_cluster=10, n_shards=4, seed=1)
    b = sightlines.plan_sightlines(paper_catalog, target_per_bin=100, max_per_cluster=10, n_shards=4, seed=1)
    c = sightlines.plan_sightlines(paper_catalog, target_per_bin=100, max_per_cluster=10, n_shards=4, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_view_rotation_matrix_is_rotation():
    row = {"view_qx": 0.1, "view_qy": -0.3, "view_qz": 0.5, "view_qw": 0.8}
    n = np.sqrt(sum(v * v for v in row.values()))
    row = {k: v / n for k, v in row.items()}
    R = sightlines.view_rotation_matrix(row)
    assert np.allclose(R @ R.T, np.eye(3)) and np.isclose(np.linalg.det(R), 1)


def test_bad_arguments():
    cat = catalog.draw_catalog(box_Mpc=200.0, n_halos=5, seed=1)
    with pytest.raises(ValueError, match="n_shards"):
        sightlines.plan_sightlines(cat, target_per_bin=10, max_per_cluster=3, n_shards=0)


def test_test_split_gets_held_out_clusters_and_extra_views():
    """The plan splits by cluster; held-out clusters (no view in the flat plan) and extra views go to the
    test split in the evaluation range only, and training and validation keep exactly their views."""
    cat = catalog.draw_catalog(box_Mpc=300.0, seed=42)
    kw = dict(target_per_bin=20, max_per_cluster=69, n_shards=4, seed=42)
    split = {"fractions": [0.8, 0.1, 0.1], "bin_dex": 0.1, "eval_mass_range_Msun": [2e14, 1e15]}
    flat = sightlines.plan_sightlines(cat, **kw, split=split)
    more = sightlines.plan_sightlines(cat, **kw, split={**split, "test_views": 6, "held_out_per_bin": 2})
    assert (more.groupby("halo_id")["split"].nunique() == 1).all()  # one split per cluster
    key = ["halo_id", "rotation", "axis", "split"]
    for name in ("train", "val"):
        pd.testing.assert_frame_equal(
            flat.loc[flat["split"] == name, key].reset_index(drop=True),
            more.loc[more["split"] == name, key].reset_index(drop=True),
        )
    test = more[more["split"] == "test"]
    in_range = test["M200m_Msun"].between(2e14, 1e15)
    assert (test[in_range].groupby("halo_id").size() >= 6).all()
    assert set(test[~in_range]["halo_id"]) <= set(flat["halo_id"])  # nothing added outside the range
    held_out = set(test["halo_id"]) - set(flat["halo_id"])
    assert held_out and all(2e14 <= m <= 1e15 for m in cat.set_index("halo_id").loc[sorted(held_out), "M200m_Msun"])
    assert not more.duplicated(["halo_id", "rotation", "axis"]).any()
    assert (more["sightline_id"] == np.arange(len(more))).all()
    high = test[in_range & (test["M200m_Msun"] >= 6e14)]
    assert len(high) >= 15 and len(test[in_range]) >= 60


def test_test_box_halos_are_test_clusters_only():
    """A test box adds test clusters in the evaluation range, each with split.test_views views, and changes
    nothing else: the other halos keep their views and splits, and no test-box halo is trained on."""
    kw = dict(target_per_bin=20, max_per_cluster=69, n_shards=4, seed=42)
    split = {"fractions": [0.8, 0.1, 0.1], "bin_dex": 0.1, "eval_mass_range_Msun": [2e14, 1e15], "test_views": 6,
             "held_out_per_bin": 2}  # fmt: skip
    main = catalog.draw_catalog(box_Mpc=300.0, seed=42)
    both = catalog.draw_catalog(box_Mpc=300.0, seed=42, test_box_Mpc=300.0, test_box_m_min=6e14)
    before = sightlines.plan_sightlines(main, **kw, split=split)
    after = sightlines.plan_sightlines(both, **kw, split=split)
    extra = both.loc[both[catalog.TEST_ONLY], "halo_id"]
    key = ["halo_id", "rotation", "axis", "split", "view_qx", "view_qw"]
    pd.testing.assert_frame_equal(
        before[key].sort_values(key[:3]).reset_index(drop=True),
        after.loc[~after["halo_id"].isin(extra), key].sort_values(key[:3]).reset_index(drop=True),
    )
    added = after[after["halo_id"].isin(extra)]
    in_range = both.loc[both[catalog.TEST_ONLY] & both["M200m_Msun"].between(2e14, 1e15), "halo_id"]
    assert set(added["halo_id"]) == set(in_range) and len(in_range) >= 5
    assert (added["split"] == "test").all() and (added.groupby("halo_id").size() == 6).all()

    def high_test_clusters(plan):
        return plan.loc[(plan["split"] == "test") & plan["M200m_Msun"].between(6e14, 1e15), "halo_id"].nunique()

    assert high_test_clusters(after) >= 3 * high_test_clusters(before)
    assert (after["sightline_id"] == np.arange(len(after))).all()
