# Config validation and input functions only: logic belongs in src/massmaps.
import sys
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from massmaps.mock import MockConfig  # noqa: E402
from massmaps.score import check_ncsnpp_kwargs  # noqa: E402
from massmaps.store import config_hash  # noqa: E402

try:
    MockConfig.from_mapping(config["particles"]["mock"])
except (TypeError, ValueError) as err:
    raise ValueError(f"config: particles.mock: {err}") from None
try:
    check_ncsnpp_kwargs(config["training"]["network"])
except ValueError as err:
    raise ValueError(f"config: training.network: {err}") from None
if abs(sum(config["split"]["fractions"]) - 1) > 1e-9:
    raise ValueError(f"config: split.fractions must sum to 1, got {config['split']['fractions']}")

RESULTS = f"results/{config['run']}"
SHARDS = list(range(config["sightlines"]["n_shards"]))
FIGURE_FORMATS = config["figures"]["formats"]
# everything that shapes the maps (recorded in every store), and everything that shapes a trained model
# (its checkpoints live in a folder of that name)
DATA_HASH = config_hash({k: config[k] for k in ("seed", "cosmology", "catalog", "sightlines", "particles", "projection")})
TRAINING_HASH = config_hash(
    {"data": DATA_HASH, "split": config["split"], "normalisation": config["normalisation"]}
    | {"training": {k: v for k, v in config["training"].items() if k not in ("time_budget_s", "runtime_margin_s", "device", "num_workers")}}
)


def get_shard_stores(wildcards):
    return expand(f"{RESULTS}/shards/shard_{{shard}}.zarr", shard=SHARDS)


def get_figure(name):
    return expand(f"{RESULTS}/figures/{name}.{{ext}}", ext=FIGURE_FORMATS)


def get_final_outputs():
    return [
        f"{RESULTS}/dataset/maps.zarr",
        *get_figure("fig1_mass_function"),
        f"{RESULTS}/metrics/posterior_summary.json",
    ]
