"""Rule conformal: the credible intervals' conformal recalibration, fitted on the validation split's
samples and reported on the test split's, before and after, per mass bin and field."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from massmaps import logs, store  # noqa: E402
from massmaps.evaluation import conformal  # noqa: E402
from massmaps.files import write_text_atomic  # noqa: E402

log = logs.setup(snakemake.log[0])  # noqa: F821
ranks = store.open_store(snakemake.input.evaluation)["rank_counts"].load()  # noqa: F821 (with its coordinates)
val = store.open_store(snakemake.input.validation)  # noqa: F821
truth = store.open_store(snakemake.input.dataset)["maps"].sel(sightline=val["sightline"].values)  # noqa: F821
test_counts, val_counts = {}, {}
for fld in store.TARGETS:
    test_counts[fld] = ranks.sel(field=fld).values
    val_counts[fld] = conformal.validation_rank_counts(
        val["samples"].sel(field=fld).values, truth.sel(field=fld).values
    )
table = conformal.conformal_tables(
    test_counts,
    val_counts,
    ranks["mass_bin"].values,
    ranks["halo_id"].values,
    seed=snakemake.params.seed,  # noqa: F821
)
markdown = conformal.conformal_markdown(table)
write_text_atomic(table.to_csv(index=False, float_format="%.6g"), snakemake.output.table)  # noqa: F821
write_text_atomic(markdown, snakemake.output.markdown)  # noqa: F821
log.info("conformal (%d validation maps)\n%s", val.sizes["sightline"], markdown)
