# massmaps: galaxy-cluster gas and dark-matter mass maps from SZ and X-ray images
# (after Hsu et al., "Reconstructing Galaxy Cluster Mass Maps using Score-based Generative Modeling").
#
#   snakemake --cores 2                                   # the embedded laptop default
#   snakemake --cores 2 --configfile config/paper.yaml    # paper scale
#
# Stages live in workflow/rules/<stage>.smk; the science lives in src/massmaps/.

import re
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.20")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from massmaps.config import load_yaml  # noqa: E402

if Path("config/config.yaml").is_file():  # as the configfile below, relative to the working directory
    load_yaml("config/config.yaml")  # a syntax error names the file and line


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/catalog.smk"
include: "workflow/rules/sightlines.smk"
include: "workflow/rules/project.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/observe.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/ablation.smk"


# An existing output of the wrong kind (e.g. a folder where a table is written) fails here, before any job.
check_existing_outputs()


rule all:
    default_target: True
    input:
        get_final_outputs(),
