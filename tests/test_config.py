"""The config schema: defaults fill in, typos and wrong values fail with the key's name."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

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
    config = load()
    for key, value in load("paper.yaml").items():
        if isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    validate(config, schema=SCHEMA)
    assert config["projection"] == {**config["projection"], "npix": 128, "pixel_Mpc": 0.1}
    assert config["catalog"]["n_halos"] == 6233


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


def test_misspelled_key_rejected():
    config = copy.deepcopy(load())
    config["projection"]["n_pix"] = 64
    with pytest.raises(Exception) as err:
        validate(config, schema=SCHEMA)
    assert "n_pix" in str(err.value)


def dry_run(tmp_path, *configfiles):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(ROOT / "config" / "config.yaml"),
         *map(str, configfiles), "--directory", str(tmp_path), "-s", str(ROOT / "Snakefile")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
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

    from massmaps.snapshot import SnapshotConfig

    filled = {}
    validate(filled, schema=SCHEMA)
    assert filled["particles"]["snapshot"] == dataclasses.asdict(SnapshotConfig())


def test_snakemake_reports_snapshot_without_centres(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("particles:\n  source: snapshot\n  snapshot: {files: snap.hdf5}\n")
    out = dry_run(tmp_path, bad)
    assert out.returncode != 0
    assert "catalog.source" in out.stdout + out.stderr
