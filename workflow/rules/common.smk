# Config validation and input functions only: logic belongs in src/massmaps.
from massmaps import config as config_checks
from massmaps.evaluation.figure_specs import FIGURES as FIGURE_SPECS  # name, rule, inputs, caption of each
from massmaps.data.snapshot_config import GROUP_CATALOG_KEYS
from massmaps.data.snapshot_files import expand_files
from massmaps.observe.instruments import is_ideal

# Every bad key fails here, before any job runs, naming the key path and what was expected.
config_checks.validate(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
config_checks.check(config)
if config["evaluation"]["conformal"] and not config_checks.runs_conformal(config):
    logger.warning(
        f"evaluation.conformal: skipped, since sampling.split is {config['sampling']['split']!r} (the "
        "recalibration is fitted on the val split and reported on the test split)"
    )
if config_checks.test_box_ignored(config):
    logger.warning(
        f"catalog.test_box_Mpc: ignored, since catalog.source is {config['catalog']['source']!r} (a test box is "
        "drawn from the mass function)"
    )

# The mock's knobs plus the run's cosmology (the mock has no cosmology key of its own in the config).
MOCK_CONFIG = {**config["particles"]["mock"], "cosmology": config["cosmology"]}
EVALUATION = config_checks.evaluation_settings(config)

RESULTS = f"results/{config['run']}"
SHARDS = list(range(config["sightlines"]["n_shards"]))
FIGURE_FORMATS = config["figures"]["formats"]
# the projection block less its thread count (the maps are the same bytes for any number of threads)
PROJECTION = config_checks.data_settings(config)["projection"]
# everything that shapes the maps (recorded in every store), and everything that shapes a trained model
# (its checkpoints live in a folder of that name): the policy is massmaps.config.data_hash/training_hash
DATA_HASH = config_checks.data_hash(config)
TRAINING_HASH = config_checks.training_hash(config)
# The maps the model learns from and is evaluated on: the observed ones when an instrument is configured
# (rule observe_dataset), else the clean dataset itself (the observe stage does not run).
OBSERVED = not is_ideal(config["observe"])
MODEL_DATASET = f"{RESULTS}/observed/maps.zarr" if OBSERVED else f"{RESULTS}/dataset/maps.zarr"


def get_user_catalog_file(wildcards):
    # the user's catalogue is an input: editing it reruns halo_catalog and what depends on it
    return [config["catalog"]["file"]] if config["catalog"]["source"] == "file" else []


def get_sky_cl_files(wildcards):
    # a tSZ sky spectrum table is an input: editing it reruns observe_dataset and what follows
    sky = config["observe"]["tsz"].get("sky_cl_file")
    return [sky] if sky else []


def get_group_catalog_files(wildcards):
    if config["catalog"]["source"] != "group_catalog":
        return []
    return [str(p) for p in expand_files(config["particles"]["snapshot"]["group_catalog"], "group catalogue")]


def get_group_catalog_params():
    # only what reading the group catalogue depends on, so that projection knobs do not redo the catalogue
    snap = config["particles"]["snapshot"]
    return {k: snap[k] for k in GROUP_CATALOG_KEYS}


def get_snapshot_files(wildcards):
    if config["particles"]["source"] != "snapshot":
        return []
    return [str(p) for p in expand_files(config["particles"]["snapshot"]["files"])]


def get_shard_stores(wildcards):
    return expand(f"{RESULTS}/shards/shard_{{shard}}.zarr", shard=SHARDS)


def get_figure(name):
    return expand(f"{RESULTS}/figures/{name}.{{ext}}", ext=FIGURE_FORMATS)


FIGURES = tuple(FIGURE_SPECS)


def check_existing_outputs():
    from snakemake.io import is_flagged

    from massmaps.files import check_output_kinds

    check_output_kinds((str(out), is_flagged(out, "directory")) for rule in workflow.rules for out in rule.output)


def get_final_outputs():
    return [
        f"{RESULTS}/dataset/maps.zarr",
        f"{RESULTS}/metrics/posterior_summary.json",
        f"{RESULTS}/metrics/table1.csv",
        f"{RESULTS}/metrics/calibration.csv",
        # the conformal recalibration of the intervals, fitted on the validation split (rule conformal)
        *([f"{RESULTS}/metrics/conformal.csv"] if config_checks.runs_conformal(config) else []),
        f"{RESULTS}/metrics/linear_baselines.csv",
        *[path for name in FIGURES for path in get_figure(name)],
        # the observing ablation's table and figure, when variants are configured (rules in ablation.smk)
        *([f"{ABLATION}/ablation.csv"] if OBSERVING_VARIANTS else []),
    ]


# The observing ablation (rules in ablation.smk): each variant's dataset, model and sky table.
ABLATION = f"{RESULTS}/ablation/observing"
OBSERVING_VARIANTS = config["ablation"]["observing"]


def ablation_training_hash(variant):
    return config_checks.training_hash({**config, "observe": OBSERVING_VARIANTS[variant]})


def get_ablation_dataset(wildcards):
    # the clean maps for a variant without instruments; the main run's maps for the main run's instruments
    observe = OBSERVING_VARIANTS[wildcards.variant]
    if is_ideal(observe):
        return rules.assemble_dataset.output.store
    if observe == config["observe"]:
        return MODEL_DATASET
    return f"{ABLATION}/{wildcards.variant}/maps.zarr"


def get_ablation_model(wildcards):
    if ablation_training_hash(wildcards.variant) == TRAINING_HASH:
        return rules.train_model.output.model
    return f"{ABLATION}/{wildcards.variant}/model"


def get_ablation_sky_files(wildcards):
    sky = OBSERVING_VARIANTS[wildcards.variant]["tsz"].get("sky_cl_file")
    return [sky] if sky else []


def get_ablation_evaluations(wildcards):
    if not OBSERVING_VARIANTS:
        raise ValueError(
            "config: ablation.observing is empty; expected variant names with observe blocks, "
            "e.g. --configfile config/observing_ablation.yaml"
        )
    return expand(f"{ABLATION}/{{variant}}/evaluation.zarr", variant=list(OBSERVING_VARIANTS))
