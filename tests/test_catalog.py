import numpy as np
import pandas as pd
import pytest

from massmaps.cosmology import PAPER
from massmaps.data import catalog

PAPER_BOX = 500.0 / PAPER.h  # (500 Mpc/h)^3 in physical Mpc


def test_expected_count_matches_tinker08_spec():
    # docs/physics.md section 1: tinker08 gives 6176 halos above 1e14 Msun in (500 Mpc/h)^3, within 1% of 6233.
    n = catalog.expected_count(PAPER_BOX**3, 1e14, 5e16)
    assert n == pytest.approx(6176, rel=0.005)
    assert abs(n / 6233 - 1) < 0.01


def test_paper_scale_count_within_three_sigma():
    halos = catalog.draw_catalog(box_Mpc=PAPER_BOX, n_halos=None, seed=7)
    expected = catalog.expected_count(PAPER_BOX**3, 1e14, 5e16)
    assert abs(len(halos) - expected) < 3 * np.sqrt(expected)
    # the masses follow the mass function: counts per 0.1 dex against the expectation (chi^2 per bin)
    centres, exp_bins = catalog.expected_counts_per_bin(PAPER_BOX**3, 15.0, n_total=len(halos))
    counts = np.bincount(np.floor((halos["log10_M200m"] - 14.0) / 0.1 + 1e-9).astype(int), minlength=11)[: centres.size]
    chi2 = np.sum((counts - exp_bins) ** 2 / exp_bins)
    assert chi2 < 3 * centres.size


def test_fixed_count_and_columns():
    halos = catalog.draw_catalog(box_Mpc=200.0, n_halos=50, seed=1)
    assert len(halos) == 50
    assert list(halos.columns) == catalog.COLUMNS
    assert halos["halo_id"].is_unique
    assert (halos["M200m_Msun"] >= 1e14).all()
    assert np.all(np.diff(halos["M200m_Msun"]) <= 0)
    assert np.allclose(halos["log10_M200m"], np.log10(halos["M200m_Msun"]))
    # R200m for 1e14 Msun is 1.430 Mpc (docs/physics.md section 0)
    from massmaps.cosmology import R200m

    assert R200m(1e14) == pytest.approx(1.430, abs=0.001)


def test_halo_properties_distributions():
    halos = catalog.draw_catalog(box_Mpc=PAPER_BOX, n_halos=3000, seed=3)
    s, q = halos["axis_ratio_s"].to_numpy(), halos["axis_ratio_q"].to_numpy()
    assert np.all((0.25 <= s) & (s <= q) & (q <= 1.0))
    # JS02 mean a/c about 0.49 at 1e14 Msun (docs/physics.md section 2)
    assert np.mean(s[halos["M200m_Msun"] < 1.5e14]) == pytest.approx(0.49, abs=0.02)
    quat = halos[["rot_qx", "rot_qy", "rot_qz", "rot_qw"]].to_numpy()
    assert np.allclose(np.linalg.norm(quat, axis=1), 1.0)
    c = halos["c200m"].to_numpy()
    assert np.all((2 <= c) & (c <= 20))
    # median concentration near diemer19's 7.9 at 1e14 Msun, scatter 0.15 dex
    low = halos["M200m_Msun"] < 1.2e14
    assert np.median(c[low]) == pytest.approx(7.9, rel=0.05)
    assert np.std(np.log10(c[low])) == pytest.approx(0.15, abs=0.02)
    assert halos["seed"].is_unique


def test_same_seed_same_catalog_different_seed_differs():
    a = catalog.draw_catalog(box_Mpc=300.0, seed=11)
    b = catalog.draw_catalog(box_Mpc=300.0, seed=11)
    c = catalog.draw_catalog(box_Mpc=300.0, seed=12)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_read_user_catalog_fills_missing_columns(tmp_path):
    path = tmp_path / "halos.csv"
    pd.DataFrame({"halo_id": [10, 11, 12], "M200m_Msun": [3e14, 1e15, 2e14], "c200m": [5.0, 4.0, 6.0]}).to_csv(
        path, index=False
    )
    halos = catalog.read_catalog(path, seed=1)
    assert list(halos.columns) == catalog.COLUMNS
    assert halos["halo_id"].tolist() == [11, 10, 12]  # sorted by decreasing mass
    assert halos["c200m"].tolist() == [4.0, 5.0, 6.0]  # given values kept
    parquet = tmp_path / "halos.parquet"
    halos.to_parquet(parquet)
    pd.testing.assert_frame_equal(catalog.read_catalog(parquet, seed=1), halos)
    halos.set_index("halo_id").to_parquet(parquet)  # a named index comes back as a column, not dropped
    pd.testing.assert_frame_equal(catalog.read_catalog(parquet, seed=1), halos)


@pytest.mark.parametrize(
    "frame, column, words",
    [
        ({"M200m_Msun": [1e14, -2e14]}, "M200m_Msun", "finite and positive"),
        ({"M200m_Msun": [1e14, np.nan]}, "M200m_Msun", "finite and positive"),
        ({"mass": [1e14]}, "M200m_Msun", "missing column"),
        ({"M200m_Msun": [1e14, 2e14], "halo_id": [1, 1]}, "halo_id", "unique"),
        ({"M200m_Msun": [1e14], "axis_ratio_s": [1.5]}, "axis_ratio_s", "at most 1"),
    ],
)
def test_bad_user_catalog_names_file_and_field(tmp_path, frame, column, words):
    path = tmp_path / "bad.csv"
    pd.DataFrame(frame).to_csv(path, index=False)
    with pytest.raises(ValueError) as err:
        catalog.read_catalog(path)
    msg = str(err.value)
    assert str(path) in msg and column in msg and words in msg


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        catalog.read_catalog(tmp_path / "nope.csv")
    bad = tmp_path / "halos.txt"
    bad.write_text("M200m_Msun\n1e14\n")
    with pytest.raises(ValueError, match=r"halos.txt.*expected .csv or .parquet"):
        catalog.read_catalog(bad)


def _write(path, content):
    """A directory for None, raw bytes, CSV text, or a parquet table from a dict of columns."""
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        pd.DataFrame(content).to_parquet(path)


@pytest.mark.parametrize(
    "name, content, m_min, words",
    [
        # masses and m_min
        pytest.param(
            "h.csv",
            "M200m_Msun\n3e9\n1e9\n",
            None,
            ["M200m_Msun", "row 0", "3000000000.0", "without h"],
            id="mass-1e-5-too-small",
        ),
        pytest.param(
            "h.csv",
            "M200m_Msun\n2e14\n3e39\n",
            None,
            ["M200m_Msun", "row 1", "3e+39", "1e+17"],
            id="mass-1e25-too-large",
        ),
        pytest.param(
            "h.csv", "M200m_Msun\n2e4\n", None, ["M200m_Msun", "row 0", "Msun without h"], id="mass-in-1e10-Msun-per-h"
        ),
        pytest.param(
            "h.csv",
            "M200m_Msun\n2e13\n5e13\n",
            1e14,
            ["M200m_Msun", "catalog.m_min_Msun", "5e+13"],
            id="no-halo-above-m_min",
        ),
        pytest.param(
            "h.parquet",
            {"M200m_Msun": ["2e14", "3e14"]},
            None,
            ["M200m_Msun", "dtype", "row 0", "'2e14'"],
            id="masses-as-strings-in-parquet",
        ),
        pytest.param(
            "h.csv",
            "M200m_Msun\n2e14\n3e14 Msun\n",
            None,
            ["M200m_Msun", "row 1", "'3e14 Msun'"],
            id="text-in-csv-mass",
        ),
        # duplicates, ids and seeds
        pytest.param(
            "h.csv",
            "M200m_Msun,c200m\n2e14,5\n3e14,4\n2e14,5\n",
            None,
            ["M200m_Msun", "rows 0 and 2", "rejected"],
            id="duplicated-rows-without-halo_id",
        ),
        pytest.param(
            "h.csv",
            "halo_id,M200m_Msun\n7,2e14\n8,3e14\n7,4e14\n",
            None,
            ["halo_id", "rows 0 and 2", "unique"],
            id="duplicated-halo_id",
        ),
        pytest.param(
            "h.csv",
            "halo_id,M200m_Msun\n1.5,2e14\n2,3e14\n",
            None,
            ["halo_id", "row 0", "1.5"],
            id="fractional-halo_id",
        ),
        pytest.param(
            "h.csv", "halo_id,M200m_Msun\n1,2e14\n,3e14\n", None, ["halo_id", "row 1", "nan"], id="missing-halo_id"
        ),
        pytest.param(
            "h.csv", "halo_id,M200m_Msun\n1,2e14\n-3,3e14\n", None, ["halo_id", "row 1", "-3"], id="negative-halo_id"
        ),
        pytest.param(
            "h.parquet",
            {"halo_id": ["a1", "a2"], "M200m_Msun": [2e14, 3e14]},
            None,
            ["halo_id", "dtype", "row 0", "'a1'"],
            id="string-halo_id-in-parquet",
        ),
        pytest.param("h.csv", "M200m_Msun,seed\n2e14,5\n3e14,-1\n", None, ["seed", "row 1", "-1"], id="negative-seed"),
        pytest.param(
            "h.csv",
            "M200m_Msun,seed\n2e14,9223372036854775808\n",
            None,
            ["seed", "row 0", "2**63"],
            id="seed-beyond-int64",
        ),
        pytest.param(
            "h.csv", "M200m_Msun,rot_qw\n2e14,1\n", None, ["rot_qw", "rotation columns"], id="partial-rotation"
        ),
        pytest.param(
            "h.csv",
            "M200m_Msun,rot_qx,rot_qy,rot_qz,rot_qw\n2e14,0,0,0,1\n3e14,0,0,0,0\n",
            None,
            ["rot_qw", "row 1"],
            id="zero-quaternion",
        ),
        # files that cannot be read
        pytest.param("h.csv", b"", None, ["0 bytes", "CSV"], id="empty-csv"),
        pytest.param("h.parquet", b"", None, ["0 bytes", "parquet"], id="empty-parquet"),
        pytest.param("h.csv", b"M200m_Msun,name\n2e14,Caf\xe9\n", None, ["line 2", "UTF-8", "CSV"], id="non-utf8-csv"),
        pytest.param("h.csv", "M200m_Msun\n2e14\n3e14,4,5\n", None, ["cannot be read", "CSV"], id="ragged-csv"),
        pytest.param(
            "h.parquet", b"PAR1" + bytes(range(256)), None, ["cannot be read", "parquet"], id="corrupt-parquet"
        ),
        pytest.param("h.parquet", None, None, ["directory", "parquet"], id="directory"),
        pytest.param("h.txt", "M200m_Msun\n2e14\n", None, ["expected .csv or .parquet"], id="unknown-suffix"),
    ],
)
def test_bad_catalogue_content_rejected(tmp_path, name, content, m_min, words):
    # Every bad catalogue gets a ValueError naming the file, and the column and first bad row where there is one.
    path = tmp_path / name
    _write(path, content)
    with pytest.raises(ValueError) as err:
        catalog.read_catalog(path, m_min=m_min)
    msg = str(err.value)
    assert str(path) in msg and all(word in msg for word in words), msg
    if "cannot be read" in msg or "is not UTF-8" in msg:
        assert err.value.__cause__ is not None  # the reader's own error stays chained


def test_test_box_adds_flagged_massive_halos_and_leaves_the_main_box_alone():
    """The test box's halos come after the main box's, above their own mass cut, flagged test_only, from a
    stream of their own: the main box is the same with or without it, and the draw repeats to the byte."""
    main = catalog.draw_catalog(box_Mpc=300.0, seed=11)
    both = catalog.draw_catalog(box_Mpc=300.0, seed=11, test_box_Mpc=300.0, test_box_m_min=6e14)
    again = catalog.draw_catalog(box_Mpc=300.0, seed=11, test_box_Mpc=300.0, test_box_m_min=6e14)
    pd.testing.assert_frame_equal(both, again)
    assert list(both.columns) == catalog.COLUMNS + [catalog.TEST_ONLY]
    pd.testing.assert_frame_equal(both[~both[catalog.TEST_ONLY]].drop(columns=catalog.TEST_ONLY), main)
    extra = both[both[catalog.TEST_ONLY]]
    # a Poisson number around the mass function's expectation above 6e14 Msun in (300 Mpc)^3
    expected = catalog.expected_count(300.0**3, 6e14, 5e16)
    assert abs(len(extra) - expected) < 4 * np.sqrt(expected) and len(extra) > 0
    assert (extra["M200m_Msun"] >= 6e14).all()
    assert extra["halo_id"].tolist() == list(range(len(main), len(both)))
    assert both["halo_id"].is_unique and both["seed"].is_unique
    with pytest.raises(ValueError, match="test_box_m_min"):
        catalog.draw_catalog(box_Mpc=300.0, seed=11, test_box_Mpc=300.0, test_box_m_min=1e17)
