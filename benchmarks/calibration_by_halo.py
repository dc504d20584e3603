"""Where is the posterior off? The truth's z score in each annulus of TARP's summary, by halo property.

TARP and the annulus z scores pool every test map. Splitting the maps by a property of their halo (mass,
concentration, shape, whether it comes from the test box) shows where an offset sits. Per field, property
and group (``--groups`` quantile groups of the property; a boolean property: false / true) it prints the
mean of z = (truth - the samples' mean) / the samples' std in each annulus of the summary TARP tests
(``metrics/evaluation.zarr``: ``summary_sim``, ``summary_gen``), with a bootstrap interval over the
group's clusters, and the std of z.

How to read it: over all maps a calibrated posterior gives z mean 0 and std 1. Within the groups of a
property the images say little about, the means move away from 0 with opposite signs in the low and high
groups and the stds fall below 1 (the group shares part of its error): that is the posterior's honest
uncertainty about the property. An offset of one sign in every group is a bias; a std above 1 in every
group, a posterior too narrow there.

    python benchmarks/calibration_by_halo.py --results results/default
    python benchmarks/calibration_by_halo.py --results results/default --properties c200m --groups 5
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from massmaps.evaluation import calibration  # noqa: E402

#: Columns of the halo catalogue (``catalog/halos.parquet``) split by default.
PROPERTIES = ("log10_M200m", "c200m", "axis_ratio_s", "test_only")


def annulus_z(summary_sim: np.ndarray, summary_gen: np.ndarray) -> np.ndarray:
    """z = (truth - mean of the samples) / their std (ddof 1; NaN where the samples agree), per map, field and
    annulus (calibration.profile_z): ``summary_sim`` (maps, fields, annuli), ``summary_gen`` (maps, samples,
    fields, annuli)."""
    gen = np.asarray(summary_gen, dtype=np.float64)
    if gen.ndim != 4 or gen.shape[0] != np.shape(summary_sim)[0] or gen.shape[2:] != np.shape(summary_sim)[1:]:
        raise ValueError(
            f"summary_gen must be (maps, samples, fields, annuli) matching summary_sim {np.shape(summary_sim)}, "
            f"got {gen.shape}"
        )
    return calibration.profile_z(list(zip(gen, np.asarray(summary_sim, dtype=np.float64))))


def group_labels(values: Sequence, n_groups: int) -> tuple[np.ndarray, list[str]]:
    """Each value's group and the groups' names in order: booleans by value, numbers by ``n_groups``
    quantile groups of about equal counts (named by their range)."""
    values = np.asarray(values)
    if values.dtype == bool:
        return values.astype(int), ["false", "true"]
    if n_groups < 1:
        raise ValueError(f"n_groups must be at least 1, got {n_groups}")
    values = values.astype(np.float64)
    edges = np.quantile(values, np.linspace(0, 1, n_groups + 1))
    index = np.clip(np.searchsorted(edges[1:-1], values, side="right"), 0, n_groups - 1)
    names = [f"{edges[k]:.3g}-{edges[k + 1]:.3g}" for k in range(n_groups)]
    return index, names


def z_by_group(
    z: np.ndarray,
    groups: np.ndarray,
    names: Sequence[str],
    clusters: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per group and annulus of ``z`` (maps, annuli): the maps and distinct clusters, the mean of z with its
    central ``level`` bootstrap interval (clusters drawn with replacement within the group: a cluster's views
    share their error) and the std of z. ``groups`` are indices into ``names``."""
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2 * 100
    rows = []
    for g, name in enumerate(names):
        member = groups == g
        if not member.any():
            continue
        zg, cg = z[member], clusters[member]
        ids, inverse = np.unique(cg, return_inverse=True)
        sums = np.zeros((len(ids), z.shape[1]))
        np.add.at(sums, inverse, zg)
        counts = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
        draws = rng.integers(0, len(ids), size=(n_boot, len(ids)))
        boot = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)[:, None]  # (n_boot, annuli)
        lo, hi = np.percentile(boot, [tail, 100 - tail], axis=0)
        for a in range(z.shape[1]):
            rows.append(
                {
                    "group": name,
                    "annulus": a + 1,
                    "maps": int(member.sum()),
                    "clusters": len(ids),
                    "z_mean": float(zg[:, a].mean()),
                    "z_mean_lo": float(lo[a]),
                    "z_mean_hi": float(hi[a]),
                    "z_std": float(zg[:, a].std(ddof=1)) if len(zg) > 1 else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame, field: str, prop: str) -> str:
    annuli = sorted(table["annulus"].unique())
    head = f"| {field}: {prop} | maps (clusters) | " + " | ".join(f"ann{a}" for a in annuli) + " | z std, ann1-6 |"
    lines = [head, "|---|---|" + "---|" * len(annuli) + "---|"]
    for name, t in table.groupby("group", sort=False):
        t = t.set_index("annulus").loc[annuli]
        cells = [f"{r.z_mean:+.2f} [{r.z_mean_lo:+.2f}, {r.z_mean_hi:+.2f}]" for r in t.itertuples()]
        stds = "/".join(f"{v:.2f}" for v in t["z_std"])
        lines.append(
            f"| {name} | {t['maps'].iloc[0]} ({t['clusters'].iloc[0]}) | " + " | ".join(cells) + f" | {stds} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True, help="a finished run's results folder")
    ap.add_argument("--properties", nargs="+", default=list(PROPERTIES), help="columns of catalog/halos.parquet")
    ap.add_argument("--groups", type=int, default=3, help="quantile groups of a numeric property")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the full table as CSV")
    args = ap.parse_args(argv)
    import xarray as xr

    warnings.filterwarnings("ignore", message=".*consolidated.*")
    path = args.results / "metrics" / "evaluation.zarr"
    catalog_path = args.results / "catalog" / "halos.parquet"
    if not path.exists() or not catalog_path.exists():
        raise SystemExit(f"{args.results}: not a finished run (needs {path} and {catalog_path})")
    ev = xr.open_zarr(path)
    for name in ("summary_sim", "summary_gen", "halo_id"):
        if name not in ev.variables:
            raise SystemExit(f"{path}: no {name!r} (written by the pipeline's evaluate rule)")
    catalog = pd.read_parquet(catalog_path).set_index("halo_id")
    missing = [p for p in args.properties if p not in catalog.columns]
    if missing:
        raise SystemExit(f"{catalog_path}: no column {missing}; it has {sorted(catalog.columns)}")
    halo = ev["halo_id"].values
    absent = np.setdiff1d(halo, catalog.index.values)
    if absent.size:
        raise SystemExit(f"{catalog_path}: halo_id {absent[:5].tolist()} of {path} not in the catalogue")
    z = annulus_z(ev["summary_sim"].values, ev["summary_gen"].values)
    fields = [str(f) for f in ev["field"].values]
    print(f"{len(halo)} maps of {len(np.unique(halo))} clusters; 95% bootstrap intervals over clusters", flush=True)
    tables = []
    for f, field in enumerate(fields):
        everything = z_by_group(z[:, f], np.zeros(len(halo), int), ["all"], halo, args.n_boot, args.seed)
        print("\n" + _markdown(everything, field, "all maps"))
        for prop in args.properties:
            groups, names = group_labels(catalog.loc[halo, prop].to_numpy(), args.groups)
            t = z_by_group(z[:, f], groups, names, halo, args.n_boot, args.seed)
            print("\n" + _markdown(t, field, prop))
            tables.append(t.assign(field=field, property=prop))
        tables.append(everything.assign(field=field, property="all"))
    if args.out:
        pd.concat(tables).to_csv(args.out, index=False)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
