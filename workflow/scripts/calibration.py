"""Rule calibration: coverage, ranks, z-scores and TARP per mass bin and field, with bootstrap intervals."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from massmaps import logs, store  # noqa: E402
from massmaps.evaluation import tables  # noqa: E402
from massmaps.files import write_text_atomic  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
ev = store.open_store(snakemake.input.evaluation).load()  # noqa: F821
table, per_map = tables.calibration_tables(ev, seed=snakemake.params.seed)  # noqa: F821
markdown = tables.calibration_markdown(table, int(ev.attrs["n_posterior_samples"]))
write_text_atomic(table.to_csv(index=False, float_format="%.6g"), snakemake.output.table)  # noqa: F821
write_text_atomic(per_map.to_csv(index=False, float_format="%.6g"), snakemake.output.per_map)  # noqa: F821
write_text_atomic(markdown, snakemake.output.markdown)  # noqa: F821
log.info("calibration\n%s", markdown)
