"""Rule observing_ablation: the headline statistics of every observing variant side by side (CSV and
Markdown, with bootstrap ranges over clusters) and r(k) of each variant's posterior mean, with the scale
where its tSZ beam's transfer function falls to 1/2."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from massmaps import logs, store  # noqa: E402
from massmaps.evaluation import ablation  # noqa: E402
from massmaps.files import write_text_atomic  # noqa: E402
from massmaps.observe.observe import beam_half_transfer_k  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
variants = dict(snakemake.params.variants)  # noqa: F821
paths = snakemake.input.evaluations  # noqa: F821
evaluations = {name: store.open_store(path).load() for name, path in zip(variants, paths)}
table, curves = ablation.ablation_table(evaluations, seed=snakemake.params.seed)  # noqa: F821
marks = {name: beam_half_transfer_k(block, snakemake.params.cosmology) for name, block in variants.items()}  # noqa: F821
curves["k_beam_half"] = curves["variant"].map(marks)
k_unit = next(iter(evaluations.values())).attrs.get("k_unit", "")
markdown = "".join(f"## {mb}\n\n{ablation.ablation_markdown(table, mb)}\n" for mb in dict.fromkeys(table["mass_bin"]))
write_text_atomic(table.to_csv(index=False, float_format="%.6g"), snakemake.output.table)  # noqa: F821
write_text_atomic(curves.to_csv(index=False, float_format="%.6g"), snakemake.output.curves)  # noqa: F821
write_text_atomic(markdown, snakemake.output.markdown)  # noqa: F821
ablation.figure_r_of_k(curves, snakemake.output.figure, marks=marks, k_label=f"k [{k_unit}]")  # noqa: F821
log.info("%d variants\n%s", len(variants), ablation.ablation_markdown(table, "all"))
