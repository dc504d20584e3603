"""Rule table1: Table 1 (CSV, Markdown beside the paper's, LaTeX) and the r(k) margins over the baselines."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from massmaps import logs, store  # noqa: E402
from massmaps.evaluation import tables  # noqa: E402
from massmaps.files import write_text_atomic  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
ev = store.open_store(snakemake.input.evaluation).load()  # noqa: F821
table = tables.table1(ev)
margins = tables.baseline_margins(ev)
write_text_atomic(table.to_csv(index=False, float_format="%.6g"), snakemake.output.csv)  # noqa: F821
write_text_atomic(tables.table1_markdown(table), snakemake.output.markdown)  # noqa: F821
write_text_atomic(tables.table1_latex(table), snakemake.output.latex)  # noqa: F821
write_text_atomic(margins.to_csv(index=False, float_format="%.6g"), snakemake.output.margins)  # noqa: F821
for name in tables.empty_bins(ev):
    log.warning("mass bin %r holds no evaluated map: Table 1 shows it with n = 0", name)
log.info("Table 1\n%s", tables.table1_markdown(table))
log.info(
    "smallest margin of r(k) over the better baseline per mass bin, field and scale:\n%s",
    margins.groupby(["mass_bin", "field", "scale"], sort=False)["margin"].min().to_string(),
)
