"""Rule halo_catalog: draw halos from the mass function, or read the user's catalogue or a group catalogue."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from massmaps import logs  # noqa: E402
from massmaps.cosmology import CosmologyParams  # noqa: E402
from massmaps.data import catalog  # noqa: E402
from massmaps.data.group_catalog import read_group_catalog  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
cfg = snakemake.params.catalog  # noqa: F821
params = CosmologyParams(**snakemake.params.cosmology)  # noqa: F821
model = catalog.HaloModel(
    mass_function=cfg["mass_function"], concentration=cfg["concentration"], sigma_log10_c=cfg["sigma_log10_c"]
)
seed = snakemake.params.seed  # noqa: F821
if cfg["source"] == "file":
    halos = catalog.read_catalog(cfg["file"], seed=seed, m_min=cfg["m_min_Msun"], model=model, params=params)
elif cfg["source"] == "group_catalog":
    snap = snakemake.params.snapshot  # noqa: F821
    halos = read_group_catalog(
        snap["group_catalog"], snap, m_min=cfg["m_min_Msun"], n_halos=cfg["n_halos"], seed=seed, params=params
    )
    log.info("read %s", snap["group_catalog"])
else:
    halos = catalog.draw_catalog(
        box_Mpc=cfg["box_Mpc"],
        m_min=cfg["m_min_Msun"],
        m_max=cfg["m_max_Msun"],
        n_halos=cfg["n_halos"],
        seed=seed,
        model=model,
        params=params,
        test_box_Mpc=cfg["test_box_Mpc"],
        test_box_m_min=cfg["test_box_m_min_Msun"],
    )
    if cfg["test_box_Mpc"] is not None:
        log.info(
            "%d of them above %.3g Msun from the (%.1f Mpc)^3 test box (test clusters only)",
            int(halos[catalog.TEST_ONLY].sum()),
            cfg["test_box_m_min_Msun"],
            cfg["test_box_Mpc"],
        )
    expected = catalog.expected_count(
        cfg["box_Mpc"] ** 3, cfg["m_min_Msun"], cfg["m_max_Msun"], params, model.mass_function
    )
    log.info("expected %.1f halos from %s in a (%.1f Mpc)^3 box", expected, model.mass_function, cfg["box_Mpc"])
log.info("%d halos, M200m from %.3g to %.3g Msun", len(halos), halos["M200m_Msun"].min(), halos["M200m_Msun"].max())
catalog.write_parquet_atomic(halos, snakemake.output.catalog)  # noqa: F821
