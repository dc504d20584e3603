"""Every figure of the paper from the pipeline's files: read stores and tables, call
:mod:`massmaps.evaluation.plotting`.

One function per figure, ``figN_*(inputs, outputs, options)``: ``inputs`` maps names to file paths,
``outputs`` lists the files to write (one per format) and ``options`` is the ``figures`` config block.
No metric is computed here: Figs 5-9 read the evaluation store written by
:func:`massmaps.evaluation.evaluate.evaluate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import files, store
from . import calibration, plotting
from .evaluate import INPUTS, TARGETS


def _save(fig, outputs: Sequence[str], options: Mapping) -> None:
    plotting.save_figure(fig, outputs, dpi=int(options.get("dpi", 150)))


def _spread_by_mass(masses: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` entries spread evenly in rank of mass, lowest to highest."""
    order = np.argsort(masses, kind="stable")
    n = min(n, len(order))
    return order[np.unique(np.round(np.linspace(0, len(order) - 1, n)).astype(int))]


def fig2_example_maps(inputs: Mapping, outputs: Sequence[str], options: Mapping) -> None:
    """Fig. 2: the four maps of a few test clusters across the mass range (from the dataset)."""
    ds = store.open_store(inputs["dataset"])
    splits = files.read_table(inputs["splits"])
    rows = splits[(splits["split"] == "test") & splits["in_eval_range"]]
    if rows.empty:
        rows = splits
    # one projection per cluster
    rows = rows.drop_duplicates("halo_id")
    pick = rows.iloc[_spread_by_mass(rows["M200m_Msun"].to_numpy(), int(options.get("n_example_maps", 2)))]
    fields = ["tsz", "xray", "gas", "dm"]
    sub = ds.isel(sightline=pick["index"].to_numpy()).sel(field=fields)
    fig = plotting.figure2_example_maps(
        sub["maps"].values,
        fields,
        [str(u) for u in sub["units"].values],
        ds["x"].values,
        ds["y"].values,
        pick["M200m_Msun"].to_numpy(),
    )
    _save(fig, outputs, options)


def fig3_diffusion(inputs: Mapping, outputs: Sequence[str], options: Mapping) -> None:
    """Fig. 3: forward and reverse SDE of the trained model (from the trajectory store)."""
    t = store.open_store(inputs["trajectory"])
    fig = plotting.figure3_diffusion(
        t["forward"].values, t["reverse"].values, t["sigma"].values, [str(f) for f in t["field"].values]
    )
    _save(fig, outputs, options)


def fig4_reconstructions(inputs: Mapping, outputs: Sequence[str], options: Mapping) -> None:
    """Fig. 4: inputs, truth and posterior means of test clusters across the mass range."""
    smp = store.open_store(inputs["samples"])
    ds = store.open_store(inputs["dataset"])
    masses = smp["M200m_Msun"].values
    # one projection per cluster, spread in mass
    _, first = np.unique(smp["halo_id"].values, return_index=True)
    pick = first[_spread_by_mass(masses[first], int(options.get("n_reconstructions", 4)))]
    pos = pd.Index(ds["sightline_id"].values).get_indexer(smp["sightline_id"].values[pick])
    maps = ds["maps"].isel(sightline=pos)
    fig = plotting.figure4_reconstructions(
        maps.sel(field=list(INPUTS)).values,
        maps.sel(field=list(TARGETS)).values,
        smp["mean"].isel(sightline=pick).sel(field=list(TARGETS)).values,
        masses[pick],
        ds["x"].values,
        ds["y"].values,
        [str(ds["units"].sel(field=f).values) for f in INPUTS],
    )
    _save(fig, outputs, options)


def _by_bin(ev, var: str, options: Mapping, select: Mapping | None = None) -> dict:
    """(mass_bin, field) -> (maps, ...) arrays of one evaluation variable, mass bins in table order."""
    from .tables import _bins, _select

    out = {}
    for mb in _bins(ev, include_all=bool(options.get("include_all_bin", False))):
        sub = _select(ev, mb)
        for f in TARGETS:
            out[mb, f] = sub[var].sel(field=f, **(select or {})).values
    return out


def fig5_convergence(inputs: Mapping, outputs: Sequence[str], options: Mapping) -> None:
    from . import metrics

    ev = store.open_store(inputs["evaluation"]).load()
    ratio = {f: ev["V_ratio"].sel(field=f).values for f in TARGETS}
    thr = float(ev.attrs["convergence_threshold"])
    converged = {f: metrics.converged_n(r.mean(axis=0), thr) for f, r in ratio.items()}
    _save(plotting.figure5_convergence(ev["n_samples"].values, ratio, thr, converged), outputs, options)


def fig6_zscores(inputs: Mapping, outputs: Sequence[str], options: Mapping) -> None:
    ev = store.open_store(inputs["evaluation"]).load()
    density = {f: ev["z_density"].sel(field=f).values for f in TARGETS}
    within = {f: tuple(ev["z_fraction"].sel(field=f).values) for f in TARGETS}
    _save(plotting.figure6_zscores(ev["z"].values, density, within), outputs, options)


def _n_samples(ev) -> int:
    """Posterior samples per map of an evaluation store."""
    return int(ev.attrs["n_posterior_samples"])


def fig7_profiles(inputs: Mapping, outputs: Sequence[str], options: Mapping) -> None:
    from . import metrics

    ev = store.open_store(inputs["evaluation"]).load()
    sim, gen = _by_bin(ev, "profile_sim", options), _by_bin(ev, "profile_gen", options)
    errors = {key: metrics.percentiles(v) for key, v in _by_bin(ev, "mass_error", options).items()}
    _save(plotting.figure7_profiles(ev["radius"].values, sim, gen, errors, _n_samples(ev)), outputs, options)


def fig8_bias(inputs: Mapping, outputs: Sequence[str], options: Mapping) -> None:
    ev = store.open_store(inputs["evaluation"]).load()
    b = _by_bin(ev, "b", options)
    _save(plotting.figure8_bias(ev["k"].values, float(ev.attrs["k_split"]), b, _n_samples(ev)), outputs, options)


def fig9_correlation(inputs: Mapping, outputs: Sequence[str], options: Mapping) -> None:
    ev = store.open_store(inputs["evaluation"]).load()
    r = _by_bin(ev, "r", options)
    base = {(mb, f, i): v for i in INPUTS for (mb, f), v in _by_bin(ev, "r_input", options, {"input": i}).items()}
    _save(
        plotting.figure9_correlation(ev["k"].values, float(ev.attrs["k_split"]), r, base, _n_samples(ev)),
        outputs,
        options,
    )


def fig10_calibration(inputs: Mapping, outputs: Sequence[str], options: Mapping) -> None:
    """Calibration: coverage against level, pixel rank histograms, TARP (from the calibration tables)."""
    from .calibration import LEVELS

    ev = store.open_store(inputs["evaluation"]).load()
    table = pd.read_csv(inputs["calibration"])
    per_map = pd.read_csv(inputs["calibration_maps"])
    levels = np.array(LEVELS)
    # z std of each annulus of TARP's summary, where the table has it (tables from before it do not)
    n_annuli = ev.sizes.get("annulus", 0)
    keys = [f"profile_z_std_{k + 1}" for k in range(n_annuli)]
    with_profile = n_annuli > 0 and set(keys) <= set(table["statistic"])
    coverage, tarp_f, profile_z = {}, {}, {}
    for (mb, f), g in table.groupby(["mass_bin", "field"], sort=False):
        g = g.set_index("statistic")
        rows = g.loc[[f"coverage_{a:g}" for a in levels]]
        coverage[mb, f] = tuple(rows[c].to_numpy() for c in ("value", "lo", "hi"))
        if with_profile:
            profile_z[mb, f] = tuple(g.loc[keys, c].to_numpy() for c in ("value", "lo", "hi"))
        maps = per_map[per_map["field"] == f]
        tarp_f[mb, f] = (maps if mb == "all" else maps[maps["mass_bin"] == mb])["tarp_f"].to_numpy()
    ranks = {f: ev["rank_counts"].sel(field=f).sum("sightline").values for f in TARGETS}
    fig = plotting.figure10_calibration(
        levels,
        coverage,
        ranks,
        tarp_f,
        profile_z=profile_z or None,
        # the summary's annuli reach half the field, as the radial profiles do
        annulus_edges_Mpc=np.linspace(0, float(ev["radius_hi"].max()), n_annuli + 1) if profile_z else None,
        calibrated_z_std=calibration.calibrated_z_std(_n_samples(ev)),
    )
    _save(fig, outputs, options)


def fig1_mass_function(inputs: Mapping, outputs: Sequence[str], options: Mapping, config: Mapping) -> None:
    """Fig. 1: clusters and images per 0.1 dex, with the mass function's expectation for a drawn catalogue
    (``config``: the catalog, sightlines and cosmology blocks)."""
    from ..cosmology import CosmologyParams
    from ..data import catalog

    cat_cfg, sl_cfg = config["catalog"], config["sightlines"]
    halos = files.read_table(inputs["catalog"])
    halos = halos[~catalog.test_only_mask(halos)]  # the test box is not the box the expectation is for
    plan = files.read_table(inputs["plan"])
    expected = None
    if cat_cfg["source"] == "hmf":
        expected = catalog.expected_counts_per_bin(
            cat_cfg["box_Mpc"] ** 3,
            halos["log10_M200m"].max(),
            log10_min=sl_cfg["log10_min"],
            bin_dex=sl_cfg["bin_dex"],
            n_total=cat_cfg["n_halos"],
            m_max=cat_cfg["m_max_Msun"],
            params=CosmologyParams(**config["cosmology"]),
            model=cat_cfg["mass_function"],
        )
    fig = plotting.figure1_mass_function(
        halos,
        plan,
        expected_per_bin=expected,
        target_per_bin=sl_cfg["target_per_bin"],
        bin_dex=sl_cfg["bin_dex"],
        log10_min=sl_cfg["log10_min"],
    )
    _save(fig, outputs, options)


def make_figure(
    name: str, inputs: Mapping, outputs: Sequence[str], options: Mapping, config: Mapping | None = None
) -> None:
    """Draw figure ``name`` (a key of :data:`massmaps.evaluation.figure_specs.FIGURES`, and the name of
    its drawing function here) from ``inputs`` into ``outputs``; ``config`` holds the spec's config blocks."""
    from .figure_specs import FIGURES

    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; known: {sorted(FIGURES)}")
    missing = set(FIGURES[name].inputs) - set(inputs)
    if missing:
        raise ValueError(f"figure {name}: missing inputs {sorted(missing)}")
    draw = globals()[name]
    if FIGURES[name].config:
        draw(inputs, outputs, options, {k: (config or {})[k] for k in FIGURES[name].config})
    else:
        draw(inputs, outputs, options)
