"""Faults and bad input that must never pass silently: one test per class (docs/bad-input.md lists the cases).

Classes tested elsewhere: bad configuration (test_config.py), catalogue content (test_catalog.py),
snapshot content (test_snapshot.py), damaged and non-finite stores (test_store.py, test_evaluation.py,
test_workflow.py), training checkpoints (test_training.py).
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _workflow import snakemake, snakemake_cmd

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


# ------------------------------------------------------------------ the workflow profile is loaded
def test_default_profile_loads_and_a_killed_run_recovers(tmp_path):
    """`snakemake` loads profiles/default by itself; after the snakemake process is killed (SIGKILL)
    during a projection job, `--unlock` and a plain rerun finish the job (rerun-incomplete), giving the
    same dataset as an uninterrupted run."""
    out = snakemake(tmp_path, "-n")
    assert (
        "Using workflow specific profile" in out.stdout + out.stderr and "profiles/default" in out.stdout + out.stderr
    )
    target = "results/tiny/dataset/maps.zarr"
    proc = subprocess.Popen(
        snakemake_cmd(tmp_path, target), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    shard_logs = tmp_path / "results" / "tiny" / "logs" / "project_shard"
    deadline = time.monotonic() + 300
    while not (shard_logs.is_dir() and any(shard_logs.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and its jobs, as a power loss would
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / target).exists()
    out = snakemake(tmp_path, "--unlock")
    assert out.returncode == 0, out.stderr[-3000:]
    out = snakemake(tmp_path, target)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert snakemake(fresh, target).returncode == 0
    recovered, uninterrupted = _file_digests(tmp_path / target), _file_digests(fresh / target)
    differ = sorted(k for k in recovered.keys() | uninterrupted.keys() if recovered.get(k) != uninterrupted.get(k))
    assert not differ, f"recovered and uninterrupted datasets differ in {differ}: {_array_differences(tmp_path, fresh)}"


def _file_digests(path: Path) -> dict[str, str]:
    """{path relative to the store: SHA-256 of its bytes} for every file of a store."""
    import hashlib

    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != ".snakemake_timestamp")
    return {f.relative_to(path).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def _array_differences(recovered: Path, fresh: Path) -> str:
    """Which variables and attributes of the dataset and shard stores, and which upstream tables, differ between two
    runs (for the failure message)."""
    import xarray as xr

    out = []
    for rel in [
        "results/tiny/dataset/maps.zarr",
        *sorted(p.relative_to(fresh).as_posix() for p in (fresh / "results/tiny/shards").glob("*.zarr")),
    ]:
        a, b = xr.open_zarr(recovered / rel), xr.open_zarr(fresh / rel)
        for name in sorted(set(a.variables) | set(b.variables)):
            if name not in a.variables or name not in b.variables or not a[name].equals(b[name]):
                out.append(f"{rel}:{name}")
        out += [
            f"{rel}:attrs[{k}]" for k in sorted(a.attrs.keys() | b.attrs.keys()) if a.attrs.get(k) != b.attrs.get(k)
        ]
    out += [
        rel
        for rel in ("results/tiny/catalog/halos.parquet", "results/tiny/sightlines/plan.parquet")
        if (recovered / rel).read_bytes() != (fresh / rel).read_bytes()
    ]
    return ", ".join(out) or "no variable, attribute or upstream table"


# ------------------------------------------------------- user files are inputs; failed jobs have logs
def test_user_catalogue_is_an_input_and_its_errors_reach_the_log(tmp_path):
    """Editing the user's catalogue reruns halo_catalog; a bad catalogue fails the job with the error and
    its traceback in the rule's log (not only on the console)."""
    extra = "catalog: {source: file, file: halos.csv}\n"
    (tmp_path / "halos.csv").write_text("M200m_Msun\n4.0e14\n2.5e14\n")
    target = "results/tiny/catalog/halos.parquet"
    out = snakemake(tmp_path, target, extra=extra)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(pd.read_parquet(tmp_path / target)) == 2
    assert "Nothing to be done" in (lambda o: o.stdout + o.stderr)(snakemake(tmp_path, target, "-n", extra=extra))
    time.sleep(1.1)  # a later modification time than the catalogue written above
    (tmp_path / "halos.csv").write_text("M200m_Msun\n4.0e14\n2.5e14\n3.0e14\n")
    out = snakemake(tmp_path, target, "-n", extra=extra)
    assert "halo_catalog" in out.stdout + out.stderr and "Nothing to be done" not in out.stdout + out.stderr
    assert snakemake(tmp_path, target, extra=extra).returncode == 0
    assert len(pd.read_parquet(tmp_path / target)) == 3
    (tmp_path / "halos.csv").write_text("M200m_Msun\n4.0e14\n2.5e-1\n")  # a unit slip
    out = snakemake(tmp_path, target, extra=extra)
    assert out.returncode != 0
    log = (tmp_path / "results" / "tiny" / "logs" / "halo_catalog.log").read_text()
    assert "Traceback" in log and "halos.csv" in log and "M200m_Msun" in log and "row 1" in log, log[-2000:]


# --------------------------------------------------------------------------- outputs of the wrong kind
@pytest.mark.parametrize(
    "path, make",
    [
        ("catalog/halos.parquet", lambda p: p.mkdir(parents=True)),  # an empty folder where a table goes
        ("metrics/evaluation.zarr", lambda p: (p.parent.mkdir(parents=True), p.write_text("x"))),  # a file for a store
        ("shards/shard_1.zarr", lambda p: (p.parent.mkdir(parents=True), p.write_text("x"))),  # a wildcard output
    ],
)
def test_output_of_the_wrong_kind_fails_before_any_job(tmp_path, path, make):
    """An existing output of the wrong kind is reported at start-up, before a job could take it as
    complete, or delete the outputs downstream of it."""
    make(tmp_path / "results" / "tiny" / path)
    out = snakemake(tmp_path, "-n")
    assert out.returncode != 0
    assert f"results/tiny/{path}: expected a" in out.stdout + out.stderr, out.stderr[-3000:]
    from massmaps import files

    assert files.wrong_kind_outputs([(str(tmp_path / "results" / "tiny" / path), not path.endswith(".parquet"))])


# ----------------------------------------------------------------------- a killed sampling job resumes
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained on a tiny store, with its split table."""
    from massmaps import store
    from massmaps.learning import reconstruct, split

    tmp = tmp_path_factory.mktemp("trained")
    rng = np.random.default_rng(0)
    n = 12
    maps = rng.lognormal(0, 0.5, (n, 4, 8, 8)).astype(np.float32)
    mass = np.repeat(np.geomspace(2.5e14, 9e14, n // 2), 2)  # two sightlines a halo
    ds = store.maps_dataset(
        maps,
        fields=["gas", "dm", "tsz", "xray"],
        units=["1", "1", "microK", "erg/s/cm^2"],
        long_names=["gas", "dm", "tsz", "xray"],
        pixel_Mpc=0.4,
        sightline_coords={
            "sightline_id": np.arange(n) + 50,
            "halo_id": np.arange(n) // 2,
            "M200m_Msun": mass,
            "log10_M200m": np.log10(mass),
        },
        attrs={"config_hash": "test", "pixel_Mpc": 0.4, "npix": 8},
    )
    store.write_store(ds, tmp / "maps.zarr", chunk_sightlines=4)
    splits = split.split_table(store.open_store(tmp / "maps.zarr"), fractions=(0.5, 0.0, 0.5), seed=1)
    splits.to_parquet(tmp / "splits.parquet")
    training = {
        "steps": 3,
        "batch_size": 4,
        "checkpoint_every": 3,
        "val_every": 3,
        "log_every": 3,
        "device": "cpu",
        "network": {"nf": 8, "ch_mult": [1, 2], "attention": False, "fir": False},
    }
    reconstruct.train_from_store(
        tmp / "maps.zarr", splits, tmp / "model", tmp / "ckpt", training=training, progress=False
    )
    return tmp


SAMPLING = dict(
    which="test",
    eval_range_only=False,
    n_samples=3,
    sampler="edm_stochastic",
    steps=4,
    batch_size=3,
    seed=7,
    device="cpu",
    sampler_kwargs={"s_churn": 10.0},
    prior_mean="pixel",
    progress=False,
)


def test_killed_sampling_resumes_to_the_same_bytes(trained, tmp_path):
    """sample_posterior killed (SIGKILL) after two sightlines: the rerun takes those two from the resume
    folder and draws the rest; the result is the same bytes as an uninterrupted run."""
    from massmaps import store
    from massmaps.learning import reconstruct

    resume = tmp_path / "resume"
    script = textwrap.dedent(f"""
        import os, signal, sys
        import pandas as pd, torch
        torch.set_num_threads(1)
        from massmaps.learning import reconstruct, samplers
        draw, calls = samplers.draw_posterior_samples, []
        def killed_at_third(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return draw(*args, **kwargs)
        samplers.draw_posterior_samples = killed_at_third
        reconstruct.sample_from_store({str(trained / "model")!r}, {str(trained / "maps.zarr")!r},
                                      pd.read_parquet({str(trained / "splits.parquet")!r}), resume_dir={str(resume)!r},
                                      **{SAMPLING!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    parts = sorted(resume.rglob("sightline_*.npy"))
    assert len(parts) == 2 and not list(resume.rglob(".*tmp*"))
    splits = pd.read_parquet(trained / "splits.parquet")
    resumed = reconstruct.sample_from_store(
        trained / "model", trained / "maps.zarr", splits, resume_dir=resume, **SAMPLING
    )
    straight = reconstruct.sample_from_store(trained / "model", trained / "maps.zarr", splits, **SAMPLING)
    assert resumed.sizes["sightline"] == int((splits["split"] == "test").sum()) > 2
    np.testing.assert_array_equal(resumed["samples"].values, straight["samples"].values)
    # a changed sampling argument does not reuse them
    other = reconstruct.resume_key(
        trained / "model", store.open_store(trained / "maps.zarr"), **{**SAMPLING, "seed": 8}
    )
    assert not (resume / other).exists() and parts[0].parent.name != other


def test_sampling_precision_and_compile_reach_the_store(trained, tmp_path):
    """sampling.precision and sampling.compile through sample_from_store: recorded in the store's attributes,
    part of the resume folder's key (a bf16 run never resumes float32 samples); the compiled network
    (aot_eager) gives the eager bytes, bf16 samples within 2% of the posterior spread."""
    from massmaps.learning import reconstruct

    paths = dict(model_dir=trained / "model", store_path=trained / "maps.zarr")
    paths["splits"] = pd.read_parquet(trained / "splits.parquet")
    resume = tmp_path / "resume"
    eager = reconstruct.sample_from_store(**paths, **SAMPLING, resume_dir=resume)
    compiled = reconstruct.sample_from_store(**paths, **SAMPLING, compile="aot_eager", resume_dir=resume)
    bf16 = reconstruct.sample_from_store(**paths, **SAMPLING, precision="bf16", resume_dir=resume)
    assert len(list(resume.iterdir())) == 3  # one folder each: nothing resumed from another setting
    np.testing.assert_array_equal(compiled["samples"].values, eager["samples"].values)
    assert (eager.attrs["precision"], eager.attrs["compile"]) == ("float32", False)
    assert (compiled.attrs["compile"], bf16.attrs["precision"]) == ("aot_eager", "bf16")
    spread = float(eager["std"].mean())
    diff = float(np.abs(bf16["samples"].values - eager["samples"].values).max())
    assert 0 < diff < 0.02 * spread, (diff, spread)


def _killed_at(call: int, **arguments) -> str:
    """A script that runs sample_from_store and kills itself (SIGKILL) at its ``call``-th draw."""
    return textwrap.dedent(f"""
        import os, signal
        import pandas as pd, torch
        torch.set_num_threads(1)
        from massmaps.learning import reconstruct, samplers
        draw, calls = samplers.draw_posterior_samples, []
        def killed(*args, **kwargs):
            calls.append(1)
            if len(calls) == {call}:
                os.kill(os.getpid(), signal.SIGKILL)
            return draw(*args, **kwargs)
        samplers.draw_posterior_samples = killed
        arguments = {arguments!r}
        arguments["splits"] = pd.read_parquet(arguments["splits"])
        reconstruct.sample_from_store(**arguments)
    """)


def test_grouped_sampling_gives_the_same_bytes_and_a_killed_group_resumes(trained, tmp_path):
    """sampling.groups = 3: the three group stores, opened as one, hold the bytes of the one-job store and
    evaluate to the same metrics; group 1 killed after its first sightline resumes to the same bytes."""
    from massmaps import store
    from massmaps.evaluation import evaluate
    from massmaps.learning import reconstruct

    splits = pd.read_parquet(trained / "splits.parquet")
    paths = dict(model_dir=trained / "model", store_path=trained / "maps.zarr", splits=splits)
    store.write_store(reconstruct.sample_from_store(**paths, **SAMPLING), tmp_path / "one.zarr", chunk_sightlines=1)
    n = store.open_store(tmp_path / "one.zarr").sizes["sightline"]
    assert n >= 5  # groups of 2, 2 and 1 or more sightlines
    groups = [tmp_path / f"test.group{g}of3.zarr" for g in range(3)]
    resume = tmp_path / "resume_group1"
    arguments = {**SAMPLING, "model_dir": str(trained / "model"), "store_path": str(trained / "maps.zarr")}
    arguments.update(splits=str(trained / "splits.parquet"), groups=3, group=1, resume_dir=str(resume))
    proc = subprocess.run([sys.executable, "-c", _killed_at(2, **arguments)], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert len(list(resume.rglob("sightline_*.npy"))) == 1
    for g, path in enumerate(groups):
        part = reconstruct.sample_from_store(
            **paths, **SAMPLING, groups=3, group=g, resume_dir=resume if g == 1 else None
        )
        assert part.attrs[store.GROUP_ATTR] == f"{g} of 3"
        store.write_store(part, path, chunk_sightlines=1)
    one, grouped = store.open_store(tmp_path / "one.zarr"), store.open_store(groups)
    assert grouped.sizes["sightline"] == n and grouped.attrs == one.attrs
    for name in ("samples", "mean", "std"):
        np.testing.assert_array_equal(grouped[name].values, one[name].values)
    for name in one.coords:
        np.testing.assert_array_equal(grouped[name].values, one[name].values)
    dataset = store.open_store(trained / "maps.zarr")
    cfg = {"mass_bins": {"all": [1e14, 1e15]}}
    a, b = evaluate.evaluate(one, dataset, cfg, h=0.7), evaluate.evaluate(grouped, dataset, cfg, h=0.7)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    with pytest.raises(store.StoreError, match="expected the groups"):
        store.open_store([groups[1], groups[0], groups[2]])
    with pytest.raises(ValueError, match="sampling.groups is 99 but there are only"):
        reconstruct.sample_from_store(**paths, **SAMPLING, groups=99, group=0)


def test_a_terminated_job_says_so_in_its_log(tmp_path):
    """SIGTERM (cancelled, preempted or timed-out job): the log says so, temporary files go, exit 143."""
    log, target = tmp_path / "job.log", tmp_path / "out.txt"
    code = (
        f"import time\nfrom massmaps import logs\nfrom massmaps.files import atomic_path\nlogs.setup({str(log)!r})\n"
        f"with atomic_path({str(target)!r}) as tmp:\n    tmp.write_text('half')\n    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert "stopped by SIGTERM" in log.read_text()
    assert list(tmp_path.iterdir()) == [log]
