"""Ablation tables: the same headline statistics for several variants of a run, side by side.

Each variant is an evaluation Dataset (:func:`massmaps.evaluation.evaluate.evaluate`) of its own model on the
same test sightlines. :func:`posterior_metrics` gives, per mass bin and field, the small-scale r of the
posterior mean (with the 16-84% range of a bootstrap that resamples clusters, :func:`cluster_bootstrap`) and,
from :func:`massmaps.evaluation.tables.calibration_tables` (the same kind of bootstrap), its median total-mass
error and large-scale b and the calibration statistics. :func:`ablation_table` stacks the variants,
:func:`ablation_markdown` shows the headline columns, :func:`r_of_k` and :func:`figure_r_of_k` show where on
the k axis each variant loses the information (for observed inputs, against the scale of the tSZ beam).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..store import TARGETS
from . import tables

#: Per-map statistics of the posterior mean: name -> (variable of the evaluation store, k range, reducer).
MEAN_STATISTICS = {
    "r_small": ("r", "small", np.mean),
}
#: Statistics taken from :func:`massmaps.evaluation.tables.calibration_tables` (which also bootstraps the
#: posterior mean's median mass error and large-scale b over clusters).
CALIBRATION_STATISTICS = (
    "mass_error_median",
    "b_large",
    "max_coverage_error",
    "coverage_0.68",
    "coverage_0.9",
    "z_mean",
    "z_std",
    "tarp_ks_p",
    "profile_z_std_max",
    "rank_top",
    "rank_bottom",
)
#: The columns of :func:`ablation_markdown`: (statistic, label, format).
HEADLINE = (
    ("r_small", "small-scale r", "{:.3f}"),
    ("b_large", "large-scale b", "{:.3f}"),
    ("mass_error_median", "mass error", "{:+.1%}"),
    ("max_coverage_error", "max coverage error", "{:.3f}"),
    ("z_std", "z std", "{:.2f}"),
    ("rank_top", "truth above all samples", "{:.3f}"),
    ("tarp_ks_p", "TARP KS p", "{:.3f}"),
    ("profile_z_std_max", "annulus z std (largest)", "{:.2f}"),
)


def cluster_bootstrap(values: np.ndarray, groups: np.ndarray, stat, seed: int, n_boot: int = 1000) -> tuple:
    """``stat(values)`` and the 16-84% range of ``stat`` over a bootstrap that resamples clusters (``groups``:
    the cluster of each value), so that several views of one cluster count as one draw."""
    ids = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in ids]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 29]))
    boot = [
        stat(values[np.concatenate([members[i] for i in pick])])
        for pick in rng.integers(0, len(ids), (n_boot, len(ids)))
    ]
    return float(stat(values)), float(np.percentile(boot, 16)), float(np.percentile(boot, 84))


def posterior_metrics(ev: xr.Dataset, seed: int, n_boot: int = 1000) -> list[dict]:
    """Rows (mass_bin, field, statistic, value, lo, hi) of :data:`MEAN_STATISTICS` and
    :data:`CALIBRATION_STATISTICS` for one evaluation store (the calibration values and ranges are those
    of the pipeline's calibration table at the same seed and ``n_boot``)."""
    k = ev["k"].values
    scales = {"large": k < ev.attrs["k_split"], "small": k >= ev.attrs["k_split"]}
    cal, _ = tables.calibration_tables(ev, seed=seed, n_boot=n_boot)
    rows = []
    for mb in tables._bins(ev):  # the bins calibration_tables reports, then 'all'
        sel = np.ones(ev.sizes["sightline"], bool) if mb == "all" else ev["mass_bin"].values == mb
        groups = ev["halo_id"].values[sel]
        for f in TARGETS:
            sub = ev.sel(field=f).isel(sightline=np.flatnonzero(sel))
            for name, (var, scale, stat) in MEAN_STATISTICS.items():
                values = sub[var].values if scale is None else sub[var].values[:, scales[scale]].mean(axis=1)
                v, lo, hi = cluster_bootstrap(values, groups, stat, seed, n_boot)
                rows.append({"mass_bin": mb, "field": f, "statistic": name, "value": v, "lo": lo, "hi": hi})
            c = cal[(cal["mass_bin"] == mb) & (cal["field"] == f)].set_index("statistic")
            for name in CALIBRATION_STATISTICS:
                lo, hi = c.loc[name, "lo"], c.loc[name, "hi"]
                rows.append(
                    {"mass_bin": mb, "field": f, "statistic": name, "value": c.loc[name, "value"], "lo": lo, "hi": hi}
                )
    return rows


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """variant x (statistic per field and bin): 'value [lo, hi]'."""
    t = table.copy()
    t["cell"] = [
        f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "")
        for v, lo, hi in zip(t["value"], t["lo"], t["hi"])
    ]
    t["column"] = t["statistic"] + " " + t["field"] + " " + t["mass_bin"]
    return t.pivot_table(index="variant", columns="column", values="cell", aggfunc="first", sort=False)


def r_of_k(ev: xr.Dataset) -> pd.DataFrame:
    """r(k) of the posterior mean averaged over the maps: rows (field, k, r_mean), k in the store's unit."""
    k = ev["k"].values
    r = ev["r"].mean("sightline").values  # (field, k)
    fields = list(ev["field"].values)
    return pd.DataFrame({"field": np.repeat(fields, k.size), "k": np.tile(k, len(fields)), "r_mean": r.ravel()})


def ablation_table(
    evaluations: Mapping[str, xr.Dataset], seed: int, n_boot: int = 1000
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(statistics, r(k) curves) of every variant, in the mapping's order, each row naming its variant."""
    rows, curves = [], []
    for name, ev in evaluations.items():
        rows.append(pd.DataFrame(posterior_metrics(ev, seed, n_boot)).assign(variant=name))
        curves.append(r_of_k(ev).assign(variant=name))
    return pd.concat(rows, ignore_index=True), pd.concat(curves, ignore_index=True)


def ablation_markdown(table: pd.DataFrame, mass_bin: str = "all", headline=HEADLINE) -> str:
    """One row per variant, one column per headline statistic and field, in mass bin ``mass_bin``: the value
    and its bootstrap range."""
    part = table[table["mass_bin"] == mass_bin]
    fields = [f for f in TARGETS if f in set(part["field"])]
    head = ["variant"] + [f"{label} {f}" for _, label, _ in headline for f in fields]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, rows in part.groupby("variant", sort=False):
        rows = rows.set_index(["statistic", "field"])
        cells = [variant]
        for stat, _, fmt in headline:
            for f in fields:
                v, lo, hi = rows.loc[(stat, f), ["value", "lo", "hi"]]
                rng = f" [{fmt.format(lo)}, {fmt.format(hi)}]" if np.isfinite(lo) else ""
                cells.append(fmt.format(v) + rng)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure_r_of_k(curves: pd.DataFrame, path: str | Path, marks: Mapping[str, float] | None = None, k_label="k"):
    """r(k) of the posterior mean of each variant, one panel per field; ``marks``: variant -> a k drawn as a
    dotted line of the variant's colour (e.g. where the tSZ beam's transfer function falls to 1/2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..files import atomic_path

    fields = list(dict.fromkeys(curves["field"]))
    fig, axes = plt.subplots(1, len(fields), figsize=(5 * len(fields), 4), sharey=True, squeeze=False)
    for ax, field in zip(axes[0], fields):
        for i, (name, part) in enumerate(curves[curves["field"] == field].groupby("variant", sort=False)):
            ax.plot(part["k"], part["r_mean"], marker="o", ms=3, label=name, color=f"C{i % 10}")
            mark = (marks or {}).get(name, np.nan)
            if np.isfinite(mark):
                ax.axvline(mark, color=f"C{i % 10}", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel(k_label)
        ax.set_title(f"{field}: r(k) of the posterior mean", fontsize=9)
    axes[0][0].set_ylabel("r(k)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
