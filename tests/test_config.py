"""The config schema: defaults fill in, typos and wrong values fail with the key's name."""

import copy
import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config, validate

from massmaps.cosmology import CosmologyParams
from massmaps.data.mock import MockConfig

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")


def load(name="config.yaml"):
    return yaml.safe_load((ROOT / "config" / name).read_text())


def test_default_config_valid_and_complete():
    config = load()
    validate(config, schema=SCHEMA)
    filled = {}
    validate(filled, schema=SCHEMA)  # defaults fill an empty config
    assert filled["projection"]["npix"] == config["projection"]["npix"]
    assert filled["catalog"]["mass_function"] == "tinker08"


def test_paper_config_merges_and_is_valid():
    """--configfile config/paper.yaml, merged the way Snakemake merges it (nested mappings key by key)."""
    config = load()
    update_config(config, load("paper.yaml"))
    validate(config, schema=SCHEMA)
    assert config["projection"] == {**config["projection"], "npix": 128, "pixel_Mpc": 0.1}
    assert config["catalog"]["n_halos"] == 6233
    # the paper's network, not the laptop's keys merged into it
    from score_models import NCSNpp

    from massmaps.learning.score import build_score_model

    defaults = inspect.signature(NCSNpp.__init__).parameters
    network = config["training"]["network"]
    for key in ("nf", "ch_mult", "attention", "fir", "num_res_blocks"):
        want = defaults[key].default
        assert network[key] == (list(want) if isinstance(want, tuple) else want), key
    hparams = build_score_model(network, device="cpu").model.hyperparameters
    assert (hparams["nf"], tuple(hparams["ch_mult"]), hparams["attention"], hparams["fir"]) == (
        128,
        (2, 2, 2, 2),
        True,
        True,
    )


@pytest.mark.parametrize(
    "path, value, words",
    [
        (("projection", "npix"), "many", "npix"),
        (("projection", "npix"), 2, "npix"),
        (("sightlines", "target_per_bin"), 0, "target_per_bin"),
        (("catalog", "box_Mpc"), -5.0, "box_Mpc"),
        (("projection", "backend"), "fastest", "backend"),
        (("seed",), 1.5, "seed"),
        (("normalisation", "stretch"), "sqrt", "sqrt"),
        (("normalisation", "stretch"), {"sz": "log"}, "sz"),
        (("evaluation", "k_length_unit"), "kpc", "kpc"),
        (("evaluation", "mass_bins"), {"low": [2e14]}, "low"),
    ],
)
def test_wrong_type_or_range_rejected(path, value, words):
    config = copy.deepcopy(load())
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(Exception) as err:
        validate(config, schema=SCHEMA)
    assert words in str(err.value)


def test_per_field_stretch_accepted():
    config = copy.deepcopy(load())
    config["normalisation"]["stretch"] = {"tsz": "log", "xray": "log"}
    validate(config, schema=SCHEMA)


def mock_schema():
    schema = yaml.safe_load(Path(SCHEMA).read_text())
    return schema, schema["properties"]["particles"]["properties"]["mock"]


# cosmology comes from the top-level block; sph_workers from the projection job's threads
MOCK_FIELDS = [f.name for f in dataclasses.fields(MockConfig) if f.name not in ("cosmology", "sph_workers")]


def test_mock_schema_defaults_equal_mockconfig():
    # One schema property per MockConfig field (but cosmology and sph_workers), each with the
    # dataclass default, of the same type, so the two cannot drift apart.
    schema, mock = mock_schema()
    props = mock["properties"]
    assert mock["additionalProperties"] is False
    assert set(props) == set(MOCK_FIELDS)
    default = MockConfig()
    for name in MOCK_FIELDS:
        want = getattr(default, name)
        want = list(want) if isinstance(want, tuple) else want
        got = props[name]["default"]
        assert got == want and type(got) is type(want), (name, got, want)
        assert props[name].get("description"), name
    cosmo = schema["properties"]["cosmology"]["properties"]
    assert {k: v["default"] for k, v in cosmo.items()} == dataclasses.asdict(CosmologyParams())


@pytest.mark.parametrize("config", [{}, {"particles": {}}, {"particles": {"mock": {}}}, "config.yaml"])
def test_mock_defaults_filled_by_the_schema(config):
    # snakemake's validate(set_default=True) fills the nested mock block, whether or not it is written.
    config = load(config) if isinstance(config, str) else copy.deepcopy(config)
    validate(config, schema=SCHEMA)
    mock = config["particles"]["mock"]
    assert set(mock) == set(MOCK_FIELDS)
    assert MockConfig.from_mapping({**mock, "cosmology": config["cosmology"]}) == MockConfig()


def test_unsure_mock_values_are_marked():
    # Every value docs/physics.md marks UNSURE (a guess or a design choice) says so.
    props = mock_schema()[1]["properties"]
    unsure = [
        "n_ngb",
        "sigma_ln_outer_norm",
        "disturbed_c_factor",
        "gas_ellipticity_scale",
        "sigma_ln_gas_rho0",
        "gas_offset_relaxed_R200m",
        "gas_offset_disturbed_R200m",
        "hydrostatic_bias",
        "p_cool_core",
        "p_universal",
        "p_disturbed",
        "sigma_ln_P0",
        "sigma_ln_c500",
        "density_modulation_a0",
        "density_modulation_x0",
        "g_ff",
        "subhalo_log10_A0",
        "gao_a",
        "gao_alpha",
        "gao_beta",
        "subhalo_c_factor",
        "subhalo_rt_max_R200m",
        "ram_pressure_alpha",
        "p_merge",
        "merger_xi_min",
        "merger_xi_max",
        "merger_d_min_R200m",
        "merger_d_max_R200m",
        "merger_gas_lag_min_Mpc",
        "merger_gas_lag_max_Mpc",
    ]
    missing = [k for k in unsure if "UNSURE" not in props[k]["description"]]
    assert not missing, missing


@pytest.mark.parametrize(
    "key, value",
    [
        ("p_merge", 1.5),
        ("components", ["host_gas", "subhaloes"]),
        ("n_ngb", 64.5),
        ("hmf_model", "tinker"),
        ("n_ngbb", 3),
    ],
)
def test_bad_mock_value_rejected_by_schema(key, value):
    config = copy.deepcopy(load())
    config["particles"]["mock"][key] = value
    with pytest.raises(Exception) as err:
        validate(config, schema=SCHEMA)
    assert key in str(err.value) or repr(value) in str(err.value)


def test_misspelled_key_rejected():
    config = copy.deepcopy(load())
    config["projection"]["n_pix"] = 64
    with pytest.raises(Exception) as err:
        validate(config, schema=SCHEMA)
    assert "n_pix" in str(err.value)


def dry_run(tmp_path, *configfiles):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--configfile",
            str(ROOT / "config" / "config.yaml"),
            *map(str, configfiles),
            "--directory",
            str(tmp_path),
            "-s",
            str(ROOT / "Snakefile"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_snakemake_dry_run_ok(tmp_path):
    out = dry_run(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "project_shard" in out.stdout + out.stderr


def test_snakemake_reports_bad_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("projection:\n  pixel_Mpc: -0.1\n")
    out = dry_run(tmp_path, bad)
    assert out.returncode != 0
    assert "pixel_Mpc" in out.stdout + out.stderr


def test_snakemake_reports_bad_mock_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("particles:\n  mock:\n    n_ngbb: 32\n")
    out = dry_run(tmp_path, bad)
    assert out.returncode != 0
    assert "n_ngbb" in out.stdout + out.stderr


def test_snapshot_defaults_match_the_library():
    import dataclasses

    from massmaps.data.snapshot_config import SnapshotConfig

    filled = {}
    validate(filled, schema=SCHEMA)
    # every library field but sph_workers, which the projection job sets from its threads
    library = dataclasses.asdict(SnapshotConfig())
    assert library.pop("sph_workers") >= 1
    assert filled["particles"]["snapshot"] == library


def test_snakemake_reports_snapshot_without_centres(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("particles:\n  source: snapshot\n  snapshot: {files: snap.hdf5}\n")
    out = dry_run(tmp_path, bad)
    assert out.returncode != 0
    assert "catalog.source" in out.stdout + out.stderr


# ------------------------------------------------------------- bad configurations fail before any job
BAD_CONFIGS = [
    ("training.sigma_min", {"training": {"sigma_min": 20.0}}),
    ("evaluation.mass_bins.low", {"evaluation": {"mass_bins": {"low": [6e14, 2e14], "high": [6e14, 1e15]}}}),
    ("evaluation.mass_bins.huge", {"evaluation": {"mass_bins": {"huge": [2e15, 5e15]}}}),
    ("split.eval_mass_range_Msun", {"split": {"eval_mass_range_Msun": [1e15, 2e14]}}),
    ("split.fractions", {"split": {"fractions": [0.5, 0.2, 0.2]}}),
    ("split.fractions", {"split": {"fractions": [0.9, 0.1, 0.0]}}),
    ("split.fractions", {"split": {"fractions": [0.9, 0.0, 0.1]}}),  # evaluation.conformal needs val
    ("sampling.sampler_kwargs", {"sampling": {"sampler_kwargs": {"bogus": 1}}}),
    ("run", {"run": ".."}),
    ("figures.formats", {"figures": {"formats": ["png", "png"]}}),
    ("sightlines.n_shards", {"sightlines": {"n_shards": 50000}}),
    ("sightlines.n_shards", {"catalog": {"n_halos": 3}, "sightlines": {"n_shards": 4}}),
    ("catalog.file", {"catalog": {"source": "file"}}),
    ("catalog.m_min_Msun", {"catalog": {"m_min_Msun": 1e17}}),
    ("catalog.test_box_Mpc", {"split": {"test_views": 0}}),  # the default's test box would never be projected
    ("catalog.test_box_m_min_Msun", {"catalog": {"test_box_m_min_Msun": 1e17}}),
    ("training.steps", {"training": {"steps": -1}}),
    ("training.sigma_train", {"training": {"sigma_train": "log_normal", "preconditioning": "score_models"}}),
    ("training.multiscale_loss", {"training": {"multiscale_loss": 1.0, "preconditioning": "score_models"}}),
    ("training.multiscale_loss", {"training": {"multiscale_loss": -1.0}}),
    ("training.profile_loss", {"training": {"profile_loss": 2.0, "preconditioning": "score_models"}}),
    ("training.profile_loss", {"training": {"profile_loss": -1.0}}),
    ("training.mean_correction", {"training": {"mean_correction": "yes"}}),
    ("training.noise", {"training": {"noise": "pyramid", "preconditioning": "score_models"}}),
    ("training.noise_discount", {"training": {"noise_discount": 1.5}}),
    ("training.ema_gamma", {"training": {"ema_gamma": 0}}),
    (
        "normalisation.asinh_scale_factor",
        {"normalisation": {"stretch": {"gas": "asinh"}, "asinh_scale_factor": {"dm": 3}}},
    ),
    ("training.batch_size", {"training": {"batch_size": 30, "nodes": 2, "processes_per_node": 2}}),
    ("training.network", {"training": {"network": {"nf": 8, "ch_mul": [1, 2]}}}),
    ("particles.mock", {"particles": {"mock": {"n_ngbb": 3}}}),
    (
        "observe.xray",
        {"observe": {"xray": {"preset": "xmm_pn"}}, "projection": {"fields": ["gas", "dm", "tsz", "xray"]}},
    ),
    ("observe.tsz", {"observe": {"tsz": {"preset": "none", "beam_fwhm_arcmin": 1.0}}}),
    ("observe.tsz", {"observe": {"tsz": {"preset": "custom", "unit": "microK"}}}),
    ("observe.xray", {"observe": {"xray": {"preset": "xmm_pn", "band_keV": [2.0, 0.5]}}}),
    ("observe.tsz.preset", {"observe": {"tsz": {"preset": "act"}}}),
]


@pytest.mark.parametrize("key, change", BAD_CONFIGS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(BAD_CONFIGS)])
def test_bad_config_names_key_and_expectation(key, change):
    """Each configuration that cannot run is refused by massmaps.config (as the workflow does at start-up),
    naming the key path, rather than failing late in a job, or running and giving a wrong result."""
    from massmaps import config as checks

    config = load()
    update_config(config, copy.deepcopy(change))
    with pytest.raises(checks.ConfigError) as err:
        checks.validate(config, SCHEMA)
        checks.check(config)
    message = str(err.value)
    assert message.startswith("config: ") and key in message, message
    assert "expected" in message or "(" in message, message  # what was expected, or the key's description


def test_good_configs_pass_the_checks_and_fill_snakemakes_defaults():
    from massmaps import config as checks

    for extra in ({}, load("paper.yaml")):
        ours, theirs = load(), load()
        update_config(ours, copy.deepcopy(extra))
        update_config(theirs, copy.deepcopy(extra))
        checks.validate(ours, SCHEMA)
        checks.check(ours)
        validate(theirs, schema=SCHEMA)
        assert ours == theirs
    empty = {}
    checks.validate(empty, SCHEMA)
    assert empty["training"]["sigma_min"] == 0.001


def test_bad_config_fails_before_any_job(tmp_path):
    """The workflow refuses a bad key at start-up (dry run: no job), and a YAML syntax error in the
    embedded config file is named with its line."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: {sigma_min: 20.0}\n")
    out = dry_run(tmp_path, bad)
    assert out.returncode != 0 and "config: training.sigma_min" in out.stdout + out.stderr
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("run: default\ntraining: {steps: 3\n")
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--directory", str(tmp_path), "-s", str(ROOT / "Snakefile")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode != 0 and "config/config.yaml, line 3" in out.stdout + out.stderr, out.stderr[-2000:]


def test_config_check_command(tmp_path, capsys):
    """python -m massmaps.config merges and checks config files as the workflow would, naming a YAML
    syntax error's file and line (which Snakemake's own --configfile loader does not)."""
    from massmaps.config import main

    bad = tmp_path / "mine.yaml"
    bad.write_text("training:\n  steps: [3\n")
    assert main([str(ROOT / "config" / "config.yaml"), str(bad)]) == 1
    assert f"{bad}, line 3" in capsys.readouterr().err
    bad.write_text("training: {sigma_max: 0.0005}\n")
    assert main([str(ROOT / "config" / "config.yaml"), str(bad)]) == 1
    assert "training.sigma_min" in capsys.readouterr().err
    assert main([str(ROOT / "config" / "config.yaml"), str(ROOT / "config" / "paper.yaml")]) == 0


def _filled():
    config = load()
    validate(config, schema=SCHEMA)
    return config


def _walk(block, path=()):
    """Every leaf key path of a nested mapping."""
    for key, value in block.items():
        if isinstance(value, dict) and value:
            yield from _walk(value, path + (key,))
        else:
            yield path + (key,)


def _changed(config, path):
    out = copy.deepcopy(config)
    node = out
    for key in path[:-1]:
        node = node[key]
    value = node[path[-1]]
    node[path[-1]] = (
        {"changed": 1}
        if isinstance(value, dict)
        else [value, value]
        if isinstance(value, list)
        else (not value)
        if isinstance(value, bool)
        else "changed"
        if value is None or isinstance(value, str)
        else value * 2 + 1
    )
    return out


def test_hash_policy_every_key():
    """The data hash changes with every key of the data blocks but the projection's threads, and with
    nothing else; the training hash also with every training and normalisation key but the run-time ones."""
    from massmaps.config import DATA_IGNORED, DATA_KEYS, TRAINING_IGNORED, data_hash, training_hash

    config = _filled()
    d0, t0 = data_hash(config), training_hash(config)
    assert (d0, t0) == (data_hash(copy.deepcopy(config)), training_hash(copy.deepcopy(config)))
    seen = {"data": 0, "training": 0}
    for path in _walk(config):
        new = _changed(config, path)
        d, t = data_hash(new), training_hash(new)
        top = path[0]
        in_data = top in DATA_KEYS and not (len(path) > 1 and path[1] in DATA_IGNORED.get(top, ()))
        in_training = (
            in_data or top in ("normalisation", "observe") or (top == "training" and path[1] not in TRAINING_IGNORED)
        )
        assert (d != d0) == in_data, path
        assert (t != t0) == in_training, path
        seen["data"] += in_data
        seen["training"] += in_training
    assert seen["data"] > 20 and seen["training"] > seen["data"] + 10
    # the policy itself, spelled out: speed and placement knobs never rename data or models
    assert DATA_IGNORED == {"projection": ("threads",)}
    # nodes and processes_per_node: data-parallel ranks reach one process's weights to float32 rounding
    # (tests/test_distributed.py), so a run may resume on another number of processes; compile likewise
    assert set(TRAINING_IGNORED) == {
        "time_budget_s",
        "runtime_margin_s",
        "device",
        "num_workers",
        "lock_stale_s",
        "nodes",
        "processes_per_node",
        "compile",
    }
    assert set(DATA_KEYS) == {"seed", "cosmology", "catalog", "sightlines", "particles", "projection", "split"}


def test_library_defaults_equal_the_schemas():
    """A library function that the workflow calls with a config block has that block's schema defaults,
    or none at all (TrainConfig's parametrisation and augmentation are the documented exceptions)."""
    from massmaps.learning import reconstruct, samplers
    from massmaps.learning.training import TrainConfig
    from massmaps.projection import observables, shards

    config = _filled()

    def same(lib, schema):
        norm = lambda v: list(v) if isinstance(v, tuple) else ({} if v is None else v)  # noqa: E731
        return norm(lib) == norm(schema) or (isinstance(lib, dict) and {k: norm(v) for k, v in lib.items()} == schema)

    trained = {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(TrainConfig)
    }
    # see TrainConfig's comment; precision: the laptop config trains in auto (bf16 where it is native), the
    # library and schema default to float32; mean_correction: the laptop config turns it on, the library and
    # schema leave a network as trained
    exceptions = {"preconditioning", "sigma_max", "augment", "precision", "mean_correction"}
    for key, value in config["training"].items():
        if key in trained and key not in exceptions:
            assert same(trained[key], value), ("training", key, trained[key], value)
    for fn in (
        reconstruct.sample_from_store,
        samplers.draw_posterior_samples,
        reconstruct.diffusion_trajectory,
        shards.project_shard,
        observables.project_fields,
    ):
        params = inspect.signature(fn).parameters
        for block in ("sampling", "projection"):
            for key, value in config[block].items():
                if key in params and params[key].default is not inspect.Parameter.empty:
                    default = params[key].default
                    if key == "steps" and default is None:  # None: the default sampler's own default
                        default = samplers.get_sampler(params["sampler"].default).default_steps
                    if key == "prior_mean" and default is None:  # draw_posterior_samples takes the array
                        default = "none"
                    assert same(default, value), (fn.__name__, key, default, value)
    assert inspect.signature(observables.project_fields).parameters["npix"].default is inspect.Parameter.empty


def test_keys_added_later_keep_old_models_hash():
    """A model trained before training.precision, compile, nodes and processes_per_node (or
    normalisation.asinh_scale_factor) existed keeps its checkpoint folder: at their defaults they do not enter
    the training hash."""
    from massmaps.config import training_hash

    config = _filled()
    config["training"]["precision"] = "float32"  # the schema's default (the laptop config sets auto)
    before = copy.deepcopy(config)
    for key in ("precision", "compile", "nodes", "processes_per_node"):
        del before["training"][key]
    del before["normalisation"]["asinh_scale_factor"]
    assert training_hash(config) == training_hash(before)
    config["training"]["precision"] = "bf16"
    assert training_hash(config) != training_hash(before)
    config["training"]["precision"] = "float32"
    config["normalisation"]["asinh_scale_factor"] = {"gas": 3.0, "dm": 3.0}
    assert training_hash(config) != training_hash(before)


def test_training_block_outside_the_workflow():
    """The benchmarks train from the config's training block: every key the schema fills is either a
    TrainConfig field or a launch key that single_process_settings drops (a new launch key breaks this)."""
    from massmaps.learning.training import LAUNCH_KEYS, TrainConfig, single_process_settings

    training = _filled()["training"]
    assert set(LAUNCH_KEYS) <= set(training)
    settings = single_process_settings(training, steps=7, sigma_data=0.3)  # edm: train_from_store measures it
    cfg = TrainConfig.from_dict(settings)
    assert cfg.steps == 7 and cfg.time_budget_s is None
    assert not set(LAUNCH_KEYS) & set(settings)
    with pytest.raises(ValueError, match="nodes"):
        TrainConfig.from_dict(training)


def test_conformal_runs_only_when_the_test_split_is_sampled():
    """The recalibration is fitted on val and reported on test: sampling another split skips it (the
    workflow says so at start-up) instead of fitting and reporting on the same maps."""
    from massmaps import config as checks

    config = load()
    assert checks.runs_conformal(config)
    update_config(config, {"sampling": {"split": "val"}})
    assert not checks.runs_conformal(config)
    update_config(config, {"sampling": {"split": "test"}, "evaluation": {"conformal": False}})
    assert not checks.runs_conformal(config)
    assert "conformal" not in checks.evaluation_settings(config)


def test_test_box_applies_to_drawn_catalogues_and_leaves_old_data_hashes():
    """The default's test box is ignored (the workflow warns at start-up) for a catalogue not drawn from the
    mass function, which then passes the checks; a config without the key keeps the data hash it had."""
    from massmaps import config as checks

    def filled(*names):
        config = {}
        for name in names:
            update_config(config, load(name))
        checks.validate(config, SCHEMA)
        return config

    config = filled("config.yaml")
    assert config["catalog"]["test_box_Mpc"] and not checks.test_box_ignored(config)
    update_config(config, {"catalog": {"source": "file", "file": "halos.csv"}})
    assert checks.test_box_ignored(config)
    checks.check(config)
    paper = filled("config.yaml", "paper.yaml")
    assert paper["catalog"]["test_box_Mpc"] is None
    without = copy.deepcopy(paper)
    for key in ("test_box_Mpc", "test_box_m_min_Msun"):
        del without["catalog"][key]
    assert checks.data_hash(paper) == checks.data_hash(without)
    update_config(paper, {"catalog": {"test_box_Mpc": 100.0}})
    assert checks.data_hash(paper) != checks.data_hash(without)
