"""The tables of the paper's evaluation, from the per-map Dataset of :func:`massmaps.evaluation.evaluate.evaluate`.

:func:`table1` (with :func:`table1_markdown` and :func:`table1_latex`), :func:`baseline_margins` and
:func:`summary` for the posterior mean's quality, :func:`calibration_tables` and :func:`calibration_markdown`
for the posterior's calibration. Definitions are in :mod:`massmaps.evaluation.metrics`,
:mod:`massmaps.evaluation.calibration` and docs/physics.md section 9.
"""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd
import xarray as xr

from ..store import INPUTS, TARGETS
from . import calibration, metrics

FIELD_LABELS = {"gas": "Gas", "dm": "DM", "tsz": "SZ", "xray": "X-ray"}

#: The paper's Table 1 (Hsu et al.): (mass bin, field, statistic, scale) -> (mean, +, -).
PAPER_TABLE1 = {
    ("high", "gas", "b", "small"): (1.004, 0.003, 0.005),
    ("high", "gas", "b", "large"): (1.008, 0.005, 0.007),
    ("high", "gas", "r", "small"): (0.949, 0.028, 0.034),
    ("high", "gas", "r", "large"): (0.998, 0.002, 0.002),
    ("high", "dm", "b", "small"): (0.888, 0.115, 0.098),
    ("high", "dm", "b", "large"): (1.008, 0.008, 0.011),
    ("high", "dm", "r", "small"): (0.821, 0.149, 0.131),
    ("high", "dm", "r", "large"): (0.994, 0.006, 0.005),
    ("low", "gas", "b", "small"): (1.023, 0.025, 0.031),
    ("low", "gas", "b", "large"): (1.004, 0.005, 0.007),
    ("low", "gas", "r", "small"): (0.932, 0.050, 0.052),
    ("low", "gas", "r", "large"): (0.998, 0.002, 0.002),
    ("low", "dm", "b", "small"): (0.928, 0.092, 0.081),
    ("low", "dm", "b", "large"): (1.030, 0.005, 0.006),
    ("low", "dm", "r", "small"): (0.832, 0.143, 0.123),
    ("low", "dm", "r", "large"): (0.995, 0.005, 0.005),
}


def calibration_tables(ev: xr.Dataset, *, seed: int = 0, n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Calibration per mass bin and field (:func:`massmaps.evaluation.calibration.summarise`, bootstrap over clusters),
    and the per-map TARP fractions and total-mass ranks behind it."""
    per_map_rows, rows = [], []
    large = _scale_mask(ev, "large")
    for fld in TARGETS:
        sub = ev.sel(field=fld)
        summaries = list(zip(sub["summary_gen"].values, sub["summary_sim"].values))
        f, ranks = calibration.tarp_primitives(summaries, seed)
        pz = calibration.profile_z(summaries)
        per_map_rows.append(
            pd.DataFrame(
                {
                    "sightline_id": ev["sightline_id"].values,
                    "mass_bin": ev["mass_bin"].values,
                    "field": fld,
                    "tarp_f": f[:, 0],  # one reference draw per map, as the calibration figure shows
                    "mass_rank": sub["mass_rank"].values,
                }
            )
        )
        for mb in _bins(ev, with_empty=False):
            sel = np.ones(ev.sizes["sightline"], bool) if mb == "all" else ev["mass_bin"].values == mb
            prims = {k: sub[k].values[sel] for k in ("rank_counts", "mass_rank", "z_sum", "z_sq", "z_n")}
            prims["tarp_f"], prims["tarp_ranks"] = f[sel], ranks[sel]
            prims["mass_error"] = sub["mass_error"].values[sel]
            prims["b_large"] = sub["b"].values[sel][:, large].mean(axis=1)
            prims["profile_z"] = pz[sel]
            table = calibration.summarise(
                prims, int(ev.attrs["n_posterior_samples"]), n_boot=n_boot, seed=seed, groups=ev["halo_id"].values[sel]
            )
            rows.append(table.assign(mass_bin=mb, field=fld))
    cols = ["mass_bin", "field", "statistic", "value", "lo", "hi", "n_maps", "n_groups"]
    return pd.concat(rows, ignore_index=True)[cols], pd.concat(per_map_rows, ignore_index=True)


def calibration_markdown(table: pd.DataFrame, n_samples: int) -> str:
    """The calibration table in Markdown: one row per mass bin and field, value with its bootstrap range."""
    shown = [
        ("mass_error_median", "median mass error"),
        ("b_large", "large-scale b"),
        ("coverage_0.5", "cov 50%"),
        ("coverage_0.68", "cov 68%"),
        ("coverage_0.9", "cov 90%"),
        ("coverage_0.95", "cov 95%"),
        ("max_coverage_error", "max |cov - level|"),
        ("z_mean", "mean z"),
        ("z_std", "std z"),
        ("rank_bottom", "truth below all"),
        ("rank_top", "truth above all"),
        ("tarp_ks_p", "TARP KS p"),
        ("tarp_area", "TARP area"),
        ("profile_z_std_max", "std z, annuli (largest)"),
        ("mass_rank_chi2_p", "mass-rank chi2 p"),
    ]
    lines = [
        "| cluster | map | maps (clusters) | " + " | ".join(label for _, label in shown) + " |",
        "|" + "---|" * (3 + len(shown)),
    ]
    for (mb, fld), g in table.groupby(["mass_bin", "field"], sort=False):
        g = g.set_index("statistic")
        cells = []
        for key, _ in shown:
            v, lo, hi = g.loc[key, ["value", "lo", "hi"]]
            fmt = "{:+.1%}" if key == "mass_error_median" else "{:.3f}"
            cells.append(fmt.format(v) + (f" [{fmt.format(lo)}, {fmt.format(hi)}]" if np.isfinite(lo) else ""))
        n = f"{int(g['n_maps'].iloc[0])} ({int(g['n_groups'].iloc[0])})"
        lines.append(f"| {mb} | {FIELD_LABELS[fld]} | {n} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Median total-mass error and large-scale b of the posterior mean (Table 1's, here with their bootstrap "
        "ranges: the spread of the clusters behind them); "
        f"coverage of central credible intervals from the rank of the truth among the {n_samples} samples "
        "(calibrated: equal to the level); z = (truth - mean) / std, calibrated std "
        f"{calibration.calibrated_z_std(n_samples):.3f}; TARP on the log radial profile, 100 reference "
        "points per map (calibrated: KS p, from a randomisation test, uniform; area 0), and the largest std of z "
        "over its annuli (calibrated as std z; above it, the annulus means vary too little between samples); "
        "the KS and chi-square "
        "tests on one view per cluster; [16th, 84th] percentiles of 1000 bootstrap draws over clusters.",
    ]
    return "\n".join(lines) + "\n"


def _scale_mask(ev: xr.Dataset, scale: str) -> np.ndarray:
    k = ev["k"].values
    return k < ev.attrs["k_split"] if scale == "large" else k >= ev.attrs["k_split"]


def _bins(ev: xr.Dataset, include_all: bool = True, with_empty: bool = False) -> list[str]:
    """The mass bins holding test maps (low, high first), and 'all' (every test map) when asked for or
    when no map lies in a named bin; ``with_empty`` adds the configured bins that hold no map."""
    labels = set(ev["mass_bin"].values.tolist()) - {""}
    names = labels | (set(ast.literal_eval(ev.attrs["mass_bins"])) if with_empty else set())
    order = [b for b in ("low", "high") if b in names] + sorted(names - {"low", "high"})
    return order + (["all"] if include_all or not labels else [])


def empty_bins(ev: xr.Dataset) -> list[str]:
    """The configured mass bins that hold no test map (Table 1 shows them with n = 0)."""
    return sorted(set(ast.literal_eval(ev.attrs["mass_bins"])) - set(ev["mass_bin"].values.tolist()))


def _select(ev: xr.Dataset, mass_bin: str) -> xr.Dataset:
    return ev if mass_bin == "all" else ev.isel(sightline=np.nonzero(ev["mass_bin"].values == mass_bin)[0])


def table1(ev: xr.Dataset) -> pd.DataFrame:
    """Table 1: per mass bin and field, the per-map mean of b and r over each scale range, then the mean
    over maps with 16/84 percentile offsets. One row per (mass_bin, field, statistic, scale)."""
    rows = []
    for mb in _bins(ev, with_empty=True):
        sub = _select(ev, mb)
        for fld in TARGETS:
            for stat in ("b", "r"):
                for scale in ("small", "large"):
                    mask = _scale_mask(ev, scale)
                    per_map = sub[stat].sel(field=fld).values[:, mask].mean(axis=1)
                    m = metrics.mean_with_offsets(per_map)
                    paper = PAPER_TABLE1.get((mb, fld, stat, scale), (np.nan,) * 3)
                    rows.append(
                        {
                            "mass_bin": mb,
                            "field": fld,
                            "statistic": stat,
                            "scale": scale,
                            **m,
                            "paper_mean": paper[0],
                            "paper_plus": paper[1],
                            "paper_minus": paper[2],
                        }
                    )
    return pd.DataFrame(rows)


def baseline_margins(ev: xr.Dataset) -> pd.DataFrame:
    """r(k) of the posterior mean against the better of the two linear baselines (SZ, X-ray), bin by bin.

    Per mass bin, field and k bin: the mean over maps of r_gen, r_SZ and r_X, and the margin
    r_gen - max(r_SZ, r_X). The generated map beats the baselines at every k where the margin is > 0.
    """
    rows = []
    for mb in _bins(ev):
        sub = _select(ev, mb)
        for fld in TARGETS:
            r_gen = sub["r"].sel(field=fld).mean("sightline").values
            r_in = {i: sub["r_input"].sel(field=fld, input=i).mean("sightline").values for i in INPUTS}
            best = np.maximum(*r_in.values())
            for j, kc in enumerate(ev["k"].values):
                rows.append(
                    {
                        "mass_bin": mb,
                        "field": fld,
                        "k": float(kc),
                        "scale": "large" if kc < ev.attrs["k_split"] else "small",
                        "n_maps": int(sub.sizes["sightline"]),
                        "r_gen": r_gen[j],
                        **{f"r_{i}": r_in[i][j] for i in INPUTS},
                        "margin": r_gen[j] - best[j],
                    }
                )
    return pd.DataFrame(rows)


def summary(ev: xr.Dataset) -> dict:
    """Headline numbers: total-mass errors, z-score fractions, convergence and the baseline margins."""
    out: dict = {
        "n_maps": int(ev.sizes["sightline"]),
        "n_posterior_samples": int(ev.attrs["n_posterior_samples"]),
        "k_fundamental_h_per_Mpc": float(ev.attrs["k_fundamental"]),
        "fields": {},
    }
    margins = baseline_margins(ev)
    for fld in TARGETS:
        curve = ev["V_ratio"].sel(field=fld).mean("sightline").values
        entry = {
            "z_within_1sigma": float(ev["z_fraction"].sel(field=fld, within=1)),
            "z_within_2sigma": float(ev["z_fraction"].sel(field=fld, within=2)),
            "convergence_V50_over_V2": float(curve[-1]),
            "converged_at_N": metrics.converged_n(curve, ev.attrs["convergence_threshold"]),
        }
        for mb in _bins(ev):
            sub = _select(ev, mb)
            m = margins[(margins["mass_bin"] == mb) & (margins["field"] == fld)]
            entry[mb] = {
                "n_maps": int(sub.sizes["sightline"]),
                "mass_error": metrics.percentiles(sub["mass_error"].sel(field=fld).values),
                **{f"min_margin_{sc}": float(m.loc[m["scale"] == sc, "margin"].min()) for sc in ("large", "small")},
            }
        out["fields"][fld] = entry
    return out


def _pm(mean: float, plus: float, minus: float, fmt: str = "{:.3f}") -> tuple[str, str]:
    if not np.isfinite(mean):
        return "-", "-"
    m, p, n = (fmt.format(x) for x in (mean, plus, minus))
    return f"{m} +{p}/-{n}", rf"${m}^{{+{p}}}_{{-{n}}}$"


def table1_wide(t: pd.DataFrame, which: str = "ours") -> pd.DataFrame:
    """The paper's layout: one row per (cluster, map), columns small/large-scale b and r, as text."""
    rows = []
    for (mb, fld), g in t.groupby(["mass_bin", "field"], sort=False):
        row = {"cluster": mb, "map": FIELD_LABELS[fld], "n": int(g["n"].iloc[0])}
        for stat in ("b", "r"):
            for scale in ("small", "large"):
                e = g[(g["statistic"] == stat) & (g["scale"] == scale)].iloc[0]
                cols = ("mean", "plus", "minus") if which == "ours" else ("paper_mean", "paper_plus", "paper_minus")
                row[f"{scale}-scale {stat}"] = _pm(*(e[c] for c in cols))
        rows.append(row)
    return pd.DataFrame(rows)


def table1_markdown(t: pd.DataFrame) -> str:
    """Markdown of Table 1, ours beside the paper's, and a short legend."""
    ours, paper = table1_wide(t, "ours"), table1_wide(t, "paper")
    cols = ["small-scale b", "large-scale b", "small-scale r", "large-scale r"]
    lines = [
        "| cluster | map | n | "
        + " | ".join(f"{c} (ours)" for c in cols)
        + " | "
        + " | ".join(f"{c} (paper)" for c in cols)
        + " |",
        "|" + "---|" * (3 + 2 * len(cols)),
    ]
    for (_, o), (_, p) in zip(ours.iterrows(), paper.iterrows()):
        lines.append(
            f"| {o['cluster']} | {o['map']} | {o['n']} | "
            + " | ".join(o[c][0] for c in cols)
            + " | "
            + " | ".join(p[c][0] for c in cols)
            + " |"
        )
    lines += [
        "",
        "Mean over maps of the per-map average over the k bins of each scale range, with the offsets "
        "to the 16th and 84th percentiles. Paper: Hsu et al., Table 1 (low 2e14-6e14, high 6e14-1e15 Msun).",
    ]
    return "\n".join(lines) + "\n"


def table1_latex(t: pd.DataFrame) -> str:
    """LaTeX tabular of Table 1 (ours), in the paper's layout."""
    ours = table1_wide(t, "ours")
    cols = ["small-scale b", "large-scale b", "small-scale r", "large-scale r"]
    lines = [
        r"\begin{tabular}{llcccc}",
        r"\hline",
        r"Cluster & Map & Small-scale $b$ & Large-scale $b$ & Small-scale $r$ & Large-scale $r$ \\",
        r"\hline",
    ]
    for _, o in ours.iterrows():
        lines.append(f"{o['cluster']} & {o['map']} & " + " & ".join(o[c][1] for c in cols) + r" \\")
    lines += [r"\hline", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
