"""The conformal recalibration on synthetic posteriors with known answers: a calibrated posterior keeps its
levels, a too wide or too narrow one is corrected to nominal coverage on new maps, with the level moving
the right way; the intervals are the ones the coverage counts."""

import numpy as np
import pytest
from test_calibration import N_SAMPLES, posterior

from massmaps.evaluation import calibration, conformal


def counts(kind, seed):
    samples, truth = posterior(kind, n_maps=120, seed=seed)
    return conformal.validation_rank_counts(samples, truth)


@pytest.mark.parametrize("kind", ["exact", "wide", "narrow", "high"])
def test_correction_fitted_on_validation_gives_nominal_coverage_on_test(kind):
    val, test = counts(kind, seed=1), counts(kind, seed=2)  # independent maps, same posterior error
    table = conformal.conformal_table(test, np.arange(len(test)), val.sum(axis=0), n_boot=100).set_index("level")
    judged = [f"{a:g}" for a in calibration.JUDGED_LEVELS]
    assert np.abs(table.loc[judged, "after"].to_numpy() - np.array(calibration.JUDGED_LEVELS)).max() < 0.02
    assert table.at["max_error", "after"] < 0.02
    level, used = 0.68, table.at["0.68", "corrected_level"]
    if kind == "exact":
        assert table.at["max_error", "before"] < 0.02 and used == pytest.approx(level, abs=0.02)
    elif kind == "wide":  # raw intervals cover too much: the corrected one is a lower raw level
        assert table.at["0.68", "before"] > 0.75 and used < level - 0.05
    elif kind == "narrow":
        assert table.at["0.68", "before"] < 0.6 and used > level + 0.05
    else:  # a shift is not a width error, but the corrected level widens the interval to cover it
        assert table.at["0.68", "before"] < level - 0.05 and used > level
    row = table.loc["0.5"]
    assert row["after_lo"] <= row["after"] <= row["after_hi"] and row["after_hi"] > row["after_lo"]


def test_fit_levels_inverts_the_validation_coverage():
    val = counts("wide", seed=3).sum(axis=0)
    levels = np.array(calibration.LEVELS)
    corrected = conformal.fit_levels(val, levels)
    assert np.all(np.diff(corrected) >= 0)
    np.testing.assert_allclose(calibration.coverage_from_ranks(val, corrected), levels, atol=1e-5)
    with pytest.raises(ValueError, match="rank histogram"):
        conformal.fit_levels(np.zeros(N_SAMPLES + 1))


def test_interval_covers_what_the_ranks_count():
    """The interval of conformal.interval at a level covers the fraction of pixels that coverage_from_ranks
    reads from the same pixels' ranks (up to the cells the interval cuts)."""
    samples, truth = posterior("exact", n_maps=60, seed=4)
    for level in (0.5, 0.9):
        lo, hi = conformal.interval(samples.transpose(1, 0, 2, 3), level)
        inside = np.mean((truth >= lo) & (truth <= hi))
        from_ranks = calibration.coverage_from_ranks(
            conformal.validation_rank_counts(samples, truth).sum(axis=0), [level]
        )
        assert inside == pytest.approx(from_ranks[0], abs=0.02)
        assert inside == pytest.approx(level, abs=0.03)


def test_tables_and_markdown_per_field_and_bin():
    test = {"gas": counts("wide", 5), "dm": counts("narrow", 6)}
    val = {"gas": counts("wide", 7), "dm": counts("narrow", 8)}
    bins = np.array(np.where(np.arange(120) < 80, "low", "high"), dtype=np.dtypes.StringDType())  # as zarr gives
    table = conformal.conformal_tables(test, val, bins, np.arange(120) // 2, n_boot=50)
    assert set(table["mass_bin"]) == {"all", "low", "high"} and set(table["field"]) == {"gas", "dm"}
    md = conformal.conformal_markdown(table)
    assert "| all | gas |" in md and "| high | dm |" in md and "120 validation maps" in md
