"""Calibration statistics on synthetic posteriors with known answers: exact draws pass, over- and
under-dispersed and shifted posteriors are caught, each with the right sign."""

import numpy as np
import pytest

from massmaps.evaluation import calibration

N_SAMPLES = 50


def posterior(kind: str, n_maps=200, npix=8, seed=0):
    """Per map: a true posterior N(mu, sigma^2) per pixel; the truth is one draw from it, and the
    'sampler' gives N_SAMPLES draws from a wider, narrower or shifted version (or the same one)."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(5.0, 10.0, (n_maps, npix, npix))
    sigma = rng.uniform(0.5, 1.5, (n_maps, npix, npix))
    truth = mu + sigma * rng.standard_normal(mu.shape)
    scale, shift = {"exact": (1.0, 0.0), "wide": (1.6, 0.0), "narrow": (0.6, 0.0), "high": (1.0, 0.5)}[kind]
    samples = (
        mu[:, None]
        + shift * sigma[:, None]
        + scale * sigma[:, None] * rng.standard_normal((n_maps, N_SAMPLES, npix, npix))
    )
    return samples, truth


def summaries_of(samples, truth, n_annuli=3):
    """TARP's (samples, truth) summaries per map, on pixels of 0.4."""
    return [
        (calibration.summary_vector(s, 0.4, n_annuli), calibration.summary_vector(t, 0.4, n_annuli))
        for s, t in zip(samples, truth)
    ]


def per_map(samples, truth, seed=0):
    stats = [calibration.map_statistics(s, t) for s, t in zip(samples, truth)]
    out = {k: np.array([s[k] for s in stats]) for k in stats[0]}
    summaries = summaries_of(samples, truth)
    out["tarp_f"], out["tarp_ranks"] = calibration.tarp_primitives(summaries, seed, n_draws=20)
    return out


def table(kind, n_boot=200):
    samples, truth = posterior(kind)
    t = calibration.summarise(per_map(samples, truth), N_SAMPLES, n_boot=n_boot)
    return t.set_index("statistic")["value"], t.set_index("statistic")


def test_exact_draws_are_calibrated():
    value, full = table("exact")
    for a in calibration.JUDGED_LEVELS:
        assert value[f"coverage_{a:g}"] == pytest.approx(a, abs=0.01), a
    assert value["max_coverage_error"] < 0.01
    assert value["z_std"] == pytest.approx(calibration.calibrated_z_std(N_SAMPLES), abs=0.01)
    assert abs(value["z_mean"]) < 0.02
    assert value["tarp_ks_p"] > 0.05 and value["mass_rank_chi2_p"] > 0.01
    assert 0.45 < value["mass_rank_mean"] < 0.55
    tail = 1 / (N_SAMPLES + 1)  # the truth below (or above) every one of the n samples
    assert value["rank_bottom"] == pytest.approx(tail, rel=0.1) and value["rank_top"] == pytest.approx(tail, rel=0.1)
    # the bootstrap interval holds the value and has a width
    row = full.loc["coverage_0.5"]
    assert row["lo"] < row["value"] < row["hi"]


@pytest.mark.parametrize("kind, sign", [("wide", +1), ("narrow", -1)])
def test_dispersion_is_caught_with_its_sign(kind, sign):
    """Samples too wide cover more than their level (z std below 1, dome-shaped ranks); too narrow, less."""
    value, _ = table(kind)
    for a in (0.3, 0.5, 0.68, 0.9):
        assert sign * (value[f"coverage_{a:g}"] - a) > 0.05, (kind, a)
    assert sign * (1 - value["z_std"]) > 0.2
    assert value["pixel_rank_chi2_p"] < 1e-6
    tail = 1 / (N_SAMPLES + 1)  # too wide: the truth rarely outside all samples; too narrow: often, both sides
    for side in ("rank_top", "rank_bottom"):
        assert sign * (tail - value[side]) > 0.5 * tail, (kind, side, value[side])


def test_shift_is_caught_with_its_sign():
    """Samples too high: mean z < 0 (the truth below the samples), low ranks of the total mass, TARP off."""
    value, _ = table("high")
    assert value["z_mean"] < -0.3
    assert value["rank_bottom"] > 2 * value["rank_top"]  # the truth below every sample more often
    assert value["mass_rank_mean"] < 0.35
    assert value["mass_rank_chi2_p"] < 1e-3
    assert value["tarp_ks_p"] < 0.05


def test_profile_z_catches_errors_more_coherent_than_the_samples():
    """Pixels calibrated, annulus means not: the truth's error is one offset over the whole map, the samples'
    errors independent per pixel, with the same pixel variance. Exact draws give the calibrated std."""
    calibrated = calibration.calibrated_z_std(N_SAMPLES)
    samples, truth = posterior("exact", n_maps=300)
    z = calibration.profile_z(summaries_of(samples, truth))
    assert z.shape == (300, 3)
    np.testing.assert_allclose(np.std(z, axis=0), calibrated, rtol=0.12)
    rng = np.random.default_rng(5)
    mu = rng.uniform(5.0, 10.0, (300, 8, 8))
    truth = mu + rng.standard_normal((300, 1, 1))  # one offset per map: fully coherent, unit pixel variance
    samples = mu[:, None] + rng.standard_normal((300, N_SAMPLES, 8, 8))
    stats = [calibration.map_statistics(s, t) for s, t in zip(samples, truth)]
    prims = {k: np.array([s[k] for s in stats]) for k in stats[0]}
    summaries = summaries_of(samples, truth)
    prims["tarp_f"], prims["tarp_ranks"] = calibration.tarp_primitives(summaries, 0, n_draws=5)
    prims["profile_z"] = calibration.profile_z(summaries)
    value = calibration.summarise(prims, N_SAMPLES, n_boot=50).set_index("statistic")["value"]
    assert value["z_std"] == pytest.approx(calibrated, abs=0.03)  # every pixel calibrated
    assert value["profile_z_std_max"] > 2.5  # the annulus means far too certain
    assert value["profile_z_std_max"] == max(value[f"profile_z_std_{k}"] for k in (1, 2, 3))


def test_tarp_fraction_equals_the_truths_rank():
    """f of the truth from the ranks is tarp_fraction's, for each reference draw."""
    samples, truth = posterior("narrow", n_maps=5, npix=4)
    summaries = summaries_of(samples, truth, n_annuli=2)
    f, ranks = calibration.tarp_primitives(summaries, seed=3, n_draws=4)
    refs = calibration.tarp_references(summaries, 3, n_draws=4)
    direct = [[calibration.tarp_fraction(g, t, refs[r, i]) for r in range(4)] for i, (g, t) in enumerate(summaries)]
    np.testing.assert_allclose(f, direct)
    assert ranks.shape == (5, N_SAMPLES + 1, 4)
    np.testing.assert_allclose(refs[0], calibration.tarp_references(summaries, 3))  # the first draw is the single one


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tarp_test_is_uniform_for_exchangeable_truths(seed):
    """The randomisation p of exact draws is not small at any of these seeds; of too-narrow draws it is."""
    samples, truth = posterior("exact", n_maps=60, npix=4, seed=seed)
    summaries = summaries_of(samples, truth, n_annuli=2)
    _, ranks = calibration.tarp_primitives(summaries, seed=seed, n_draws=20)
    stat, p = calibration.tarp_test(ranks, N_SAMPLES, seed=seed, n_null=199)
    assert 0 < stat < 1 and p > 0.05
    narrow, t2 = posterior("narrow", n_maps=60, npix=4, seed=seed)
    summaries = summaries_of(narrow, t2, n_annuli=2)
    _, ranks = calibration.tarp_primitives(summaries, seed=seed, n_draws=20)
    assert calibration.tarp_test(ranks, N_SAMPLES, seed=seed, n_null=199)[1] < 0.01


def test_numpy_default_quantiles_under_cover_with_50_samples():
    """Why coverage is read from ranks: the 5%-95% interval between numpy's default (linear) sample
    quantiles of 50 draws covers about 0.865 of a calibrated posterior, the rank rule 0.90."""
    samples, truth = posterior("exact", n_maps=400, npix=4, seed=3)
    lo, hi = np.quantile(samples, [0.05, 0.95], axis=1)
    numpy_cover = np.mean((truth >= lo) & (truth <= hi))
    assert numpy_cover == pytest.approx(0.865, abs=0.01)
    counts = sum(calibration.map_statistics(s, t)["rank_counts"] for s, t in zip(samples, truth))
    assert calibration.coverage_from_ranks(counts, [0.9])[0] == pytest.approx(0.90, abs=0.01)


def test_coverage_from_ranks_exact_cases():
    n = 4  # ranks 0..4, cells of width 1/5
    uniform = np.ones(n + 1)
    np.testing.assert_allclose(calibration.coverage_from_ranks(uniform, [0.2, 0.5, 1.0]), [0.2, 0.5, 1.0])
    middle = np.eye(n + 1)[2]  # every truth in the middle cell: covered by any interval wider than the cell
    np.testing.assert_allclose(calibration.coverage_from_ranks(middle, [0.1, 0.2, 0.6]), [0.5, 1.0, 1.0])
    assert calibration.truth_ranks(np.array([1.0, 2.0, 3.0]), np.array(2.0)) == 1  # a tie counts half
    assert calibration.calibrated_z_std(50) == pytest.approx(1.031, abs=1e-3)


def test_bootstrap_resamples_groups():
    """Views of one cluster are correlated: resampling clusters gives wider intervals than resampling
    maps when the maps of a cluster repeat one another."""
    samples, truth = posterior("exact", n_maps=20)
    prims = per_map(np.repeat(samples, 5, axis=0), np.repeat(truth, 5, axis=0))
    by_map = calibration.summarise(prims, N_SAMPLES, n_boot=300).set_index("statistic")
    by_cluster = calibration.summarise(prims, N_SAMPLES, n_boot=300, groups=np.repeat(np.arange(20), 5))
    by_cluster = by_cluster.set_index("statistic")
    width = lambda t: t.loc["z_mean", "hi"] - t.loc["z_mean", "lo"]  # noqa: E731
    assert width(by_cluster) > 1.8 * width(by_map)
    assert by_cluster.loc["z_mean", "n_groups"] == 20 and by_map.loc["z_mean", "n_groups"] == 100


def test_bias_rows_bootstrap_over_clusters():
    """The posterior mean's median mass error and large-scale b come with a bootstrap over clusters: its
    range holds the clusters' true median error, narrows as 1/sqrt(clusters), and views of one cluster
    (which repeat its error) add nothing to it."""
    from scipy import stats

    samples, truth = posterior("exact", n_maps=6)
    base = per_map(samples, truth)

    def rows(n_clusters, views):
        # one error per cluster, at the quantiles of N(0.05, 0.1^2): median 0.05 whatever the count
        err = 0.05 + 0.10 * stats.norm.ppf((np.arange(n_clusters) + 0.5) / n_clusters)
        err = np.repeat(np.random.default_rng(n_clusters).permutation(err), views)
        prims = {k: np.resize(v, (n_clusters * views,) + v.shape[1:]) for k, v in base.items()}
        prims["mass_error"], prims["b_large"] = err, 1.0 + err
        t = calibration.summarise(prims, N_SAMPLES, n_boot=400, groups=np.repeat(np.arange(n_clusters), views))
        return t.set_index("statistic"), err

    few, err = rows(15, 6)
    assert few.loc["mass_error_median", "value"] == pytest.approx(np.median(err))
    assert few.loc["b_large", "value"] == pytest.approx(1.0 + err.mean())
    assert few.loc["mass_error_median", "n_groups"] == 15
    width = {}
    for n_clusters, views in ((15, 6), (15, 1), (240, 1)):
        lo, hi = rows(n_clusters, views)[0].loc["mass_error_median", ["lo", "hi"]]
        assert lo < 0.05 < hi
        width[n_clusters, views] = hi - lo
    assert width[15, 6] == pytest.approx(width[15, 1], rel=0.35)  # six views of a cluster: one draw
    assert 2.5 < width[15, 1] / width[240, 1] < 6.5  # sqrt(16) = 4


def test_heavy_tailed_calibrated_posterior_has_uniform_ranks_and_large_z_std():
    """What observed inputs give in the outskirts: a pixel's posterior is mostly a smooth floor, and with a
    small probability a satellite 30 times brighter. Exact draws from such a posterior are calibrated (the
    ranks are uniform and every central interval covers its level), yet the z-scores have a std far above 1:
    the rare pixel whose truth holds the satellite sits many sample stds above a sample mean that holds
    none. For such posteriors the coverage and the rank tails, not the z std, measure calibration."""
    rng = np.random.default_rng(5)
    n_maps, npix, p_sat = 300, 8, 0.02

    def draw(shape):
        floor = rng.lognormal(0.0, 0.1, shape)
        return floor + 30.0 * (rng.random(shape) < p_sat)

    truth = draw((n_maps, npix, npix))
    samples = draw((n_maps, 20, npix, npix))  # 20 samples, as the observing ablation draws
    stats = [calibration.map_statistics(s, t) for s, t in zip(samples, truth)]
    prims = {k: np.array([s[k] for s in stats]) for k in stats[0]}
    prims["tarp_f"] = rng.random(n_maps)
    value = calibration.summarise(prims, 20, n_boot=50).set_index("statistic")["value"]
    assert value["max_coverage_error"] < 0.02
    assert value["rank_top"] == pytest.approx(1 / 21, rel=0.15)
    assert value["z_std"] > 3.0
