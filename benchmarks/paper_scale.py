"""Projected wall time and peak memory of the paper-scale data set (config/paper.yaml) on this machine.

Draws the paper's catalogue and sightline plan, generates and projects a representative subset (every
``--stride``-th halo of one shard, so the whole mass range is covered) exactly as the ``project_shard`` rule
does (:func:`massmaps.projection.shards.project_shard`: SPH only for the particles the halo's views show), and
extrapolates to the whole data set: generation time per halo and projection time per sightline, each
interpolated in log mass between the measured halos and summed over the plan's halos and sightlines.

``--jobs J --threads T`` runs J worker processes at once, T threads each (numba and the k-d tree), the
way ``snakemake --cores J*T`` runs J projection jobs of ``projection.threads: T``. Every worker does the
whole subset, so each time is measured under the load of J jobs throughout (times are averaged over the
workers); the projected wall time is the total over the data set divided by J.

    python benchmarks/paper_scale.py --stride 8 --jobs 2 --threads 1
    python benchmarks/paper_scale.py --stride 8 --jobs 1 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stride", type=int, default=8, help="take every N-th halo of the shard")
    ap.add_argument("--shard", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes run at once")
    ap.add_argument("--threads", type=int, default=1, help="threads per worker (numba and k-d tree)")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def paper_config() -> dict:
    import yaml

    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    for k, v in paper.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) else v
    return base


def plan_and_subset(base: dict, shard: int, stride: int):
    from massmaps.data import catalog, sightlines

    cat_cfg, sl_cfg = base["catalog"], base["sightlines"]
    halos = catalog.draw_catalog(box_Mpc=cat_cfg["box_Mpc"], n_halos=cat_cfg["n_halos"], seed=base["seed"])
    plan = sightlines.plan_sightlines(
        halos, target_per_bin=sl_cfg["target_per_bin"], max_per_cluster=sl_cfg["max_per_cluster"],
        n_shards=sl_cfg["n_shards"], seed=base["seed"],
    )  # fmt: skip
    rows = plan[plan["shard"] == shard]
    ids = rows.drop_duplicates("halo_id")["halo_id"].to_numpy()[::stride]
    return halos, plan, rows, ids


def worker(args) -> None:
    """Generate and project this worker's share of the subset; print one JSON record per halo."""
    import numba

    from massmaps.data import sightlines
    from massmaps.data.mock import MockConfig, make_cluster
    from massmaps.projection.observables import project_fields

    base = paper_config()
    proj = base["projection"]
    halos, _, rows, ids = plan_and_subset(base, args.shard, args.stride)
    numba.set_num_threads(args.threads)
    cfg = MockConfig.from_mapping(
        {**base["particles"]["mock"], "cosmology": base["cosmology"], "sph_workers": args.threads}
    )
    by_id = {int(r["halo_id"]): r for r in halos.to_dict("records")}
    half = 0.5 * proj["npix"] * proj["pixel_Mpc"]
    # JIT warm-up outside the timings (the cache makes this quick after the first run)
    warm = make_cluster(by_id[int(ids[-1])], cfg, views=[None], half_Mpc=half)
    project_fields(warm, None, 0, npix=proj["npix"], pixel_Mpc=proj["pixel_Mpc"])
    for hid in ids:
        halo = by_id[int(hid)]
        views = rows[rows["halo_id"] == hid]
        rots = [sightlines.view_rotation_matrix(v) for _, v in views.iterrows()]
        t0 = time.perf_counter()
        cl = make_cluster(halo, cfg, views=rots, half_Mpc=half)
        t1 = time.perf_counter()
        for R, (_, v) in zip(rots, views.iterrows()):
            project_fields(cl, R, int(v["axis"]), npix=proj["npix"], pixel_Mpc=proj["pixel_Mpc"])
        t2 = time.perf_counter()
        rec = {
            "M200m": float(halo["M200m_Msun"]),
            "drawn": int(cl.meta["n_dm_drawn"] + cl.meta["n_gas_drawn"]),
            "kept": len(cl.dm) + len(cl.gas),
            "generate_s": t1 - t0,
            "project_s_per_view": (t2 - t1) / len(rots),
            "views": len(rots),
        }
        print(json.dumps(rec), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps({"peak_GB": peak}), flush=True)


def main() -> None:
    args = parse_args()
    if args.worker is not None:
        worker(args)
        return
    import numpy as np

    base = paper_config()
    t0 = time.perf_counter()
    _, plan, _, ids = plan_and_subset(base, args.shard, args.stride)
    print(f"catalogue + plan: {plan.halo_id.nunique()} halos to generate, {len(plan)} sightlines, "
          f"{time.perf_counter() - t0:.1f} s; measuring {len(ids)} halos of shard {args.shard} in "
          f"{args.jobs} process(es) x {args.threads} thread(s)")  # fmt: skip
    env = {**os.environ, "NUMBA_NUM_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, __file__, "--stride", str(args.stride), "--shard", str(args.shard), "--jobs",
           str(args.jobs), "--threads", str(args.threads)]  # fmt: skip
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen([*cmd, "--worker", str(k)], env=env, stdout=subprocess.PIPE, text=True)
        for k in range(args.jobs)
    ]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        sys.exit(f"a worker failed: exit codes {[p.returncode for p in procs]}")
    per_worker, peaks = [], []
    for out in outs:
        recs = []
        for line in out.splitlines():
            r = json.loads(line)
            (peaks.append(r["peak_GB"]) if "peak_GB" in r else recs.append(r))
        per_worker.append(recs)
    # the same halos in the same order in every worker: average their times
    recs = [
        {**rs[0], **{k: float(np.mean([r[k] for r in rs])) for k in ("generate_s", "project_s_per_view")}}
        for rs in zip(*per_worker)
    ]
    recs.sort(key=lambda r: -r["M200m"])
    for r in recs:
        print(f"  M200m={r['M200m']:.3g}: {r['drawn']:>8d} particles drawn, {r['kept']:>8d} kept, generate "
              f"{r['generate_s']:6.2f} s, {r['views']:3d} views x {1e3 * r['project_s_per_view']:6.1f} ms")  # fmt: skip
    logm = np.log10([r["M200m"] for r in recs])
    gen = np.array([r["generate_s"] for r in recs])
    order = np.argsort(logm)
    planned = plan.drop_duplicates("halo_id")
    gen_total = float(np.interp(planned["log10_M200m"], logm[order], gen[order]).sum())
    views = np.array([r["views"] for r in recs])
    # per sightline, interpolated in log mass too: the subset's views are not spread over the mass
    # range as the plan's are (one 3.6e15 cluster of the shard has 69 of them)
    per_view = np.array([r["project_s_per_view"] for r in recs])
    proj_total = float(np.interp(plan["log10_M200m"], logm[order], per_view[order]).sum())
    per_view = proj_total / len(plan)
    total = (gen_total + proj_total) / args.jobs
    print(
        f"\nsubset: {len(recs)} halos, {views.sum()} sightlines, each done by {args.jobs} worker(s) in {wall:.0f} s wall"
    )
    print(f"data set, summed over jobs: generation {gen_total / 3600:.2f} h, projection {proj_total / 3600:.2f} h "
          f"({1e3 * per_view:.0f} ms per sightline)")  # fmt: skip
    print(f"projected wall time of the paper data set on this machine ({args.jobs} jobs x {args.threads} "
          f"threads): {total / 3600:.2f} h")  # fmt: skip
    print(f"peak memory per job: {max(peaks):.2f} GB")


if __name__ == "__main__":
    main()
