"""Where does a mass bin's dark-matter mass bias come from: the network, or the clusters it learned from?

The total dark-matter mass of a map is its gas mass times q = DM / gas. The tSZ and X-ray images pin the
gas (the gas mass error is ~1%), so the DM mass error of the posterior mean is the error of the q it
implies. q is a property of the cluster: its views differ by ~0.3%, its clusters by ~13%. This script
reads a finished run (dataset, split, test samples and evaluation store) and prints, per mass bin:

1. where in the map the error sits: the DM and gas mass error of the posterior mean in annuli, and the
   same error in the normalised units the network works in (the mean of the samples after the run's
   stretch and min-max scaling, against the truth's): where the stretch is logarithmic, an error of 1% there
   is an error of several per cent in mass;
2. q of the training, validation and test clusters (per cluster, views averaged), and of every cluster
   in the dataset stores given with ``--population`` (other runs' catalogues of the same mock: more
   independent clusters);
3. q implied by the posterior mean against the true q per test cluster: its mean and the slope of one on
   the other (1 for a network that reads q from the images, 0 for one that knows only a mean);
4. the median mass error of the model, and of "oracles" that know each test cluster's true gas mass
   and mass: the training clusters' mean q within +-0.15 dex (what a network can learn from them), the
   same q times the model's own gas mass (the oracle with the model's gas error), and the population's q
   (what an unlimited training set would teach); 16-84% ranges over a bootstrap of clusters;
5. the median over test maps of the model's error minus that of the oracle with the model's gas: the
   paired comparison. The medians of item 4 come from distributions of different widths (the oracle's
   q is one number per mass, the model reads a little of each cluster's q from the images), so with
   30-40 clusters per bin their difference can be several per cent where the maps agree.

If the model's error follows the training oracle map by map, the bias is the sample of training clusters,
not the network or the sampler.

    python benchmarks/mass_bias.py --results results/default
    python benchmarks/mass_bias.py --results results/default --population /tmp/other/results/default/dataset/maps.zarr
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from massmaps import store
from massmaps.evaluation.ablation import cluster_bootstrap
from massmaps.learning.normalise import Normaliser

ANNULI_MPC = ((0, 1), (1, 2), (2, 4), (4, 6.4), (6.4, 99))
WINDOW_DEX = 0.15
#: The DM mass estimates compared: column suffix -> label.
ESTIMATES = {
    "model": "the model",
    "training": "oracle: training clusters' q",
    "training_gas": "oracle: training q x model's gas",
    "population": "oracle: population q",
}


def clusters(ds) -> pd.DataFrame:
    """One row per cluster of a dataset store: split, log mass, q (views averaged) and its spread over views."""
    gas, dm = ds["maps"].sel(field=["gas", "dm"]).values.astype(np.float64).sum(axis=(2, 3)).T
    maps = pd.DataFrame(
        {"halo": ds["halo_id"].values, "split": ds["split"].values, "lm": np.log10(ds["M200m_Msun"].values)}
    )
    maps["q"] = dm / gas
    return maps.groupby("halo").agg(split=("split", "first"), lm=("lm", "first"), q=("q", "mean"), q_sd=("q", "std"))


def local_mean(lm: np.ndarray, ref: pd.DataFrame) -> np.ndarray:
    """Mean q of the clusters of ``ref`` within WINDOW_DEX of each log mass."""
    return np.array([ref.q[(ref.lm - m).abs() <= WINDOW_DEX].mean() for m in lm])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True, help="a run's results folder (results/<run>)")
    ap.add_argument("--population", type=Path, nargs="*", default=[], help="more dataset stores of the same mock")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    ds = store.open_store(args.results / "dataset" / "maps.zarr")
    ev = store.open_store(args.results / "metrics" / "evaluation.zarr").load()
    samples = store.open_store(args.results / "samples" / "test.zarr")
    sl = ev["sightline"].values
    test = ds.sel(sightline=sl)
    mean = samples["mean"].sel(sightline=sl, field=["gas", "dm"]).values.astype(np.float64)
    x = ds["x"].values
    radius = np.hypot(*np.meshgrid(x, x))
    truth = test["maps"].sel(field=["gas", "dm"]).values.astype(np.float64)  # (map, field, y, x), read once
    norm = Normaliser.from_dict(json.loads((args.results / "model" / "normalisation.json").read_text()))
    draws = samples["samples"].sel(sightline=sl, field=["gas", "dm"]).values
    mean_n = norm.apply(draws, ["gas", "dm"], field_axis=2).astype(np.float64).mean(axis=1)
    truth_n = norm.apply(truth, ["gas", "dm"], field_axis=1).astype(np.float64)

    per_cluster = clusters(ds)
    population = pd.concat([per_cluster] + [clusters(store.open_store(p)) for p in args.population])
    # runs of one seed share their main box: a cluster is the same one where its mass is the same
    population = population[~population.lm.round(9).duplicated()]
    train = per_cluster[per_cluster.split == "train"]
    print(
        f"{len(per_cluster)} clusters in the run ({len(train)} training), {len(population)} in the population; "
        f"spread of q over a cluster's views: median {per_cluster.q_sd.median():.4f}\n"
    )

    maps = pd.DataFrame(
        {"halo": ev["halo_id"].values, "bin": ev["mass_bin"].values, "lm": np.log10(ev["M200m_Msun"].values)}
    )
    gas_true, dm_true = truth.sum(axis=(2, 3)).T
    maps["q_true"] = dm_true / gas_true
    maps["q_gen"] = mean[:, 1].sum(axis=(1, 2)) / mean[:, 0].sum(axis=(1, 2))
    maps["err_model"] = ev["mass_error"].sel(field="dm").values
    for name, ref in (("training", train), ("population", population)):
        maps[f"err_{name}"] = local_mean(maps.lm.to_numpy(), ref) / maps.q_true - 1
    gas_error = ev["mass_error"].sel(field="gas").values
    maps["err_training_gas"] = (1 + gas_error) * (1 + maps.err_training) - 1

    for b, m in maps.groupby("bin", sort=False):
        sel = ev["mass_bin"].values == b
        print(
            f"== {b}-mass bin: {len(m)} test maps of {m.halo.nunique()} clusters, log M {m.lm.min():.2f}-{m.lm.max():.2f}"
        )
        for fi, field in enumerate(("gas", "dm")):
            parts = []
            for lo, hi in ANNULI_MPC:
                ring = (radius >= lo) & (radius < hi)
                err = mean[sel, fi][:, ring].sum(axis=1) / truth[sel, fi][:, ring].sum(axis=1) - 1
                err_n = mean_n[sel, fi][:, ring].sum(axis=1) / truth_n[sel, fi][:, ring].sum(axis=1) - 1
                parts.append(f"{lo}-{hi if hi < 99 else 'edge'} Mpc {np.median(err):+.1%} ({np.median(err_n):+.1%})")
            print(f"  {field} mass error of the mean (normalised units), median by annulus: " + ", ".join(parts))
        lo_m, hi_m = m.lm.min() - 0.05, m.lm.max() + 0.05
        for name, ref in (("training", train), ("validation", per_cluster[per_cluster.split == "val"]),
                          ("test", per_cluster[per_cluster.split == "test"]), ("population", population)):  # fmt: skip
            inside = ref[(ref.lm >= lo_m) & (ref.lm <= hi_m)]
            if len(inside):
                print(
                    f"  q of the {name} clusters in the bin's mass range: {inside.q.mean():.3f} +- "
                    f"{inside.q.std() / np.sqrt(len(inside)):.3f} ({len(inside)} clusters, spread {inside.q.std():.3f})"
                )
        c = m.groupby("halo")[["q_true", "q_gen"]].mean()
        slope = np.polyfit(c.q_true, c.q_gen, 1)[0]
        print(
            f"  posterior mean's q {c.q_gen.mean():.3f} against the truth's {c.q_true.mean():.3f}; slope of one on the other {slope:.2f}"
        )
        groups = m.halo.to_numpy()
        for name, label in ESTIMATES.items():
            v, lo, hi = cluster_bootstrap(m[f"err_{name}"].to_numpy(), groups, np.median, args.seed)
            print(f"  median DM mass error, {label:32s} {v:+.1%} [{lo:+.1%}, {hi:+.1%}]")
        paired = (m.err_model - m.err_training_gas).to_numpy()
        v, lo, hi = cluster_bootstrap(paired, groups, np.median, args.seed)
        print(
            f"  median over maps of the model's error minus the oracle's with its gas: {v:+.1%} [{lo:+.1%}, {hi:+.1%}]"
        )
        print()


if __name__ == "__main__":
    main()
