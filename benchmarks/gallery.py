"""A gallery of mock clusters with their substructure, a merger and a gas-DM offset (massmaps.evaluation.plotting).

Generates a few clusters with the default MockConfig (every component on), projects them along z at the
paper's resolution (128 pixels of 0.1 Mpc) and writes one PNG of gas, DM, tSZ and X-ray maps per cluster,
marking the subhalos, the merger secondary (DM x, gas +) and the host's gas centre.

    python benchmarks/gallery.py --out /tmp/gallery.png [--zoom 6.4]
"""

from __future__ import annotations

import argparse

from massmaps import cosmology as cm
from massmaps.data.mock import make_cluster
from massmaps.evaluation.plotting import figure_substructure_gallery, save_figure
from massmaps.projection.observables import project_fields

# (title, M200m, extra catalogue columns, seed): a relaxed massive host, a forced merger, a disturbed host.
CLUSTERS = [
    ("1e15, relaxed", 1.0e15, {"merger": False, "pressure_type": "universal"}, 21),
    ("5e14, merger", 5.0e14, {"merger": True}, 4),
    ("3e14, disturbed", 3.0e14, {"merger": False, "pressure_type": "disturbed"}, 8),
]


def halo_row(M, seed, s=0.6, q=0.8, **extra):
    return dict(
        halo_id=seed,
        M200m_Msun=M,
        R200m_Mpc=float(cm.R200m(M)),
        c200m=float(cm.concentration_200m(M)),
        axis_ratio_s=s,
        axis_ratio_q=q,
        rot_qx=0.0,
        rot_qy=0.0,
        rot_qz=0.0,
        rot_qw=1.0,
        seed=seed,
        **extra,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/gallery.png")
    ap.add_argument("--npix", type=int, default=128)
    ap.add_argument("--pixel-Mpc", type=float, default=0.1)
    ap.add_argument("--zoom", type=float, default=None, help="show the central ZOOM Mpc only")
    args = ap.parse_args()
    panels = []
    for title, M, extra, seed in CLUSTERS:
        cl = make_cluster(halo_row(M, seed, **extra))
        maps = project_fields(cl, None, 2, npix=args.npix, pixel_Mpc=args.pixel_Mpc)
        comps = cl.meta["components"]
        n_sub = comps["subhalos"]["n_subhalos"]
        n_nb = comps["neighbours"]["n_neighbours"]
        label = f"{title}\n{n_sub} subhalos, {n_nb} neighbours"
        if comps["merger"]["merger"]:
            m = comps["merger"]
            label += f"\nmerger xi={m['mass_ratio']:.2f}, lag {1e3 * m['gas_lag_Mpc']:.0f} kpc"
        panels.append(dict(maps=maps, meta=cl.meta, title=label))
        print(label.replace("\n", "; "), flush=True)
    fig = figure_substructure_gallery(panels, pixel_Mpc=args.pixel_Mpc, axis=2, zoom_Mpc=args.zoom)
    save_figure(fig, [args.out], dpi=110)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
