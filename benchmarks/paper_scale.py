"""Projected wall time and peak memory of the paper-scale data set (config/paper.yaml) on this machine.

Draws the paper's catalogue and sightline plan, generates and projects a representative subset (every
``--stride``-th halo of one shard, so the whole mass range is covered), and extrapolates to the whole data set
from the per-halo generation time (by mass) and the per-sightline projection time.

    python benchmarks/paper_scale.py --stride 8
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import yaml

from massmaps import catalog, sightlines
from massmaps.cosmology import PAPER
from massmaps.mock import MockConfig, make_cluster
from massmaps.observables import project_fields

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stride", type=int, default=8, help="take every N-th halo of the shard")
    ap.add_argument("--shard", type=int, default=0)
    ap.add_argument("--cores", type=int, default=2, help="cores the projected wall time assumes")
    args = ap.parse_args()

    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    for k, v in paper.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) else v
    cat_cfg, sl_cfg, proj = base["catalog"], base["sightlines"], base["projection"]
    t0 = time.perf_counter()
    halos = catalog.draw_catalog(box_Mpc=cat_cfg["box_Mpc"], n_halos=cat_cfg["n_halos"], seed=base["seed"])
    plan = sightlines.plan_sightlines(
        halos, target_per_bin=sl_cfg["target_per_bin"], max_per_cluster=sl_cfg["max_per_cluster"],
        n_shards=sl_cfg["n_shards"], seed=base["seed"],
    )
    t_plan = time.perf_counter() - t0
    print(f"catalogue + plan: {len(halos)} halos, {len(plan)} sightlines, {plan.halo_id.nunique()} halos to generate, {t_plan:.1f} s")

    cfg = MockConfig.from_mapping({**base["particles"]["mock"], "cosmology": base["cosmology"]})
    shard = plan[plan["shard"] == args.shard]
    ids = shard.drop_duplicates("halo_id")["halo_id"].to_numpy()[:: args.stride]
    by_id = {int(r["halo_id"]): r for r in halos.to_dict("records")}
    rec = []
    for hid in ids:
        halo = by_id[int(hid)]
        t0 = time.perf_counter()
        cl = make_cluster(halo, cfg)
        t1 = time.perf_counter()
        views = shard[shard["halo_id"] == hid]
        for _, v in views.iterrows():
            project_fields(cl, sightlines.view_rotation_matrix(v), int(v["axis"]), npix=proj["npix"], pixel_Mpc=proj["pixel_Mpc"])
        t2 = time.perf_counter()
        rec.append((halo["M200m_Msun"], cl.dm.mass.size + cl.gas.mass.size, t1 - t0, (t2 - t1) / len(views), len(views)))
        print(f"  M200m={halo['M200m_Msun']:.3g}: {rec[-1][1]:>8d} particles, generate {t1 - t0:6.2f} s, "
              f"{len(views):3d} views x {1e3 * rec[-1][3]:6.1f} ms")
    rec = np.array(rec)
    # generation time against log mass (linear fit), applied to every halo of the plan
    logm = np.log10(rec[:, 0])
    fit = np.polyfit(logm, rec[:, 2], 1) if len(rec) > 2 else np.array([0.0, rec[:, 2].mean()])
    planned = plan.drop_duplicates("halo_id")
    gen_total = float(np.clip(np.polyval(fit, planned["log10_M200m"]), rec[:, 2].min(), None).sum())
    proj_total = float(np.sum(rec[:, 3] * rec[:, 4]) / rec[:, 4].sum()) * len(plan)
    total = gen_total + proj_total
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"\nmeasured {len(rec)} halos; generation fit t = {fit[0]:.2f} log10M + {fit[1]:.2f} s")
    print(f"projected: generation {gen_total / 3600:.2f} h, projection {proj_total / 3600:.2f} h (one process, "
          f"which uses {args.cores} threads in the SPH and projection kernels)")
    print(f"projected wall time of the paper data set on this machine: {total / 3600:.2f} h")
    print(f"peak memory of this process (one job's worth): {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
