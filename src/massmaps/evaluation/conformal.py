"""Conformal recalibration of the posterior's credible intervals, fitted on the validation split.

The raw posterior's central interval at level a covers the truth in a fraction c(a) of the pixels, read
from the histogram of the truth's rank among the samples (:func:`massmaps.evaluation.calibration.coverage_from_ranks`).
On validation maps, which the network never trained on, :func:`fit_levels` finds for every nominal level
a the level a' whose raw interval covers a of the validation pixels, c_val(a') = a (c is continuous and
non-decreasing in a', so a' is found by bisection). On test maps the interval at a' is then the
corrected interval at a, and :func:`coverage_after` reads its coverage, c_test(a'), from the test ranks.

This is split conformal prediction with the truth's rank among the samples as the conformity score: a'
is the quantile of the validation ranks' centrality. Its guarantee assumes exchangeable units; the
pixels of a map are correlated and the maps of a cluster too, so the pooled pixel coverage it delivers is
approximate (no finite-sample correction is applied), and it is reported beside the raw numbers, never
instead of them. The corrected interval at a of a new map is the samples' raw interval at a'
(:func:`interval`); the per-field table of a -> a' is what a user applies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from . import calibration


def fit_levels(rank_counts: np.ndarray, levels: Sequence[float] = calibration.LEVELS, tol: float = 1e-7) -> np.ndarray:
    """Levels a' with coverage_from_ranks(rank_counts, a') = a for each a in ``levels``.

    ``rank_counts`` (n + 1,): the validation pixels' rank histogram, pooled. Where several a' give the
    same coverage (empty rank cells) the smallest is returned; a level no interval reaches gives 1.
    """
    counts = np.asarray(rank_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.sum() <= 0:
        raise ValueError(f"fit_levels: expected a non-empty rank histogram (n + 1,), got shape {counts.shape}")
    out = []
    for a in np.asarray(levels, dtype=np.float64):
        lo, hi = 0.0, 1.0
        while hi - lo > tol:
            mid = 0.5 * (lo + hi)
            if calibration.coverage_from_ranks(counts, [mid])[0] < a:
                lo = mid
            else:
                hi = mid
        out.append(hi)
    return np.array(out)


def coverage_after(rank_counts: np.ndarray, corrected: Sequence[float]) -> np.ndarray:
    """Coverage of the corrected intervals: the raw coverage at the corrected levels a'."""
    return calibration.coverage_from_ranks(rank_counts, np.asarray(corrected, dtype=np.float64))


def interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The central interval of ``samples`` (n, ...) at ``level``, between the sample quantiles at the
    plotting positions i/(n+1) that the coverage statistics assume (linear between order statistics;
    beyond the smallest or largest sample the interval stops there)."""
    x = np.sort(np.asarray(samples, dtype=np.float64), axis=0)
    n = x.shape[0]
    positions = np.arange(1, n + 1) / (n + 1)

    def quantile(p: float) -> np.ndarray:
        j = np.interp(p, positions, np.arange(n))
        i0 = int(np.floor(j))
        i1 = min(i0 + 1, n - 1)
        w = j - i0
        return (1 - w) * x[i0] + w * x[i1]

    return quantile((1 - level) / 2), quantile((1 + level) / 2)


def _max_error(levels: np.ndarray, coverage: np.ndarray) -> float:
    judged = (levels >= 0.1 - 1e-9) & (levels <= 0.95 + 1e-9)
    return float(np.max(np.abs(coverage[judged] - levels[judged])))


def conformal_table(
    test_counts: np.ndarray,
    groups: np.ndarray,
    val_counts: np.ndarray,
    *,
    levels: Sequence[float] = calibration.LEVELS,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Coverage before and after the correction fitted on ``val_counts`` (validation pixels' rank
    histogram, pooled), on test maps ``test_counts`` (maps, n + 1), with the 16th-84th percentiles of a
    bootstrap over ``groups`` (the maps' clusters). One row per level, plus a row ``max_error`` (the
    largest |coverage - level| over the judged levels 0.1-0.95)."""
    levels = np.asarray(levels, dtype=np.float64)
    corrected = fit_levels(val_counts, levels)
    test_counts = np.asarray(test_counts, dtype=np.float64)

    def both(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pooled = counts.sum(axis=0)
        return calibration.coverage_from_ranks(pooled, levels), coverage_after(pooled, corrected)

    before, after = both(test_counts)
    members = calibration._group_members(np.asarray(groups))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 29]))
    boot_b, boot_a = [], []
    for pick in rng.integers(0, len(members), (n_boot, len(members))):
        b, a = both(test_counts[np.concatenate([members[g] for g in pick])])
        boot_b.append(np.append(b, _max_error(levels, b)))
        boot_a.append(np.append(a, _max_error(levels, a)))
    boot_b, boot_a = np.array(boot_b), np.array(boot_a)
    val_cov = calibration.coverage_from_ranks(np.asarray(val_counts, dtype=np.float64), levels)
    rows = []
    labels = [f"{a:g}" for a in levels] + ["max_error"]
    values_b = np.append(before, _max_error(levels, before))
    values_a = np.append(after, _max_error(levels, after))
    for i, label in enumerate(labels):
        rows.append(
            {
                "level": label,
                "corrected_level": float(corrected[i]) if i < len(levels) else np.nan,
                "validation_before": float(val_cov[i]) if i < len(levels) else _max_error(levels, val_cov),
                "before": float(values_b[i]),
                "before_lo": float(np.percentile(boot_b[:, i], 16)),
                "before_hi": float(np.percentile(boot_b[:, i], 84)),
                "after": float(values_a[i]),
                "after_lo": float(np.percentile(boot_a[:, i], 16)),
                "after_hi": float(np.percentile(boot_a[:, i], 84)),
                "n_maps": len(test_counts),
                "n_groups": len(members),
            }
        )
    return pd.DataFrame(rows)


def validation_rank_counts(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-map pixel rank histograms of one field: samples (maps, n, H, W), truth (maps, H, W) ->
    (maps, n + 1)."""
    samples, truth = np.asarray(samples), np.asarray(truth)
    n = samples.shape[1]
    return np.stack(
        [np.bincount(calibration.truth_ranks(s, t).ravel(), minlength=n + 1) for s, t in zip(samples, truth)]
    )


def conformal_tables(
    test: Mapping[str, np.ndarray],
    val_counts: Mapping[str, np.ndarray],
    mass_bins: np.ndarray,
    groups: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`conformal_table` per field (one correction per field, fitted on all validation maps) and per
    test mass bin that holds maps (and "all", which also counts maps outside every bin). ``test``: field ->
    (maps, n + 1) rank counts of the test maps;
    ``val_counts``: field -> (maps, n + 1) of the validation maps."""
    rows = []
    mass_bins = np.array([str(b) for b in mass_bins], dtype=object)  # e.g. numpy's StringDType from zarr
    for field, counts in test.items():
        pooled_val = np.asarray(val_counts[field]).sum(axis=0)
        for mb in ["all", *sorted(set(mass_bins) - {""})]:  # "": outside every bin, as in the calibration table
            sel = np.ones(len(mass_bins), bool) if mb == "all" else mass_bins == mb
            table = conformal_table(counts[sel], groups[sel], pooled_val, n_boot=n_boot, seed=seed)
            rows.append(table.assign(mass_bin=mb, field=field, n_validation_maps=len(val_counts[field])))
    out = pd.concat(rows, ignore_index=True)
    first = ["mass_bin", "field", "level", "corrected_level"]
    return out[first + [c for c in out.columns if c not in first]]


def conformal_markdown(table: pd.DataFrame) -> str:
    """Coverage of the raw and the corrected intervals per field and mass bin at a few levels, with the
    largest error over 0.1-0.95 and the corrected level of the 68% and 90% intervals."""
    shown = ["0.5", "0.68", "0.9", "0.95", "max_error"]
    head = "| cluster | map | " + " | ".join(
        f"{'max err' if s == 'max_error' else f'cov {float(s):.0%}'} raw -> corrected" for s in shown
    )
    lines = [
        head + " | level used for 68% / 90% |",
        "|" + "---|" * (3 + len(shown)),
    ]
    for (mb, fld), sub in table.groupby(["mass_bin", "field"], sort=False):
        by = sub.set_index("level")
        cells = [f"{by.at[s, 'before']:.3f} -> {by.at[s, 'after']:.3f}" for s in shown]
        used = f"{by.at['0.68', 'corrected_level']:.3f} / {by.at['0.9', 'corrected_level']:.3f}"
        lines.append(f"| {mb} | {fld} | " + " | ".join(cells) + f" | {used} |")
    n_val = int(table["n_validation_maps"].iloc[0])
    return (
        "Conformal recalibration of the pixel credible intervals (fitted on "
        f"{n_val} validation maps; raw -> corrected coverage on the test maps)\n\n" + "\n".join(lines) + "\n"
    )
