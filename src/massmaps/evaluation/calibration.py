"""Calibration of a sampled posterior: does its spread mean what it says?

Per map, :func:`map_statistics` reduces the samples and the truth to small summaries; the tables then
pool maps, with bootstrap intervals over maps (:func:`summarise`). The statistics:

* **Ranks.** The rank r of the truth among the n samples of a pixel (the number of samples below it,
  0..n) is uniform on {0, ..., n} for a calibrated posterior, whatever the posterior's shape. A
  dome-shaped rank histogram means samples too wide (over-dispersed), a U shape too narrow, a slope a
  bias. The same for the total mass of the map.
* **Coverage** of the central credible interval at level a, from the ranks: a pixel of rank r counts
  in proportion to the overlap of its rank cell [r/(n+1), (r+1)/(n+1)] with [(1-a)/2, (1+a)/2]. This
  is the interval between the sample quantiles at the plotting positions i/(n+1) (order statistic i of
  n sits at quantile i/(n+1) of the posterior), and its expected coverage is exactly a for a calibrated
  posterior at every a. numpy's default quantiles (positions (i-1)/(n-1)) make the interval too narrow:
  with 50 samples a calibrated 90% interval covers about 86.5%.
* **z-scores** z = (truth - sample mean) / sample std (ddof 1): mean and std. For a calibrated
  Gaussian posterior z follows a Student t with n - 1 degrees of freedom scaled by sqrt(1 + 1/n), whose
  std is sqrt((1 + 1/n)(n - 1)/(n - 3)) (1.031 for 50 samples), not 1. A negative mean z means samples
  too high.
* **TARP** (Lemos et al. 2023): per map, a reference point drawn uniformly in the box that holds the
  truths and the samples together (reference points from the truths alone bias the curve), and the
  fraction f of samples closer to it than the truth. For a calibrated posterior f is uniform on (0, 1):
  the expected coverage ECP(a) = P(f < a) follows the diagonal; a KS test and the area between the curve
  and the diagonal measure the departure. Computed on a low-dimensional summary of each map (the log of
  its radial profile in a few annuli), where distances mean something. One reference per map makes a
  single KS p-value depend on the draw as much as on the samples (on 63 clusters the same samples gave p
  from 0.003 to 0.88 over eight seeds), so the table draws ``TARP_DRAWS`` references per map, pools the
  ECP curve over them, averages the KS statistic, and reads its p-value from a randomisation test: under
  calibration the truth is exchangeable with the n samples, so letting a random one of the n + 1 play the
  truth, map by map, draws the statistic's null distribution (:func:`tarp_test`). With several views of a cluster
  the KS and chi-square tests take one view per cluster (views are not independent draws; a test over all
  of them would overstate the evidence), and are also given over every map.
* **Profile z-scores**: z of each annulus of TARP's summary, (truth - sample mean) / sample std, pooled over
  maps. They say where a TARP rejection comes from: pixel z-scores can be calibrated while the samples' pixel
  errors are less coherent than the true ones, and then the mean over an annulus varies too little between
  samples (annulus z std above the calibrated value) although no single pixel does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

#: Credible levels of the coverage table and figure.
LEVELS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.68, 0.7, 0.8, 0.9, 0.95, 0.99)
#: Annuli of the radial-profile summary on which TARP is computed.
SUMMARY_ANNULI = 6
#: TARP reference points per map, and randomisation draws of the null (see :func:`tarp_test`).
TARP_DRAWS = 100
TARP_NULL_DRAWS = 999
#: Levels at which the coverage goal (|coverage - level| <= 0.05) is judged.
JUDGED_LEVELS = tuple(a for a in LEVELS if 0.1 <= a <= 0.95)


def truth_ranks(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Rank of the truth among the samples: the number of samples below it, 0..n, per pixel.

    ``samples`` (n, ...) and ``truth`` (...). Ties (equal values) count half, so that a pixel where every
    sample equals the truth sits in the middle.
    """
    samples, truth = np.asarray(samples), np.asarray(truth)
    below = (samples < truth).sum(axis=0)
    ties = (samples == truth).sum(axis=0)
    return np.floor(below + 0.5 * ties).astype(np.int64)


def coverage_from_ranks(rank_counts: np.ndarray, levels: Sequence[float] = LEVELS) -> np.ndarray:
    """Coverage of the central intervals at ``levels`` from histograms of ranks ``rank_counts`` (..., n + 1).

    Returns (..., len(levels)); each rank cell counts in proportion to its overlap with the interval.
    """
    counts = np.asarray(rank_counts, dtype=np.float64)
    cells = counts.shape[-1]
    lo = np.arange(cells) / cells
    levels = np.asarray(levels, dtype=np.float64)
    a, b = (1 - levels[:, None]) / 2, (1 + levels[:, None]) / 2
    overlap = np.clip(np.minimum(lo + 1 / cells, b) - np.maximum(lo, a), 0, None) * cells  # (levels, cells)
    total = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ overlap.T) / total


def calibrated_z_std(n_samples: int) -> float:
    """Std of z = (truth - mean) / std for a calibrated Gaussian posterior drawn with n samples."""
    n = int(n_samples)
    return float(np.sqrt((1 + 1 / n) * (n - 1) / (n - 3))) if n > 3 else float("nan")


def summary_vector(maps: np.ndarray, pixel: float, n_annuli: int = SUMMARY_ANNULI) -> np.ndarray:
    """Low-dimensional summary of maps (..., H, W) for TARP: log10 of the mean in ``n_annuli`` annuli
    out to half the field of view (values floored at 1e-30)."""
    from .metrics import radial_bin_edges, radial_profiles

    ny = maps.shape[-1]
    edges = radial_bin_edges(ny * pixel / 2, ny * pixel / 2 / n_annuli)
    return np.log10(np.maximum(radial_profiles(maps, pixel, edges), 1e-30))


def summary_annuli(ny: int, nx: int, n_annuli: int = SUMMARY_ANNULI) -> np.ndarray:
    """The pixels each annulus of :func:`summary_vector` averages on a (ny, nx) map: (n_annuli, ny, nx)
    booleans, the innermost first (the pixel size cancels: the annuli are fractions of the half-width)."""
    from .metrics import annulus_index, radial_bin_edges

    edges = radial_bin_edges(ny / 2, ny / 2 / n_annuli)
    idx = annulus_index(ny, nx, 1.0, edges)
    return idx[None] == np.arange(len(edges) - 1)[:, None, None]


def profile_z(summaries: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(maps, d): z of the truth's summary against the samples' (mean, std with ddof 1), per component."""
    out = []
    for gen, truth in summaries:
        gen = np.asarray(gen, np.float64)
        std = gen.std(axis=0, ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(std > 0, (np.asarray(truth, np.float64) - gen.mean(axis=0)) / std, np.nan))
    return np.asarray(out)


def tarp_fraction(samples: np.ndarray, truth: np.ndarray, reference: np.ndarray) -> float:
    """TARP's f for one map: the fraction of samples (n, d) closer to ``reference`` (d,) than ``truth`` (d,)."""
    d_samples = np.linalg.norm(samples - reference, axis=-1)
    return float(np.mean(d_samples < np.linalg.norm(truth - reference)))


def tarp_references(summaries: Sequence[tuple[np.ndarray, np.ndarray]], seed: int, n_draws: int | None = None):
    """Reference points uniform in the box holding every truth and every sample summary: one per map (maps, d),
    or ``n_draws`` per map (n_draws, maps, d), whose first draw is the single one's."""
    every = np.concatenate([np.vstack([s, t[None]]) for s, t in summaries])
    lo, hi = every.min(axis=0), every.max(axis=0)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    shape = (len(summaries), every.shape[1]) if n_draws is None else (int(n_draws), len(summaries), every.shape[1])
    return lo + (hi - lo) * rng.random(shape)


def tarp_ranks(samples: np.ndarray, truth: np.ndarray, references: np.ndarray) -> np.ndarray:
    """(n + 1, R) counts: for the n samples (n, d) and the truth (d,) (last), and each of R references (R, d),
    how many of the other n points lie strictly closer to the reference. TARP's f of the truth is
    ``ranks[-1] / n``; of sample i, were it the truth, ``ranks[i] / n``."""
    points = np.vstack([np.asarray(samples, np.float64), np.asarray(truth, np.float64)[None]])
    dist = np.linalg.norm(points[:, None, :] - np.asarray(references, np.float64)[None], axis=-1)  # (n + 1, R)
    return (dist[None, :, :] < dist[:, None, :]).sum(axis=1)


def tarp_primitives(summaries: Sequence[tuple[np.ndarray, np.ndarray]], seed: int, n_draws: int = TARP_DRAWS):
    """Per map, TARP's f for ``n_draws`` reference draws (maps, n_draws) and the ranks behind them
    (maps, n + 1, n_draws) that :func:`tarp_test` takes."""
    refs = tarp_references(summaries, seed, n_draws)
    ranks = np.stack([tarp_ranks(g, t, refs[:, i]) for i, (g, t) in enumerate(summaries)])
    n = np.array([len(g) for g, _ in summaries], dtype=np.float64)
    return ranks[:, -1, :] / n[:, None], ranks


def _ks_uniform_stat(f: np.ndarray) -> np.ndarray:
    """KS distance to the uniform distribution of f (..., maps, R) over its maps axis: (..., R)."""
    x = np.sort(np.moveaxis(f, -2, -1), axis=-1)
    m = x.shape[-1]
    i = np.arange(1, m + 1)
    return np.maximum((i / m - x).max(axis=-1), (x - (i - 1) / m).max(axis=-1))


def tarp_test(ranks: np.ndarray, n_samples: int, seed: int, n_null: int = TARP_NULL_DRAWS) -> tuple[float, float]:
    """TARP's KS distance to uniform, averaged over the reference draws, and its randomisation p-value.

    ``ranks`` (maps, n + 1, R) from :func:`tarp_primitives`. Under calibration the truth of a map is
    exchangeable with its n samples; each null draw lets a random one of the n + 1 points of every map
    play the truth (with the same references), so p = (1 + #{null >= observed}) / (1 + n_null) is exact
    for any summary, number of samples and reference distribution."""
    ranks = np.asarray(ranks)
    m, n1, _ = ranks.shape
    observed = float(_ks_uniform_stat(ranks[:, -1, :] / n_samples).mean())
    rng = np.random.default_rng(np.random.SeedSequence([seed, 31]))
    null = np.empty(n_null)
    for start in range(0, n_null, 100):  # a hundred null draws at a time bound the memory
        pick = rng.integers(0, n1, size=(min(100, n_null - start), m))
        null[start : start + len(pick)] = _ks_uniform_stat(ranks[np.arange(m), pick] / n_samples).mean(axis=-1)
    return observed, float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_null))


def map_statistics(samples: np.ndarray, truth: np.ndarray) -> dict:
    """Per-map calibration primitives of one field: samples (n, H, W), truth (H, W).

    ``rank_counts`` (n + 1,): histogram of the pixel ranks; ``mass_rank``: rank of the truth's total among
    the samples' totals; ``z_sum``, ``z_sq``, ``z_n``: sums of z and z^2 over the pixels with std > 0.
    """
    samples = np.asarray(samples, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    n = samples.shape[0]
    ranks = truth_ranks(samples, truth)
    mean, std = samples.mean(axis=0), samples.std(axis=0, ddof=1)
    ok = std > 0
    z = (truth[ok] - mean[ok]) / std[ok]
    return {
        "rank_counts": np.bincount(ranks.ravel(), minlength=n + 1),
        "mass_rank": int(truth_ranks(samples.sum(axis=(-2, -1)), truth.sum())),
        "z_sum": float(z.sum()),
        "z_sq": float((z**2).sum()),
        "z_n": int(z.size),
    }


def ks_uniform(f: np.ndarray) -> tuple[float, float]:
    """KS statistic and p-value of values in (0, 1) against the uniform distribution."""
    from scipy import stats

    f = np.asarray(f, dtype=np.float64)
    if f.size == 0:
        return float("nan"), float("nan")
    res = stats.kstest(f, "uniform")
    return float(res.statistic), float(res.pvalue)


def ecp_curve(f: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """TARP's expected coverage P(f < a) at ``levels`` (f of any shape, pooled)."""
    f = np.sort(np.ravel(np.asarray(f, dtype=np.float64)))
    return np.searchsorted(f, np.asarray(levels, dtype=np.float64), side="left") / f.size


def _statistics(per_map: Mapping[str, np.ndarray], n_samples: int, levels: np.ndarray) -> dict[str, float]:
    """The pooled statistics of a set of maps (one bootstrap draw or all of them)."""
    counts = per_map["rank_counts"].sum(axis=0)
    cover = coverage_from_ranks(counts, levels)
    z_n = per_map["z_n"].sum()
    z_mean = per_map["z_sum"].sum() / z_n
    z_std = np.sqrt(max(per_map["z_sq"].sum() / z_n - z_mean**2, 0.0))
    grid = np.linspace(0, 1, 101)
    ecp = ecp_curve(per_map["tarp_f"], grid)  # pooled over the reference draws, if several
    out = {f"coverage_{a:g}": float(c) for a, c in zip(levels, cover)}
    # the tails: the truth below every sample, or above every one (calibrated: 1 / (n + 1) each)
    out["rank_bottom"], out["rank_top"] = float(counts[0] / counts.sum()), float(counts[-1] / counts.sum())
    judged = [abs(c - a) for a, c in zip(levels, cover) if 0.1 - 1e-9 <= a <= 0.95 + 1e-9]
    out.update(
        {
            "max_coverage_error": float(max(judged)) if judged else float("nan"),
            "z_mean": float(z_mean),
            "z_std": float(z_std),
            "tarp_mean_f": float(np.mean(per_map["tarp_f"])),
            "tarp_area": float(np.trapezoid(np.abs(ecp - grid), grid)),
            "mass_rank_mean": float(np.mean(per_map["mass_rank"]) / n_samples),
        }
    )
    # the posterior mean's bias, where the maps carry it: with the same bootstrap over clusters, so that a
    # goal such as |median mass error| <= 3% can be read against the spread of the clusters behind it
    if "mass_error" in per_map:
        out["mass_error_median"] = float(np.median(per_map["mass_error"]))
    if "b_large" in per_map:
        out["b_large"] = float(np.mean(per_map["b_large"]))
    # z of each annulus of TARP's summary: its std per annulus (from the centre out), and the largest
    if "profile_z" in per_map:
        pz = np.asarray(per_map["profile_z"], np.float64)
        stds = [float(np.nanstd(pz[:, k])) if np.isfinite(pz[:, k]).any() else float("nan") for k in range(pz.shape[1])]
        out.update({f"profile_z_std_{k + 1}": v for k, v in enumerate(stds)})
        out["profile_z_std_max"] = float(np.nanmax(stds)) if np.isfinite(stds).any() else float("nan")
    return out


def rank_chi2(counts: np.ndarray, groups: int = 10) -> tuple[float, float]:
    """Chi-square statistic and p-value of a rank histogram against uniform, ranks pooled into ``groups``
    cells of (nearly) equal width. Pixels of one map are correlated, so the p-value of pixel ranks is a
    measure of the departure rather than a calibrated test; for total-mass ranks it is a test."""
    from scipy import stats

    counts = np.asarray(counts, dtype=np.float64)
    cells = counts.size
    edges = np.linspace(0, cells, min(groups, cells) + 1).round().astype(int)
    pooled = np.add.reduceat(counts, edges[:-1])
    expected = pooled.sum() * np.diff(edges) / cells
    res = stats.chisquare(pooled, expected)
    return float(res.statistic), float(res.pvalue)


def summarise(
    per_map: Mapping[str, np.ndarray],
    n_samples: int,
    *,
    levels: Sequence[float] = LEVELS,
    n_boot: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per statistic: its value over all maps, and the 16th/84th percentiles of its bootstrap
    (``n_boot`` draws, seeded). The bootstrap resamples ``groups`` with replacement, taking every map of a
    drawn group (e.g. the clusters, whose views are correlated); by default each map is its own group.

    ``per_map``: the arrays of :func:`map_statistics` stacked over maps, ``tarp_f`` (maps,) or (maps, R)
    and, for the randomisation test of :func:`tarp_test`, ``tarp_ranks`` (without them: a KS test on the
    first reference draw's f), and optionally the
    posterior mean's ``mass_error`` and ``b_large`` per map (rows ``mass_error_median`` and ``b_large``, the
    mean over maps) and ``profile_z`` (maps, d) from :func:`profile_z` (rows ``profile_z_std_1`` .. ``_d``,
    annuli from the centre out, and ``profile_z_std_max``)."""
    levels = np.asarray(levels, dtype=np.float64)
    n_maps = len(per_map["z_n"])
    if n_maps == 0:
        return pd.DataFrame(columns=["statistic", "value", "lo", "hi", "n_maps", "n_groups"])
    per_map = dict(per_map)
    ranks = per_map.pop("tarp_ranks", None)
    full = _statistics(per_map, n_samples, levels)
    members = _group_members(np.arange(n_maps) if groups is None else np.asarray(groups))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 23]))
    draws = (
        np.concatenate([members[g] for g in pick]) for pick in rng.integers(0, len(members), (n_boot, len(members)))
    )
    boot = [_statistics({k: v[idx] for k, v in per_map.items()}, n_samples, levels) for idx in draws]
    rows = []
    for key, value in full.items():
        draws = np.array([b[key] for b in boot])
        rows.append(
            {
                "statistic": key,
                "value": value,
                "lo": float(np.percentile(draws, 16)),
                "hi": float(np.percentile(draws, 84)),
                "n_maps": n_maps,
                "n_groups": len(members),
            }
        )
    # the tests take one map per group (its first): views of one cluster are not independent draws, and a
    # test over every view would overstate the evidence; the same tests over every map are given too
    first = np.array([m[0] for m in members])
    if ranks is None:  # one reference per map: the KS test itself
        f = np.asarray(per_map["tarp_f"]).reshape(n_maps, -1)[:, 0]
        ks, p = ks_uniform(f[first])
        p_maps = ks_uniform(f)[1]
    else:
        ks, p = tarp_test(ranks[first], n_samples, seed)
        p_maps = tarp_test(ranks, n_samples, seed)[1]
    p_pix = rank_chi2(per_map["rank_counts"].sum(axis=0))[1]
    p_mass = rank_chi2(np.bincount(per_map["mass_rank"][first], minlength=n_samples + 1), groups=5)[1]
    p_mass_maps = rank_chi2(np.bincount(per_map["mass_rank"], minlength=n_samples + 1), groups=5)[1]
    for key, value in (
        ("tarp_ks", ks),
        ("tarp_ks_p", p),
        ("tarp_ks_p_all_maps", p_maps),
        ("pixel_rank_chi2_p", p_pix),
        ("mass_rank_chi2_p", p_mass),
        ("mass_rank_chi2_p_all_maps", p_mass_maps),
    ):
        rows.append(
            {"statistic": key, "value": value, "lo": np.nan, "hi": np.nan, "n_maps": n_maps, "n_groups": len(members)}
        )
    return pd.DataFrame(rows)


def _group_members(groups: np.ndarray) -> list[np.ndarray]:
    """Indices of the maps of each group, groups in sorted order."""
    _, inverse = np.unique(groups, return_inverse=True)
    return [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
