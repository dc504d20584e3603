"""Which of the posterior's goals does each finished run meet? One table over several runs' metrics.

The goals (on the laptop default, read from the pipeline's own outputs): median total-mass error of the
posterior mean within +-3% and large-scale b within 1 +- 0.05 for each field in each mass bin; over all
maps per field, the largest coverage error of the central credible intervals (levels 0.1-0.95) at most
0.05, z-score std in [0.9, 1.15] and |mean z| <= 0.1, TARP's KS p above 0.05; r(k) of the posterior mean
above both linear baselines at every k (the smallest margin over k, per field and bin, above 0); the
low-mass DM small-scale r at least 0.848. The DAG's wall time is not in the metrics: time the run.

Each run is NAME=RESULTS (a results folder such as ``results/default``, holding ``metrics/``); a cell is
the value, with ``MISS`` after it where the goal is missed. For comparing catalogues, seeds or levers::

    python benchmarks/goals.py box400=results/default box600=../other/results/default
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

BINS = ("low", "high")
FIELDS = ("gas", "dm")
DM_SMALL_SCALE_R_MIN = 0.848  # the low-mass DM small-scale r before the posterior work (Table 1 of 6f79d36)
#: Goals on calibration.csv statistics: (statistic, label, met, format), per field and mass bin ...
PER_BIN = (
    ("mass_error_median", "mass error", lambda v: abs(v) <= 0.03, "{:+.1%}"),
    ("b_large", "large-scale b", lambda v: abs(v - 1) <= 0.05, "{:.3f}"),
)
#: ... and per field over all maps.
PER_FIELD = (
    ("max_coverage_error", "largest coverage error", lambda v: v <= 0.05, "{:.3f}"),
    ("z_std", "z std", lambda v: 0.9 <= v <= 1.15, "{:.3f}"),
    ("z_mean", "mean z", lambda v: abs(v) <= 0.1, "{:+.3f}"),
    ("tarp_ks_p", "TARP KS p", lambda v: v > 0.05, "{:.3f}"),
)


def _one(table: pd.DataFrame, path: Path, column: str, **where) -> float:
    """``column`` of the one row of ``table`` (read from ``path``) whose columns equal ``where``."""
    mask = np.logical_and.reduce([table[k] == v for k, v in where.items()])
    row = table[mask]
    if len(row) != 1:
        raise SystemExit(f"{path}: expected one row for {'/'.join(where.values())}, found {len(row)}")
    return float(row[column].iloc[0])


def goals(results: Path) -> list[tuple[str, float, bool, str]]:
    """(goal, value, met, format) for each goal, from ``results/metrics``'s csv files."""
    metrics = results / "metrics"
    paths = {name: metrics / f"{name}.csv" for name in ("calibration", "table1", "r_margin")}
    try:
        cal, table1, margin = (pd.read_csv(p) for p in paths.values())
    except FileNotFoundError as err:
        raise SystemExit(f"{results}: not a finished run ({err.filename} is missing)") from err

    def stat(mass_bin, field, statistic):
        return _one(cal, paths["calibration"], "value", mass_bin=mass_bin, field=field, statistic=statistic)

    out = []
    for statistic, label, met, fmt in PER_BIN:
        for f in FIELDS:
            for b in BINS:
                v = stat(b, f, statistic)
                out.append((f"{label}, {f} {b}", v, met(v), fmt))
    for statistic, label, met, fmt in PER_FIELD:
        for f in FIELDS:
            v = stat("all", f, statistic)
            out.append((f"{label}, {f}", v, met(v), fmt))
    for f in FIELDS:
        for b in BINS:
            rows = margin[(margin.mass_bin == b) & (margin.field == f)]
            if rows.empty:
                raise SystemExit(f"{paths['r_margin']}: no rows for {b}/{f}")
            v = float(rows["margin"].min())
            out.append((f"smallest r margin over the baselines, {f} {b}", v, v > 0, "{:+.4f}"))
    v = _one(table1, paths["table1"], "mean", mass_bin="low", field="dm", statistic="r", scale="small")
    out.append(("small-scale r, DM low", v, v >= DM_SMALL_SCALE_R_MIN, "{:.3f}"))
    return out


def table(runs: dict[str, Path]) -> str:
    """A markdown table: a row per goal, a column per run, and the count of goals missed."""
    per_run = {name: goals(path) for name, path in runs.items()}
    names = list(per_run)
    lines = ["| goal | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    first = per_run[names[0]]
    for i, (goal, *_rest) in enumerate(first):
        cells = []
        for name in names:
            _, v, met, fmt = per_run[name][i]
            cells.append(fmt.format(v) + ("" if met else " MISS"))
        lines.append(f"| {goal} | " + " | ".join(cells) + " |")
    missed = [str(sum(not met for _, _, met, _ in per_run[n])) for n in names]
    lines.append("| goals missed | " + " | ".join(missed) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="NAME=RESULTS", help="a name and a finished run's results folder")
    args = ap.parse_args(argv)
    runs = {}
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"expected NAME=RESULTS, got {item!r}")
        runs[name] = Path(path)
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
