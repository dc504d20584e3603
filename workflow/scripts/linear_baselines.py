"""Rule linear_baselines: r(k) between the inputs (SZ, X-ray) and the targets (gas, DM) of every map."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from massmaps import logs, store  # noqa: E402
from massmaps.evaluation import evaluate  # noqa: E402
from massmaps.files import write_text_atomic  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
dataset = store.open_store(snakemake.input.dataset).load()  # noqa: F821
per_k, per_scale = evaluate.linear_baselines(
    dataset,
    snakemake.params.evaluation,
    h=snakemake.params.h,  # noqa: F821
    source=snakemake.input.dataset,
)  # noqa: F821
write_text_atomic(per_k.to_csv(index=False, float_format="%.6g"), snakemake.output.per_k)  # noqa: F821
write_text_atomic(per_scale.to_csv(index=False, float_format="%.6g"), snakemake.output.per_scale)  # noqa: F821
log.info("linear baselines r per scale (mean over maps, 16/84 offsets):\n%s", per_scale.round(4).to_string(index=False))
