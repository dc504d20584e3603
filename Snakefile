# massmaps: galaxy-cluster gas and dark-matter mass maps from SZ and X-ray images
# (after Hsu et al., "Reconstructing Galaxy Cluster Mass Maps using Score-based Generative Modeling").
#
#   snakemake --cores 2                                   # the embedded laptop default
#   snakemake --cores 2 --configfile config/paper.yaml    # paper scale
#
# Stages live in workflow/rules/<stage>.smk; the science lives in src/massmaps/.

from snakemake.utils import min_version

min_version("9.20")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/catalog.smk"
include: "workflow/rules/sightlines.smk"
include: "workflow/rules/project.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        get_final_outputs(),
    default_target: True
