# Config validation and input functions only: logic belongs in src/massmaps.
import sys
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from massmaps.mock import MockConfig  # noqa: E402

try:
    MockConfig.from_mapping(config["particles"]["mock"])
except (TypeError, ValueError) as err:
    raise ValueError(f"config: particles.mock: {err}") from None

RESULTS = f"results/{config['run']}"
SHARDS = list(range(config["sightlines"]["n_shards"]))
FIGURE_FORMATS = config["figures"]["formats"]


def get_shard_stores(wildcards):
    return expand(f"{RESULTS}/shards/shard_{{shard}}.zarr", shard=SHARDS)


def get_figure(name):
    return expand(f"{RESULTS}/figures/{name}.{{ext}}", ext=FIGURE_FORMATS)


def get_final_outputs():
    return [f"{RESULTS}/dataset/maps.zarr", *get_figure("fig1_mass_function")]
