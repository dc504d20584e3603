"""The workflow's configuration: YAML loading, schema validation with defaults, the checks across keys
that a schema cannot express, and the hash policy (which keys name the data and the trained model).

Every error is a :class:`ConfigError` that names the file and line (YAML syntax) or the key path
(``training.sigma_min``) and what was expected, so that a bad configuration fails before any job runs.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key path (or file and line)."""


def load_yaml(path: str | os.PathLike) -> dict:
    """A YAML config file as a mapping; syntax errors name the file, line and column."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); expected a YAML config file") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: YAML syntax error: {err.problem or err.context}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got {type(data).__name__}")
    return data


def _key_path(parts) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


def validate(config: dict, schema_path: str | os.PathLike) -> dict:
    """Check ``config`` against the JSON schema and fill in every default, in place (as Snakemake's
    ``validate`` does); the first error names the key path, the value and the key's description."""
    import jsonschema
    from jsonschema import Draft202012Validator, validators

    schema = load_yaml(schema_path)
    base_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, sub["default"])
        yield from base_properties(validator, properties, instance, subschema)

    validator_cls = validators.extend(Draft202012Validator, {"properties": set_defaults})
    error = jsonschema.exceptions.best_match(validator_cls(schema).iter_errors(config))
    if error is None:
        return config
    described = next((s for s in [error.schema, *_parent_schemas(schema, error)] if "description" in s), {})
    hint = f" ({' '.join(str(described['description']).split())})" if described else ""
    raise ConfigError(f"config: {_key_path(error.absolute_path)}: {error.message}{hint}")


def _parent_schemas(schema: Mapping, error) -> list[Mapping]:
    """The schemas of the error's key, innermost first (for a description to quote)."""
    found, node = [], schema
    for part in error.absolute_path:
        node = node.get("properties", {}).get(part) if isinstance(part, str) else node.get("items", {})
        if not isinstance(node, Mapping):
            break
        found.append(node)
    return found[::-1]


# ------------------------------------------------------------------------------- checks across keys
def _pair(pair) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in pair) + "]"


def _ordered_range(errors: list, key: str, pair) -> bool:
    """Whether ``pair`` is [lower, upper] with lower < upper; else an error naming ``key``."""
    if pair[0] < pair[1]:
        return True
    errors.append(f"config: {key}: {_pair(pair)} is not an increasing pair; expected [lower, upper] with lower < upper")
    return False


def _check_run(config: Mapping, errors: list) -> None:
    if set(str(config["run"])) <= {"."}:
        errors.append(
            f"config: run: {config['run']!r} would put outputs outside results/; expected a name such as "
            "'default' (letters, digits, '_', '-', '.')"
        )


def _check_catalog(config: Mapping, errors: list) -> None:
    cat = config["catalog"]
    if cat["source"] == "file" and not cat.get("file"):
        errors.append(
            "config: catalog.file: null, but catalog.source is 'file'; expected the path of a CSV or "
            "parquet halo catalogue"
        )
    if cat["source"] == "hmf":
        _ordered_range(errors, "catalog.m_min_Msun, catalog.m_max_Msun", (cat["m_min_Msun"], cat["m_max_Msun"]))
    if cat["source"] == "hmf" and cat["test_box_Mpc"] is not None:
        if not config["split"]["test_views"]:
            errors.append(
                f"config: catalog.test_box_Mpc: {cat['test_box_Mpc']}, but split.test_views is 0: the test box's "
                "halos would never be projected; expected split.test_views >= 1, or test_box_Mpc: null"
            )
        _ordered_range(
            errors, "catalog.test_box_m_min_Msun, catalog.m_max_Msun", (cat["test_box_m_min_Msun"], cat["m_max_Msun"])
        )


def test_box_ignored(config: Mapping) -> bool:
    """A test box is configured but the catalogue is not drawn from the mass function (start-up warning)."""
    return config["catalog"]["source"] != "hmf" and config["catalog"]["test_box_Mpc"] is not None


def _check_shards(config: Mapping, errors: list) -> None:
    """More projection jobs than halos leaves jobs with nothing to project. Known before any job runs
    for a catalogue drawn from the mass function; other catalogues are checked when the plan is made."""
    cat, n_shards = config["catalog"], config["sightlines"]["n_shards"]
    if cat["source"] != "hmf":
        return
    m_lo = max(cat["m_min_Msun"], 10 ** config["sightlines"]["log10_min"])
    if cat["n_halos"] is not None:
        n, how = cat["n_halos"], "catalog.n_halos"
    else:
        from .cosmology import CosmologyParams
        from .data.catalog import expected_count

        if not m_lo < cat["m_max_Msun"]:
            return
        n = expected_count(
            cat["box_Mpc"] ** 3, m_lo, cat["m_max_Msun"], CosmologyParams(**config["cosmology"]), cat["mass_function"]
        )
        how = f"the expected number above {m_lo:.3g} Msun in a box of catalog.box_Mpc = {cat['box_Mpc']}"
    if n_shards > n:
        errors.append(
            f"config: sightlines.n_shards: {n_shards} projection jobs for about {n:.0f} halos ({how}); "
            "expected at most one job per halo"
        )


def _check_split_and_bins(config: Mapping, errors: list) -> None:
    split, evaluation, sampling = config["split"], config["evaluation"], config["sampling"]
    fractions = split["fractions"]
    if abs(sum(fractions) - 1) > 1e-9:
        errors.append(
            f"config: split.fractions: {fractions} sum to {sum(fractions):.6g}; expected fractions of "
            "train, val and test that sum to 1"
        )
    names = ("train", "val", "test")
    needed = {"train": "training", sampling["split"]: "sampling.split"}
    if runs_conformal(config):
        needed.setdefault("val", "evaluation.conformal, which is fitted on it; or set it to false")
    for name, why in needed.items():
        if fractions[names.index(name)] <= 0:
            errors.append(
                f"config: split.fractions: the {name} fraction is 0, but the {name} split is needed "
                f"({why}); expected a positive fraction"
            )
    eval_range = split["eval_mass_range_Msun"]
    range_ok = _ordered_range(errors, "split.eval_mass_range_Msun", eval_range)
    for name, pair in evaluation["mass_bins"].items():
        bin_ok = _ordered_range(errors, f"evaluation.mass_bins.{name}", pair)
        outside = pair[1] <= eval_range[0] or pair[0] > eval_range[1]
        if range_ok and bin_ok and sampling["eval_range_only"] and outside:
            errors.append(
                f"config: evaluation.mass_bins.{name}: {_pair(pair)} lies outside "
                f"split.eval_mass_range_Msun {_pair(eval_range)}, so it would hold no map "
                "(sampling.eval_range_only is true); expected a bin inside the evaluation range"
            )


#: Keys of the evaluation block that the workflow reads and EvalConfig does not (Fig. 3's noise levels;
#: whether the conformal recalibration runs).
WORKFLOW_EVALUATION_KEYS = ("diffusion_levels", "conformal")


def runs_conformal(config: Mapping) -> bool:
    """Whether the conformal recalibration runs: it is fitted on the val split and reported on the test
    split, so only when the test split is the one sampled."""
    return bool(config["evaluation"].get("conformal")) and config["sampling"]["split"] == "test"


def evaluation_settings(config: Mapping) -> dict:
    """The evaluation block as :class:`massmaps.evaluation.evaluate.EvalConfig` takes it."""
    return {k: v for k, v in config["evaluation"].items() if k not in WORKFLOW_EVALUATION_KEYS}


def _check_learning(config: Mapping, errors: list) -> None:
    training, sampling = config["training"], config["sampling"]
    if not training["sigma_min"] < training["sigma_max"]:
        errors.append(
            f"config: training.sigma_min: {training['sigma_min']} is not below training.sigma_max "
            f"{training['sigma_max']}; expected 0 < sigma_min < sigma_max"
        )
    if training["sigma_train"] != "log_uniform" and training["preconditioning"] != "edm":
        errors.append(
            f"config: training.sigma_train: {training['sigma_train']!r} with training.preconditioning "
            f"{training['preconditioning']!r}; expected preconditioning edm (score_models' loss draws its own levels)"
        )
    for key in ("multiscale_loss", "profile_loss"):
        if training[key] and training["preconditioning"] != "edm":
            errors.append(
                f"config: training.{key}: {training[key]} with training.preconditioning "
                f"{training['preconditioning']!r}; expected preconditioning edm (score_models' loss is its own)"
            )
    if training["noise"] != "white" and training["preconditioning"] != "edm":
        errors.append(
            f"config: training.noise: {training['noise']!r} with training.preconditioning "
            f"{training['preconditioning']!r}; expected preconditioning edm (score_models' loss draws its own noise)"
        )
    norm = config["normalisation"]
    factor, stretch = norm["asinh_scale_factor"], norm["stretch"]
    if isinstance(factor, Mapping):
        idle = sorted(f for f in factor if (stretch if isinstance(stretch, str) else stretch.get(f, "none")) != "asinh")
        if idle:
            errors.append(
                f"config: normalisation.asinh_scale_factor names {idle}, whose normalisation.stretch is not asinh; "
                "expected only fields with stretch asinh"
            )
    ranks = training["nodes"] * training["processes_per_node"]
    if training["batch_size"] % ranks:
        errors.append(
            f"config: training.batch_size: {training['batch_size']} is not divisible by training.nodes x "
            f"training.processes_per_node = {ranks}; expected a multiple of the number of training processes"
        )
    from .learning.samplers import get_sampler

    solver = get_sampler(sampling["sampler"]).solver
    shared = {"denoiser", "x", "sigmas", "cond", "generator", "callback", "disable"}
    accepted = sorted(set(inspect.signature(solver).parameters) - shared)
    bad = sorted(set(sampling["sampler_kwargs"]) - set(accepted))
    if bad:
        errors.append(
            f"config: sampling.sampler_kwargs: {bad} not accepted by sampler {sampling['sampler']!r}; "
            f"expected some of {accepted}"
        )


def _check_library_configs(config: Mapping, errors: list) -> None:
    """The blocks that library dataclasses check (mock, evaluation, network, sources)."""
    from .data.mock import MockConfig
    from .data.snapshot_config import check_sources
    from .evaluation.evaluate import EvalConfig
    from .learning.score import check_ncsnpp_kwargs

    evaluation = evaluation_settings(config)
    for key, check in (
        (
            "particles.mock",
            lambda: MockConfig.from_mapping({**config["particles"]["mock"], "cosmology": config["cosmology"]}),
        ),
        ("evaluation", lambda: EvalConfig.from_mapping(evaluation)),
        ("training.network", lambda: check_ncsnpp_kwargs(config["training"]["network"])),
        (None, lambda: check_sources(config["catalog"], config["particles"])),
    ):
        try:
            check()
        except (TypeError, ValueError) as err:
            message = str(err)
            errors.append(message if message.startswith("config:") else f"config: {key}: {message}")


def _check_observe(config: Mapping, errors: list) -> None:
    """The instruments build from their presets and overrides; an observed X-ray map has its temperature map.
    The same for each variant of the observing ablation."""
    blocks = {"observe": config["observe"]}
    blocks.update({f"ablation.observing.{name}": block for name, block in config["ablation"]["observing"].items()})
    for key, block in blocks.items():
        _check_observe_block(block, key, config["projection"]["fields"], errors)


def _check_observe_block(block: Mapping, key: str, fields, errors: list) -> None:
    from .observe.instruments import from_config

    try:
        tsz, xray, _ = from_config(block)
    except (TypeError, ValueError) as err:
        text = str(err)
        errors.append(f"config: {text if key == 'observe' else f'{key}: {text}'}")
        return
    if xray is not None and "xray_spectrum" not in fields:
        errors.append(
            f"config: {key}.xray: an observed X-ray map needs the projected X-ray spectrum; "
            f"expected xray_spectrum in projection.fields, got {fields}"
        )
    missing = [f for f in ("tsz", "xray") if f not in fields]
    if missing and (xray is not None or tsz is not None):
        errors.append(f"config: {key}: the observed inputs need {missing} in projection.fields, got {fields}")


def check(config: Mapping) -> None:
    """Checks across keys, on a config that passed :func:`validate`; every problem found is reported at once."""
    errors: list[str] = []
    for step in (
        _check_run,
        _check_catalog,
        _check_split_and_bins,
        _check_learning,
        _check_observe,
        _check_library_configs,
    ):
        step(config, errors)
    if not errors:
        _check_shards(config, errors)
    if errors:
        raise ConfigError("\n".join(errors))


#: Top-level keys that shape the maps, the plan and the split: the data hash covers exactly these.
DATA_KEYS = ("seed", "cosmology", "catalog", "sightlines", "particles", "projection", "split")
#: Keys inside those blocks that change how fast, not what: left out of the data hash (the projection
#: writes the same bytes for any number of threads).
DATA_IGNORED = {"projection": ("threads",)}
#: Training keys that change how or where training runs, not the model it converges to.
TRAINING_IGNORED = (
    "time_budget_s",
    "runtime_margin_s",
    "device",
    "num_workers",
    "lock_stale_s",
    "nodes",  # data-parallel ranks reach one process's weights (to float32 rounding; tests/test_distributed.py)
    "processes_per_node",
    "compile",  # the compiled network computes the eager one's loss to float32 rounding
)


#: Training keys added after models were trained, at the value that trains those models: left out of the
#: hash at that value, so that a model trained before the key existed keeps its checkpoint folder.
TRAINING_LATER_DEFAULTS = {
    "precision": "float32",
    "lr_schedule": "constant",
    "sigma_train": "log_uniform",
    "sigma_train_median": 0.6,
    "sigma_train_width": 1.2,
    "multiscale_loss": 0.0,
    "profile_loss": 0.0,
    "mean_correction": False,
    "ema_gamma": None,
}
#: Data keys added after datasets were made, at the value that made them: left out of the data hash at that
#: value, so that those datasets (and the models trained on them) stay valid.
DATA_LATER_DEFAULTS = {"catalog": {"test_box_Mpc": None, "test_box_m_min_Msun": 6.0e14}}
#: Normalisation keys added after models were trained, at the value that trains those models (as above).
NORMALISATION_LATER_DEFAULTS = {"asinh_scale_factor": 1.0}


def data_settings(config: Mapping) -> dict:
    """The settings that shape the dataset store: :data:`DATA_KEYS` less :data:`DATA_IGNORED`."""
    part = {}
    for key in DATA_KEYS:
        block = config[key]
        if isinstance(block, Mapping):
            later = DATA_LATER_DEFAULTS.get(key, {})
            block = {
                k: v
                for k, v in block.items()
                if k not in DATA_IGNORED.get(key, ()) and not (k in later and v == later[k])
            }
        part[key] = block
    return part


def data_hash(config: Mapping) -> str:
    """Hash of everything that shapes the dataset store (recorded in every store's attributes).

    Sampling, evaluation and figure options, the run name and the training block do not enter it:
    changing them never re-projects anything.
    """
    from .store import config_hash

    return config_hash(data_settings(config))


def training_hash(config: Mapping) -> str:
    """Hash of everything that shapes a trained model: the data hash, the observe block (the inputs the model
    sees), the normalisation and the training block less :data:`TRAINING_IGNORED` (names the model's
    checkpoint folder, so that a changed setting never resumes another model's checkpoint)."""
    from .store import config_hash

    training = {
        k: v
        for k, v in config["training"].items()
        if k not in TRAINING_IGNORED and not (k in TRAINING_LATER_DEFAULTS and v == TRAINING_LATER_DEFAULTS[k])
    }
    normalisation = {
        k: v
        for k, v in config["normalisation"].items()
        if not (k in NORMALISATION_LATER_DEFAULTS and v == NORMALISATION_LATER_DEFAULTS[k])
    }
    shaped = {"data": data_hash(config), "normalisation": normalisation, "training": training}
    return config_hash({**shaped, "observe": config["observe"]})


def merge(base: dict, extra: Mapping) -> dict:
    """Merge ``extra`` into ``base`` in place, nested mappings key by key (as Snakemake merges config files)."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


DEFAULT_SCHEMA = Path(__file__).resolve().parents[2] / "workflow/schemas/config.schema.yaml"


def load_merged(files, schema: str | os.PathLike = DEFAULT_SCHEMA) -> dict:
    """Config files merged in order (as Snakemake merges config/config.yaml and each --configfile), validated
    with the schema's defaults filled in and checked; raises :class:`ConfigError`."""
    config: dict = {}
    for path in files:
        merge(config, load_yaml(path))
    validate(config, schema)
    check(config)
    return config


def main(argv: list[str] | None = None) -> int:
    """``python -m massmaps.config FILE [FILE ...]``: check config files as the workflow would merge them
    (config/config.yaml first, then each --configfile), without running anything."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m massmaps.config", description=main.__doc__)
    parser.add_argument("files", nargs="+", help="config files, in the order Snakemake would merge them")
    parser.add_argument(
        "--schema", default=DEFAULT_SCHEMA, help="the JSON schema (default: the workflow's, beside this source tree)"
    )
    args = parser.parse_args(argv)
    try:
        config = load_merged(args.files, args.schema)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"ok: {' + '.join(args.files)} (run {config['run']!r})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
