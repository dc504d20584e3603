"""The fault matrix: bad inputs and faults thrown at the workflow on a tiny config, each outcome classified.

    .venv/bin/python tests/fault_matrix.py [--only NAME ...] [--out table.md] [--keep DIR]

Each case sets up a working directory (a fresh one, or a copy of a finished reference run), runs Snakemake
as a user would, and is classified from the exit code, what Snakemake printed and the failed jobs' logs:

* clear error: the run failed and the output names every word the case requires (the file, and the key,
  column, row or sightline);
* unclear error: the run failed, but without one of those words;
* crash: the same, ending in a bare Python error (KeyError, TypeError, a numpy broadcast...);
* silent wrong: the run succeeded where it should have failed, or its result differs from the right one;
* recovered: a fault the workflow must recover from, and the result is the same as an undisturbed run's;
* not recovered: such a fault, and the run failed.

For job failures the table also says whether the failed job's log holds the traceback. About 15 minutes on
2 cores. Not collected by pytest (the project's tests cover one case of each class).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _snapshots import clump, gas_fields, write_group_catalog, write_snapshot  # noqa: E402
from _workflow import snakemake_cmd  # noqa: E402

RES = Path("results/tiny")
# the tiny config, with sampling slow enough to be killed half-way
MATRIX = "sampling: {eval_range_only: false, n_samples: 24, steps: 16, batch_size: 24}\n"
CRASH_MARKERS = (
    "KeyError",
    "IndexError",
    "TypeError",
    "AttributeError",
    "could not be broadcast",
    "NoneType",
    "ZeroDivisionError",
    "UnboundLocalError",
)
CATALOGUE = "catalog: {source: file, file: halos.csv}\n"
GOOD_CSV = "halo_id,M200m_Msun\n0,8.0e14\n1,5.0e14\n2,4.0e14\n3,3.0e14\n4,2.5e14\n5,2.2e14\n"


@dataclass
class Case:
    name: str
    group: str
    expect: str  # "error" or "recover"
    setup: Callable[[Path], None] = lambda work: None
    args: tuple[str, ...] = ()
    extra: str = ""
    words: tuple[str, ...] = ()  # what a clear error names
    check: Callable[[Path], bool] | None = None  # the right result, after a recovery (or after an error)
    copy_reference: bool = False
    run: Callable[[Case, Path], tuple[int, str]] | None = None  # instead of one plain Snakemake call


@dataclass
class Outcome:
    case: Case
    verdict: str
    rc: int
    log_has_traceback: str
    detail: str = ""
    seconds: float = 0.0
    missing: list = field(default_factory=list)


# ------------------------------------------------------------------------------------------- running
def smk(work: Path, *args: str, extra: str = "", timeout: float = 900) -> tuple[int, str]:
    out = subprocess.run(
        snakemake_cmd(work, *args, extra=MATRIX + extra), capture_output=True, text=True, timeout=timeout
    )
    return out.returncode, out.stdout + out.stderr


def failed_logs(work: Path, text: str) -> dict[str, str]:
    """{log path: its text} of the jobs Snakemake reports as failed."""
    logs = {}
    for block in text.split("Error in rule ")[1:]:
        m = re.search(r"log: (\S+)", block.split("\n\n")[0])
        if m:
            path = work / m.group(1)
            logs[m.group(1)] = path.read_text(errors="replace") if path.is_file() else ""
    return logs


def digest(path: Path) -> str:
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if f.name != ".snakemake_timestamp":
            h.update(f.relative_to(path.parent).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def classify(case: Case, rc: int, text: str, work: Path) -> Outcome:
    logs = failed_logs(work, text)
    # a failed job's words must be in its log (Snakemake's own listing of the job names its files anyway)
    all_text = "\n".join(logs.values()) if logs else text
    traceback = "-" if not logs else ("yes" if all("Traceback" in t for t in logs.values()) else "no")
    if case.expect == "recover":
        if rc != 0:
            return Outcome(case, "not recovered", rc, traceback, _last_error(all_text))
        good = case.check is None or case.check(work)
        return Outcome(case, "recovered" if good else "silent wrong", rc, traceback)
    if rc == 0:
        return Outcome(case, "silent wrong", rc, traceback, "exit 0")
    missing = [w for w in case.words if w not in all_text]
    if case.check is not None and not case.check(work):
        return Outcome(case, "silent wrong", rc, traceback, "failed, and damaged earlier results")
    if not missing:
        return Outcome(case, "clear error", rc, traceback, _last_error(all_text))
    verdict = "crash" if any(m in all_text for m in CRASH_MARKERS) else "unclear error"
    return Outcome(case, verdict, rc, traceback, _last_error(all_text), missing=missing)


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if re.search(r"(Error|Exception)\b.*:|error|cannot", ln)]
    return lines[-1][:160] if lines else ""


# --------------------------------------------------------------------------------------- set-ups
def write(rel: str, text: str | bytes) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)

    return setup


def write_parquet(rel: str, frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda work: frame.to_parquet(work / rel, index=False)


def chunk_of(store: str, var: str = "maps", last: bool = False) -> Callable[[Path], Path]:
    def find(work: Path) -> Path:
        files = sorted(p for p in (work / RES / store / var / "c").rglob("*") if p.is_file())
        return files[-1 if last else 0]

    return find


def delete(find: Callable[[Path], Path]) -> Callable[[Path], None]:
    return lambda work: find(work).unlink()


def flip_byte(find: Callable[[Path], Path], offset: int = 40) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        path = find(work)
        data = bytearray(path.read_bytes())
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))

    return setup


def truncate(rel: str, keep: float = 0.5) -> Callable[[Path], None]:
    return lambda work: os.truncate(work / rel, int((work / rel).stat().st_size * keep))


def same_as_reference(rel: str) -> Callable[[Path], bool]:
    return lambda work: digest(work / RES / rel) == digest(REFERENCE / RES / rel)


# snapshot cases: a small Gadget-layout simulation with a group catalogue
BOX = 30.0


def snapshot_setup(edit: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        rng = np.random.default_rng(0)
        centres = np.array([[15.0, 15.0, 15.0], [7.0, 22.0, 25.0]])
        parts = {0: {}, 1: {}}
        for _i, c in enumerate(centres):
            pos, rel, m = clump(rng, c, BOX, 400, 0.6, 1e11)
            parts[1].setdefault("pos", []).append(pos)
            parts[1].setdefault("mass", []).append(m)
            pos, rel, m = clump(rng, c, BOX, 300, 0.5, 2e10)
            for q, v in {"pos": pos, "mass": m, **gas_fields(rel, 2e10)}.items():
                parts[0].setdefault(q, []).append(v)
        parts = {t: {q: np.concatenate(v) for q, v in p.items()} for t, p in parts.items()}
        write_snapshot(work / "snap_010", parts, BOX)
        write_group_catalog(work / "fof_010", centres, [4e14, 2e14], [1.5, 1.2], BOX)
        if edit is not None:
            edit(work)

    return setup


SNAPSHOT = (
    "catalog: {source: group_catalog, m_min_Msun: 1.0e+14}\nsightlines: {n_shards: 2}\nparticles: {source: "
    "snapshot, snapshot: {files: snap_010.hdf5, group_catalog: fof_010.hdf5, n_ngb: 32, pad_Mpc: 1.0}}\n"
)


def h5_edit(rel: str, fn: Callable[[h5py.File], None]) -> Callable[[Path], None]:
    def edit(work: Path) -> None:
        with h5py.File(work / rel, "r+") as f:
            fn(f)

    return edit


def _set(dataset: str, index, value):
    def fn(f):
        f[dataset][index] = value

    return fn


def _set_attr(group: str, name: str, value):
    def fn(f):
        f[group].attrs[name] = value

    return fn


# ----------------------------------------------------------------------------- runs with kills
def kill_during(
    case: Case,
    work: Path,
    *,
    wait_for: Callable[[Path], bool],
    sig: int,
    group: bool,
    unlock: bool,
    target: str,
    forcerun: tuple[str, ...] = (),
) -> tuple[int, str]:
    """Start Snakemake, send ``sig`` once ``wait_for`` holds, then run the same command again (after
    ``--unlock`` if asked): what a user does after an interruption."""
    args = (target, *(("--forcerun", *forcerun) if forcerun else ()))
    proc = subprocess.Popen(
        snakemake_cmd(work, *args, extra=MATRIX + case.extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    while not wait_for(work) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is not None:
        return 99, "the run ended before the signal could be sent"
    (os.killpg if group else os.kill)(proc.pid, sig)
    proc.wait()
    time.sleep(2)
    text = ""
    if unlock:
        rc, text = smk(work, "--unlock", extra=case.extra)
    rc, more = smk(work, target, extra=case.extra)
    return rc, text + more


def has_files(rel: str, pattern: str = "*") -> Callable[[Path], bool]:
    return lambda work: (work / rel).is_dir() and any((work / rel).rglob(pattern))


def concurrent(case: Case, work: Path) -> tuple[int, str]:
    first = subprocess.Popen(
        snakemake_cmd(work, str(RES / "dataset/maps.zarr"), extra=MATRIX),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not has_files(str(RES / "logs/project_shard"))(work) and first.poll() is None:
        time.sleep(0.05)
    rc, text = smk(work, str(RES / "dataset/maps.zarr"))
    first.wait()
    return rc, text


# ----------------------------------------------------------------------------------------- the cases
def bad_config(name: str, yaml_text: str, *words: str) -> Case:
    return Case(name, "config", "error", extra=yaml_text, args=("-n",), words=words)


def bad_catalogue(name: str, content, *words: str, suffix: str = "csv") -> Case:
    setup = (
        write_parquet(f"halos.{suffix}", content)
        if isinstance(content, pd.DataFrame)
        else write(f"halos.{suffix}", content)
    )
    extra = CATALOGUE.replace("halos.csv", f"halos.{suffix}")
    return Case(
        name,
        "catalogue",
        "error",
        setup=setup,
        extra=extra,
        args=(str(RES / "sightlines/plan.parquet"),),
        words=(f"halos.{suffix}", *words),
    )


def bad_snapshot(name: str, edit, *words: str) -> Case:
    return Case(
        name,
        "snapshot",
        "error",
        setup=snapshot_setup(edit),
        extra=SNAPSHOT,
        args=(str(RES / "dataset/maps.zarr"),),
        words=words,
    )


def cases() -> list[Case]:
    out = [
        bad_config("sigma_min above sigma_max", "training: {sigma_min: 20.0}", "training.sigma_min"),
        bad_config(
            "reversed mass bin",
            "evaluation: {mass_bins: {low: [6.0e+14, 2.0e+14], high: [6.0e+14, 1.0e+15]}}",
            "evaluation.mass_bins.low",
        ),
        bad_config(
            "mass bin outside the evaluation range",
            "evaluation: {mass_bins: {huge: [2.0e+15, 5.0e+15]}}\nsampling: {eval_range_only: true}",
            "evaluation.mass_bins.huge",
        ),
        bad_config(
            "reversed evaluation range",
            "split: {eval_mass_range_Msun: [1.0e+15, 2.0e+14]}",
            "split.eval_mass_range_Msun",
        ),
        bad_config(
            "unknown sampler keyword", "sampling: {sampler_kwargs: {bogus: 1}}", "sampling.sampler_kwargs", "bogus"
        ),
        bad_config("run outside results/", "run: '..'", "config: run"),
        bad_config("duplicated figure format", "figures: {formats: [png, png]}", "figures.formats"),
        bad_config("more shards than halos", "sightlines: {n_shards: 500}", "sightlines.n_shards"),
        bad_config("catalogue source without a file", "catalog: {source: file}", "catalog.file"),
        bad_config("split fractions not summing to 1", "split: {fractions: [0.5, 0.2, 0.2]}", "split.fractions"),
        bad_config("misspelled key", "projection: {n_pix: 64}", "n_pix"),
        bad_config("wrong type", "projection: {npix: many}", "projection.npix"),
        bad_config("catalogue file missing", CATALOGUE.replace("halos.csv", "nowhere.csv"), "nowhere.csv"),
        bad_config("YAML syntax error in --configfile", "training: {steps: 3\n", "extra.yaml", "line"),
        Case(
            "YAML syntax error in config/config.yaml",
            "config",
            "error",
            setup=write("config/config.yaml", "run: tiny\ntraining: {steps: 3\n"),
            args=("-n",),
            words=("config/config.yaml", "line 3"),
            run=lambda c, w: _plain_snakemake(w),
        ),
        bad_catalogue("masses 1e-5 too small", "M200m_Msun\n4.0e9\n2.5e9\n", "M200m_Msun", "row 0"),
        bad_catalogue("masses 1e25 too large", "M200m_Msun\n4.0e39\n2.5e39\n", "M200m_Msun", "row 0"),
        bad_catalogue("no halo above m_min", "M200m_Msun\n4.0e13\n2.5e13\n", "m_min", "catalog.m_min_Msun"),
        bad_catalogue("duplicated rows without halo_id", "M200m_Msun\n4.0e14\n3.0e14\n4.0e14\n", "rows 0 and 2"),
        bad_catalogue("non-integer halo_id", "halo_id,M200m_Msun\n1.5,4.0e14\n2.7,3.0e14\n", "halo_id", "row 0"),
        bad_catalogue("duplicated halo_id", "halo_id,M200m_Msun\n4,4.0e14\n4,3.0e14\n", "halo_id", "rows 0 and 1"),
        bad_catalogue("negative seed", "M200m_Msun,seed\n4.0e14,-3\n3.0e14,5\n", "seed", "row 0"),
        bad_catalogue(
            "masses as strings in parquet",
            pd.DataFrame({"M200m_Msun": ["4e14", "3e14"]}),
            "M200m_Msun",
            suffix="parquet",
        ),
        bad_catalogue("empty (0-byte) file", "", "0 bytes"),
        bad_catalogue("non-UTF-8 bytes", b"M200m_Msun\n4.0e14\n\xff\xfe3.0e14\n", "UTF-8", "line 3"),
        bad_catalogue("no M200m_Msun column", "mass\n4.0e14\n", "M200m_Msun"),
        bad_snapshot(
            "Coordinates far outside the box",
            h5_edit("snap_010.hdf5", _set("PartType1/Coordinates", (5, 0), 1e247)),
            "snap_010.hdf5",
            "PartType1/Coordinates",
            "row 5",
        ),
        bad_snapshot(
            "NaN density",
            h5_edit("snap_010.hdf5", _set("PartType0/Density", 7, np.nan)),
            "snap_010.hdf5",
            "PartType0/Density",
            "row 7",
        ),
        bad_snapshot(
            "NumPart_Total_HighWord of another length",
            h5_edit("snap_010.hdf5", _set_attr("Header", "NumPart_Total_HighWord", np.zeros(5, np.uint32))),
            "snap_010.hdf5",
            "NumPart_Total_HighWord",
        ),
        bad_snapshot(
            "negative particle mass",
            h5_edit("snap_010.hdf5", _set("PartType1/Masses", 3, -1.0)),
            "snap_010.hdf5",
            "PartType1/Masses",
            "row 3",
        ),
        Case(
            "snapshot files missing",
            "snapshot",
            "error",
            setup=snapshot_setup(),
            extra=SNAPSHOT.replace("snap_010.hdf5", "snap_099.hdf5"),
            args=("-n",),
            words=("snap_099.hdf5",),
        ),
        Case(
            "dataset chunk deleted after training",
            "stores",
            "error",
            copy_reference=True,
            setup=delete(chunk_of("dataset/maps.zarr", last=True)),
            args=("--forcerun", "sample_posterior"),
            words=("maps.zarr", "is missing", "sightline_id"),
        ),
        Case(
            "dataset chunk with a changed byte",
            "stores",
            "error",
            copy_reference=True,
            setup=flip_byte(chunk_of("dataset/maps.zarr")),
            args=("--forcerun", "linear_baselines"),
            words=("maps.zarr", "changed bytes", "sightline_id"),
        ),
        Case(
            "sample store chunk deleted",
            "stores",
            "error",
            copy_reference=True,
            setup=delete(chunk_of("samples/test.zarr", "samples")),
            args=("--forcerun", "evaluate_posterior"),
            words=("test.zarr", "is missing", "sightline_id"),
        ),
        Case(
            "shard store chunk deleted",
            "stores",
            "error",
            copy_reference=True,
            setup=delete(chunk_of("shards/shard_0.zarr")),
            args=("--forcerun", "assemble_dataset"),
            words=("shard_0.zarr", "is missing"),
        ),
        Case(
            "halo catalogue output truncated",
            "stores",
            "error",
            copy_reference=True,
            setup=truncate(str(RES / "catalog/halos.parquet")),
            args=("--forcerun", "sightline_plan"),
            words=("halos.parquet",),
        ),
        Case(
            "model weights deleted",
            "stores",
            "error",
            copy_reference=True,
            setup=lambda w: next((w / RES / "model").glob("*.pt")).unlink(),
            args=("--forcerun", "sample_posterior"),
            words=("model",),
        ),
        Case(
            "catalogue edited in place",
            "inputs",
            "recover",
            setup=write("halos.csv", GOOD_CSV),
            extra=CATALOGUE,
            run=_edit_catalogue_and_rerun,
            check=lambda w: len(pd.read_parquet(w / RES / "catalog/halos.parquet")) == 5,
        ),
        Case(
            "snapshot edited in place",
            "inputs",
            "recover",
            setup=snapshot_setup(),
            extra=SNAPSHOT,
            run=_edit_snapshot_and_dry_run,
            check=lambda w: True,
        ),
        Case(
            "latest checkpoint truncated",
            "faults",
            "recover",
            copy_reference=True,
            setup=lambda w: _damage_checkpoints(w, "checkpoint.pt"),
            args=("--forcerun", "train_model", str(RES / "model")),
            check=same_as_reference("model/checkpoint_001.pt"),
        ),
        Case(
            "both checkpoints damaged",
            "faults",
            "error",
            copy_reference=True,
            setup=lambda w: _damage_checkpoints(w, "checkpoint.pt", "checkpoint.prev.pt"),
            args=("--forcerun", "train_model", str(RES / "model")),
            words=("checkpoint.pt", "checkpoint.prev.pt"),
        ),
        Case(
            "sample_posterior killed half-way",
            "faults",
            "recover",
            copy_reference=True,
            run=lambda c, w: kill_during(
                c,
                w,
                wait_for=has_files(str(RES / "checkpoints"), "sightline_*.npy"),
                sig=signal.SIGKILL,
                group=True,
                unlock=True,
                target=str(RES / "samples/test.zarr"),
                forcerun=("sample_posterior",),
            ),
            check=same_as_reference("samples/test.zarr"),
        ),
        Case(
            "snakemake SIGTERM during projection",
            "faults",
            "recover",
            run=lambda c, w: kill_during(
                c,
                w,
                wait_for=has_files(str(RES / "logs/project_shard")),
                sig=signal.SIGTERM,
                group=False,
                unlock=False,
                target=str(RES / "dataset/maps.zarr"),
            ),
            check=same_as_reference("dataset/maps.zarr"),
        ),
        Case(
            "snakemake SIGKILL during projection, rerun",
            "faults",
            "error",
            run=lambda c, w: kill_during(
                c,
                w,
                wait_for=has_files(str(RES / "logs/project_shard")),
                sig=signal.SIGKILL,
                group=True,
                unlock=False,
                target=str(RES / "dataset/maps.zarr"),
            ),
            words=("cannot be locked", "--unlock"),
        ),
        Case(
            "snakemake SIGKILL during projection, --unlock, rerun",
            "faults",
            "recover",
            run=lambda c, w: kill_during(
                c,
                w,
                wait_for=has_files(str(RES / "logs/project_shard")),
                sig=signal.SIGKILL,
                group=True,
                unlock=True,
                target=str(RES / "dataset/maps.zarr"),
            ),
            check=same_as_reference("dataset/maps.zarr"),
        ),
        Case(
            "a second snakemake in the same folder",
            "faults",
            "error",
            run=concurrent,
            words=("cannot be locked",),
            check=lambda w: digest(w / RES / "dataset/maps.zarr") == digest(REFERENCE / RES / "dataset/maps.zarr"),
        ),
        Case(
            "empty folder at catalog/halos.parquet",
            "faults",
            "error",
            setup=lambda w: (w / RES / "catalog/halos.parquet").mkdir(parents=True),
            args=("-n",),
            words=("halos.parquet", "expected a file"),
        ),
        Case(
            "file at metrics/evaluation.zarr",
            "faults",
            "error",
            copy_reference=True,
            setup=_replace_evaluation_store,
            args=(),
            words=("evaluation.zarr", "expected a directory"),
            check=lambda w: (w / RES / "figures/fig8_bias.png").is_file(),
        ),
    ]
    return out


def _plain_snakemake(work: Path) -> tuple[int, str]:
    """Snakemake in ``work`` with its own config/config.yaml (no --configfile)."""
    from _workflow import ROOT

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(work),
            "-n",
            "--cores",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out.returncode, out.stdout + out.stderr


def _run_edit_run(case: Case, work: Path, target: str, edit: Callable[[Path], None], *args: str) -> tuple[int, str]:
    """Run to ``target``, edit an input file in place, then run again (with ``args``)."""
    rc, text = smk(work, target, extra=case.extra)
    if rc:
        return rc, text
    time.sleep(1.1)  # a later modification time than the outputs
    edit(work)
    return smk(work, target, *args, extra=case.extra)


def _edit_catalogue_and_rerun(case: Case, work: Path) -> tuple[int, str]:
    one_fewer = GOOD_CSV.rsplit("\n", 2)[0] + "\n"
    return _run_edit_run(case, work, str(RES / "catalog/halos.parquet"), write("halos.csv", one_fewer))


def _edit_snapshot_and_dry_run(case: Case, work: Path) -> tuple[int, str]:
    edit = h5_edit("snap_010.hdf5", _set_attr("Header", "Note", "edited"))
    rc, text = _run_edit_run(case, work, str(RES / "dataset/maps.zarr"), edit, "-n")
    reruns = "project_shard" in text
    return (rc if reruns else 1), text + ("" if reruns else "\nnothing reruns")


def _damage_checkpoints(work: Path, *names: str) -> None:
    folder = next((work / RES / "checkpoints").glob("*/checkpoint.pt")).parent
    for name in names:
        os.truncate(folder / name, (folder / name).stat().st_size // 2)


def _replace_evaluation_store(work: Path) -> None:
    store = work / RES / "metrics/evaluation.zarr"
    shutil.rmtree(store)
    store.write_text("not a store")
    later = time.time() + 10
    os.utime(store, (later, later))  # newer than the figures made from it


# -------------------------------------------------------------------------------------------- driver
REFERENCE: Path


def run_case(case: Case, root: Path) -> Outcome:
    work = root / re.sub(r"\W+", "_", case.name).strip("_")
    shutil.rmtree(work, ignore_errors=True)
    if case.copy_reference:
        shutil.copytree(REFERENCE, work, symlinks=True)
    else:
        work.mkdir(parents=True)
    t0 = time.monotonic()
    case.setup(work)
    rc, text = case.run(case, work) if case.run else smk(work, *case.args, extra=case.extra)
    outcome = classify(case, rc, text, work)
    outcome.seconds = time.monotonic() - t0
    (work / "matrix.log").write_text(text)
    return outcome


def table(outcomes: list[Outcome]) -> str:
    lines = [
        "| group | case | expected | outcome | job log has traceback | message (last error line) |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        detail = o.detail.replace("|", "/")
        if o.missing:
            detail += f" (does not name: {', '.join(o.missing)})"
        lines.append(
            f"| {o.case.group} | {o.case.name} | {o.case.expect} | {o.verdict} | {o.log_has_traceback} | {detail} |"
        )
    counts = pd.Series([o.verdict for o in outcomes]).value_counts()
    lines += ["", f"{len(outcomes)} cases: " + ", ".join(f"{n} {v}" for v, n in counts.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    global REFERENCE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="run only the cases whose name contains one of these words")
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) here")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="massmaps-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    REFERENCE = root / "reference"
    todo = [c for c in cases() if not args.only or any(w in c.name for w in args.only)]
    if not REFERENCE.exists():
        t0 = time.monotonic()
        REFERENCE.mkdir()
        rc, text = smk(REFERENCE)
        if rc:
            sys.exit(f"the reference run failed:\n{text[-5000:]}")
        print(f"reference run: {time.monotonic() - t0:.0f} s", flush=True)
    outcomes = []
    for case in todo:
        outcomes.append(run_case(case, root))
        o = outcomes[-1]
        print(f"{o.seconds:6.1f} s  {o.verdict:14s} {case.group:9s} {case.name}", flush=True)
    text = table(outcomes)
    print(text)
    if args.out:
        args.out.write_text(text)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
