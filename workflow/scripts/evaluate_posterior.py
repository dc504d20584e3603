"""Rule evaluate_posterior: the paper's metrics per test map (evaluation store) and a headline summary."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

import json  # noqa: E402

from massmaps import logs, store  # noqa: E402
from massmaps.evaluation import evaluate, tables  # noqa: E402
from massmaps.learning import reconstruct  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
samples = store.open_store(snakemake.input.samples)  # noqa: F821
dataset = store.open_store(snakemake.input.dataset)  # noqa: F821
ev = evaluate.evaluate(
    samples,
    dataset,
    snakemake.params.evaluation,
    h=snakemake.params.h,
    progress=True,  # noqa: F821
    sources={"samples": snakemake.input.samples, "dataset": snakemake.input.dataset},
)  # noqa: F821
store.write_store(ev, snakemake.output.evaluation)  # noqa: F821
summary = {"pixels": reconstruct.evaluate_samples(samples, dataset), "evaluation": tables.summary(ev)}
log.info("%s", json.dumps(summary, indent=1))
reconstruct.write_json_atomic(summary, snakemake.output.summary)  # noqa: F821
