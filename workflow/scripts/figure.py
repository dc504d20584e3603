"""Figure rules (every figure_* rule): draw one figure from the pipeline's stores and tables."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from massmaps import logs  # noqa: E402
from massmaps.evaluation import figures  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
figures.make_figure(
    snakemake.params.name,
    dict(snakemake.input.items()),
    list(snakemake.output),
    snakemake.params.figures,  # noqa: F821
    snakemake.params.config,
)  # noqa: F821
log.info("wrote %s", ", ".join(snakemake.output))  # noqa: F821
