"""The workflow end to end on a tiny config: outputs, laziness, no-op rerun, identical bytes."""

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _workflow import ROOT, snakemake, snakemake_cmd

from massmaps import store
from massmaps.evaluation.figure_specs import FIGURES as FIGURE_SPECS
from massmaps.evaluation.figure_specs import INPUT_FILES
from massmaps.projection.observables import XRAY_NODE_FIELDS


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name != ".snakemake_timestamp"):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    dirs = [tmp_path_factory.mktemp(f"run{i}") for i in range(2)]
    for d in dirs:
        out = snakemake(d)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return dirs


def test_outputs_exist_and_dataset_is_complete(runs):
    res = runs[0] / "results" / "tiny"
    assert (res / "catalog" / "halos.parquet").exists()
    assert (res / "sightlines" / "plan.parquet").exists()
    assert (res / "figures" / "fig1_mass_function.png").stat().st_size > 10_000
    ds = store.open_store(res / "dataset" / "maps.zarr")
    assert ds["maps"].chunks[0][0] == 4  # lazy, chunked by sightline
    maps = ds["maps"].values
    assert maps.shape[1:] == (5 + len(XRAY_NODE_FIELDS), 16, 16)
    assert np.isfinite(maps).all() and (maps[:, :3] > 0).all()
    assert list(ds["field"].values) == ["gas", "dm", "tsz", "xray", "xray_kT", *XRAY_NODE_FIELDS]
    # the X-ray spectrum's node maps add up to the bolometric map
    np.testing.assert_allclose(
        maps[:, 5:].sum(axis=1, dtype=np.float64), maps[:, 3], rtol=1e-5, atol=1e-6 * maps[:, 3].max()
    )
    assert not (res / "observed").exists()  # no instrument configured: the observe stage does not run
    assert ds.attrs["config_hash"] and ds.attrs["massmaps_version"]
    import pandas as pd

    plan = pd.read_parquet(res / "sightlines" / "plan.parquet")
    assert ds["sightline_id"].values.tolist() == plan["sightline_id"].tolist()
    assert ds["halo_id"].values.tolist() == plan["halo_id"].tolist()
    # the tiny config's test box adds one cluster, in the test split only, with split.test_views (3) views
    halos = pd.read_parquet(res / "catalog" / "halos.parquet")
    extra = plan[plan["halo_id"].isin(halos.loc[halos["test_only"], "halo_id"])]
    assert extra["halo_id"].nunique() == 1 and len(extra) == 3 and (extra["split"] == "test").all()
    for shard in range(2):
        assert (res / "logs" / "project_shard" / f"{shard}.log").stat().st_size > 0


def test_split_train_sample_evaluate(runs):
    import json

    import pandas as pd

    res = runs[0] / "results" / "tiny"
    splits = pd.read_parquet(res / "split" / "splits.parquet")
    assert (splits.groupby("halo_id")["split"].nunique() == 1).all()
    assert set(splits["split"]) == {"train", "val", "test"}
    model = res / "model"
    assert (model / "model_hparams.json").exists()
    samples = store.open_store(res / "samples" / "test.zarr")
    test = splits[splits["split"] == "test"]
    assert samples["sightline_id"].values.tolist() == test["sightline_id"].tolist()
    assert samples["samples"].shape[1:3] == (3, 2)
    s = samples["samples"].values
    assert np.isfinite(s).all()
    np.testing.assert_allclose(samples["mean"].values, s.mean(axis=1), rtol=1e-5, atol=1e-6)
    assert list(samples["units"].values) == ["1", "1"]
    summary = json.loads((res / "metrics" / "posterior_summary.json").read_text())
    assert set(summary["pixels"]) >= {"gas", "dm", "n_sightlines"}
    assert summary["pixels"]["n_sightlines"] == len(test)
    assert summary["evaluation"]["n_maps"] == len(test)
    # checkpoints live outside the declared model output
    assert list((res / "checkpoints").glob("*/checkpoint.pt"))


FIGURES = list(FIGURE_SPECS)


def test_every_figure_spec_has_a_drawing_function_caption_and_rule():
    """The figure registry is the one source: ten figures, each drawn by the function of its name, with
    its caption file, and made into a rule of that name by the workflow."""
    from massmaps.evaluation import figures

    assert FIGURES == [
        f"fig{i}_{n}"
        for i, n in enumerate(
            (
                "mass_function",
                "example_maps",
                "diffusion",
                "reconstructions",
                "convergence",
                "zscores",
                "profiles",
                "bias",
                "correlation",
                "calibration",
            ),
            start=1,
        )
    ]
    rules_text = (ROOT / "workflow" / "rules" / "figures.smk").read_text()
    assert "FIGURE_SPECS.values()" in rules_text
    for name, spec in FIGURE_SPECS.items():
        assert callable(getattr(figures, name)), name
        assert (ROOT / "workflow" / "report" / f"{name}.rst").is_file(), name
        assert spec.rule.startswith("figure_") and set(spec.inputs) <= set(INPUT_FILES), name
    with pytest.raises(ValueError, match="unknown figure"):
        figures.make_figure("fig11_nothing", {}, [], {})


def test_evaluation_tables_and_figures(runs):
    import pandas as pd

    res = runs[0] / "results" / "tiny"
    ev = store.open_store(res / "metrics" / "evaluation.zarr")
    assert set(ev.data_vars) >= {
        "b",
        "r",
        "r_input",
        "profile_sim",
        "profile_gen",
        "mass_error",
        "V_ratio",
        "z_density",
    }
    assert ev["k"].attrs["units"] == "h/Mpc"
    t = pd.read_csv(res / "metrics" / "table1.csv")
    assert {"mass_bin", "field", "statistic", "scale", "mean", "plus", "minus", "paper_mean"} <= set(t.columns)
    assert (t["n"] > 0).any() and np.isfinite(t.loc[t["n"] > 0, "mean"]).all()  # an empty bin shows n = 0
    assert "| cluster | map |" in (res / "metrics" / "table1.md").read_text()
    assert (res / "metrics" / "table1.tex").read_text().startswith(r"\begin{tabular}")
    margins = pd.read_csv(res / "metrics" / "r_margin.csv")
    assert {"r_gen", "r_tsz", "r_xray", "margin"} <= set(margins.columns)
    base = pd.read_csv(res / "metrics" / "linear_baselines_scales.csv")
    assert set(base["input"]) == {"tsz", "xray"} and set(base["target"]) == {"gas", "dm"}
    assert ((base["mean"] > -1) & (base["mean"] <= 1)).all()
    for name in FIGURES:
        assert (res / "figures" / f"{name}.png").stat().st_size > 10_000, name
    cal = pd.read_csv(res / "metrics" / "calibration.csv")
    assert {"coverage_0.5", "z_std", "tarp_ks_p", "max_coverage_error"} <= set(cal["statistic"])
    assert set(cal["field"]) == {"gas", "dm"} and "all" in set(cal["mass_bin"])
    cover = cal[cal["statistic"].str.startswith("coverage_")]
    assert ((cover["value"] >= 0) & (cover["value"] <= 1) & (cover["lo"] <= cover["hi"])).all()
    assert "| all | Gas |" in (res / "metrics" / "calibration.md").read_text()
    # the conformal recalibration, fitted on the validation split's own samples
    val = store.open_store(res / "samples" / "validation.zarr")
    assert val.attrs["split"] == "val" and val.sizes["sightline"] > 0
    conf = pd.read_csv(res / "metrics" / "conformal.csv")
    assert set(conf["field"]) == {"gas", "dm"} and "all" in set(conf["mass_bin"])
    levels = conf[conf["level"] != "max_error"]
    assert ((levels["corrected_level"] > 0) & (levels["corrected_level"] <= 1)).all()
    assert ((levels["after"] >= 0) & (levels["after"] <= 1) & (levels["after_lo"] <= levels["after_hi"])).all()
    assert "raw -> corrected" in (res / "metrics" / "conformal.md").read_text()


def test_plotting_option_reruns_only_figures(runs):
    """Changing a plotting option (figures.dpi) reruns the figure rules and nothing upstream."""
    import re

    cmd = snakemake_cmd(runs[0], "-n", extra="figures: {formats: [png], dpi: 90}\n")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    stats = (out.stdout + out.stderr).split("Job stats:")[1].split("total")[0]
    jobs = set(re.findall(r"^(\w+)\s+\d+\s*$", stats, flags=re.M)) - {"job", "count"}
    assert "figure_bias" in jobs and "figure_mass_function" in jobs
    assert jobs <= {r for r in jobs if r.startswith("figure_")} | {"all"}, jobs


def test_same_config_same_bytes(runs):
    a, b = (d / "results" / "tiny" for d in runs)
    assert digest(a / "dataset" / "maps.zarr") == digest(b / "dataset" / "maps.zarr")
    assert digest(a / "samples" / "test.zarr") == digest(b / "samples" / "test.zarr")
    assert digest(a / "samples" / "validation.zarr") == digest(b / "samples" / "validation.zarr")
    assert digest(a / "metrics" / "evaluation.zarr") == digest(b / "metrics" / "evaluation.zarr")
    for name in [
        "catalog/halos.parquet",
        "sightlines/plan.parquet",
        "split/splits.parquet",
        "metrics/posterior_summary.json",
        "metrics/table1.csv",
        "metrics/table1.tex",
        "metrics/r_margin.csv",
        "metrics/linear_baselines.csv",
        "metrics/calibration.csv",
        "metrics/calibration_maps.csv",
        "metrics/conformal.csv",
        *[f"figures/{f}.png" for f in FIGURES],
    ]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_second_run_does_nothing(runs):
    out = snakemake(runs[0], "-n")
    assert out.returncode == 0
    assert "Nothing to be done" in out.stdout + out.stderr


def test_html_report(runs):
    report = runs[0] / "report.html"
    out = snakemake(runs[0], "--report", str(report))
    assert out.returncode == 0, out.stderr[-3000:]
    text = report.read_text(errors="replace")
    assert report.stat().st_size > 100_000
    for caption in ("Figure 7: radial profiles", "Table 1: mean b and r", "Figure 3: the trained model"):
        assert caption in text, caption


def test_deleted_chunk_fails_the_readers_with_a_log(runs, tmp_path):
    """A chunk file of the dataset deleted after training: the jobs that read the dataset fail (never NaN
    samples or a table with fewer maps), naming the store, the file and its sightlines, and each failed
    job's log holds the traceback."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(runs[0], work, symlinks=True)
    res = work / "results" / "tiny"
    chunk = sorted(p for p in (res / "dataset" / "maps.zarr" / "maps" / "c").rglob("*") if p.is_file())[-1]
    chunk.unlink()
    out = snakemake(work, "--forcerun", "sample_posterior", "linear_baselines", "--keep-going")
    assert out.returncode != 0
    for rule in ("sample_posterior", "linear_baselines"):
        log = (res / "logs" / f"{rule}.log").read_text()
        assert "Traceback" in log and "StoreError" in log, log[-2000:]
        assert (
            f"maps.zarr: store damaged since it was written: maps/c/{chunk.relative_to(chunk.parents[3]).as_posix()}"
            " is missing (sightline_id" in log
        ), log[-2000:]
    assert not (res / "samples" / "test.zarr").exists() and not (res / "metrics" / "linear_baselines.csv").exists()


def test_sampling_groups_and_training_ranks_give_the_same_results(runs, tmp_path):
    """On a copy of a finished run: the validation split (4 sightlines; the test split has 1) sampled by one
    job, then with sampling.groups 2 and training.processes_per_node 2. train_model reruns (its params
    changed) as 2 ranks that resume from the checkpoint at the last step and write the same weights; the
    two sample_posterior jobs write one store each, read as one by the evaluation, whose summary is the
    same bytes as the one-job run's."""
    import shutil

    work = tmp_path / "copy"
    shutil.copytree(runs[1], work, symlinks=True)
    res, target, summary = work / "results" / "tiny", "results/tiny/metrics/posterior_summary.json", {}
    for name, extra in (
        ("one job", "sampling: {split: val}\n"),
        ("2 groups", "sampling: {split: val, groups: 2}\ntraining: {processes_per_node: 2}\n"),
    ):
        out = snakemake(work, target, extra=extra)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
        summary[name] = (res / "metrics" / "posterior_summary.json").read_bytes()
    log = (res / "logs" / "train_model.log").read_text()
    assert "starting 2 local training ranks" in log and "rank 0 of 2" in log, log[-3000:]
    one = store.open_store(res / "samples" / "val.zarr")
    grouped = store.open_store([res / "samples" / f"val.group{g}of2.zarr" for g in range(2)])
    assert one.sizes["sightline"] == 4
    np.testing.assert_array_equal(grouped["samples"].values, one["samples"].values)
    assert summary["2 groups"] == summary["one job"]
