"""The workflow through a real single-node Slurm, and training across a Slurm time limit.

Opt-in (it installs and starts system daemons): ``make test-slurm``, i.e. ``MASSMAPS_SLURM_TEST=1
pytest tests/slurm`` as root on a Debian/Ubuntu machine; CI runs it after ``make test``. It

1. brings up slurmctld, slurmd and munge on this machine (``tests/slurm/up.sh``: apt-get install when
   missing, /etc/slurm/slurm.conf with one node of nproc CPUs and one fake GPU);
2. submits a tiny config through the Slurm workflow profile (``profiles/slurm``, its resources scaled
   down to the node, status polls every 2 s) and, at the same time, runs the same config locally;
   train_model gets a ``runtime`` of 1 minute in both runs and more steps than fit in one minute;
3. checks that every job went through sbatch and is seen by squeue (the profile's status command) in
   its final state, that train_model and sample_posterior asked Slurm for the GPU gres, that
   train_model ran out of its time budget, checkpointed, exited 75 and was resubmitted, and reached
   the same step count with the same weights as the local run (which the 1-minute runtime does not cut
   short), and that tables, dataset, samples and summary are byte-identical to the local run;
4. tears Slurm down (``tests/slurm/down.sh``, by pid files) and prints the daemons' logs on failure.

Every wait has a timeout. The profile's own settings are checked without Slurm by the tests at the end.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
STATE = Path(os.environ.get("MASSMAPS_SLURM_STATE", "/tmp/massmaps-slurm"))
LOCK = Path("/tmp/massmaps-slurm-test.lock")  # one test cluster per machine at a time
RUN = "slurmtest"
NCPU = os.cpu_count() or 1
TIMEOUT_UP_S = 420  # apt-get install included
TIMEOUT_RUN_S = 1200  # each workflow run; the whole test takes about 5 minutes on 2 idle cores
RETRIES = 8  # train_model attempts beyond the first (2 on an idle machine, 4 when the cores are shared)

# The tiny config of tests/test_workflow.py, with training long enough to need two or more 1-minute Slurm
# jobs: the budget of one attempt is 60 s - runtime_margin_s = 25 s, counted from the start of the
# training script. Since the training set is held in memory once read, one core of this 2-core machine
# trains 35-37 steps/s here, and an attempt reaches about step 650-700 (650 steps took 19-21 s after
# the imports in two runs; before the cache it was 300-380 steps an attempt), so 1,100 steps take two
# attempts.
CONFIG = f"""
run: {RUN}
seed: 3
catalog: {{box_Mpc: 120.0, test_box_Mpc: null}}
sightlines: {{target_per_bin: 2, max_per_cluster: 6, n_shards: 2}}
projection: {{npix: 16, pixel_Mpc: 0.8}}
dataset: {{chunk_sightlines: 4}}
figures: {{formats: [png]}}
split: {{fractions: [0.6, 0.2, 0.2]}}
training: {{steps: 1100, batch_size: 8, checkpoint_every: 50, val_every: 100, log_every: 50, runtime_margin_s: 35,
           network: {{nf: 8, ch_mult: [1, 2], attention: false, fir: false}}}}
sampling: {{eval_range_only: false, n_samples: 3, steps: 3, batch_size: 8}}
"""
STEPS = 1100
COMPARED_FILES = [
    "catalog/halos.parquet",
    "sightlines/plan.parquet",
    "split/splits.parquet",
    "figures/fig1_mass_function.png",
    "metrics/posterior_summary.json",
]
COMPARED_STORES = ["dataset/maps.zarr", "samples/test.zarr"]
# The targets: the DAG up to the posterior and its summary (the figure and table rules after it run the
# same way, locally in tests/test_workflow.py; leaving them out keeps this test near 5 minutes)
TARGETS = [f"results/{RUN}/{name}" for name in ("figures/fig1_mass_function.png", "metrics/posterior_summary.json")]

enabled = os.environ.get("MASSMAPS_SLURM_TEST") == "1"


# ------------------------------------------------------------------------------------------ helpers
def digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name != ".snakemake_timestamp"):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def tail(path: Path, n: int = 80) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as err:
        return f"({path}: {err})"


def daemon_logs() -> str:
    return "\n".join(f"----- {p}\n{tail(p)}" for p in (STATE / "log" / "slurmctld.log", STATE / "log" / "slurmd.log"))


def sh(*cmd: str, timeout: float = 30) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout


def test_profile() -> dict:
    """The Slurm profile, scaled down to the test node: fast status polls, small memory, one thread per job
    (torch threads beyond the free cores of a busy machine slow training down several times, and this test
    times training), train_model limited to 1 minute (without the early --signal, whose lead is longer)."""
    prof = yaml.safe_load(PROFILE.read_text())
    prof.update(
        {
            "slurm-init-seconds-before-status-checks": 2,
            "seconds-between-status-checks": 2,
            "latency-wait": 5,
            "retries": RETRIES,
            "slurm-keep-successful-logs": True,
            "verbose": True,  # the plugin logs every status query (command=squeue) and sbatch call
            "default-resources": ["mem_mb=1000", "runtime=10"],
            "set-threads": {rule: 1 for rule in prof["set-threads"]},
        }
    )
    for res in prof["set-resources"].values():
        res["mem_mb"] = min(res.get("mem_mb", 1000), 2000)
        res["runtime"] = min(res.get("runtime", 10), 30)
    del prof["set-resources"]["train_model"]["slurm_extra"]
    prof["set-resources"]["train_model"]["runtime"] = 1
    return prof


test_profile.__test__ = False  # a helper, not a test


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        *TARGETS,
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(ROOT / "config" / "config.yaml"),
        str(workdir / "test.yaml"),
        *args,
    ]


@dataclass
class Runs:
    local: Path
    slurm: Path
    slurm_log: str
    local_log: str
    squeue: dict[str, tuple[str, str]]  # Slurm job id -> (state, comment)
    scontrol: dict[str, str] = field(default_factory=dict)  # Slurm job id -> `scontrol show job`
    submitted: list[tuple[str, str, Path]] = field(default_factory=list)  # (rule, Slurm job id, log)
    wall_s: dict[str, float] = field(default_factory=dict)
    daemon_logs: str = ""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if not enabled:
        pytest.skip(
            "opt-in: brings up a real Slurm on this machine; run `make test-slurm` (MASSMAPS_SLURM_TEST=1, as root)"
        )
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.fail("MASSMAPS_SLURM_TEST=1 needs Linux and root (it starts slurmctld, slurmd and munged)")
    if not (shutil.which("sbatch") or shutil.which("apt-get")):
        pytest.fail("MASSMAPS_SLURM_TEST=1 needs Slurm installed or apt-get to install it")
    if shutil.which("snakemake") is None and not Path(sys.executable).with_name("snakemake").exists():
        pytest.fail("snakemake is not installed next to this python")

    t0 = time.monotonic()
    with open(LOCK, "w") as lock:
        deadline = time.monotonic() + TIMEOUT_RUN_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{LOCK} held by another Slurm test for {TIMEOUT_RUN_S} s")
                time.sleep(2)
        try:
            yield _bring_up_and_run(tmp_path_factory, t0)
        finally:
            down = subprocess.run([str(HERE / "down.sh"), str(STATE)], capture_output=True, text=True, timeout=120)
            print(down.stdout + down.stderr)


def _bring_up_and_run(tmp_path_factory, t0: float) -> Runs:
    wall = {}
    up = subprocess.run([str(HERE / "up.sh"), str(STATE)], capture_output=True, text=True, timeout=TIMEOUT_UP_S)
    wall["bring_up"] = time.monotonic() - t0
    assert up.returncode == 0, f"tests/slurm/up.sh failed:\n{up.stdout}\n{up.stderr}"
    print(up.stderr)

    local, slurm = tmp_path_factory.mktemp("local"), tmp_path_factory.mktemp("slurm")
    threads = test_profile()["set-threads"]
    for d in (local, slurm):
        (d / "test.yaml").write_text(CONFIG)
    (slurm / "profile").mkdir()
    (slurm / "profile" / "config.yaml").write_text(yaml.safe_dump(test_profile(), sort_keys=False))

    # the same threads as the Slurm jobs (identical bytes), the same 1-minute runtime for train_model
    local_cmd = snakemake_cmd(
        local,
        "--cores",
        str(min(NCPU, 2)),
        "--set-threads",
        *(f"{rule}={n}" for rule, n in threads.items()),
        "--set-resources",
        "train_model:runtime=1",
    )
    slurm_cmd = [
        "timeout",
        "-s",
        "INT",
        "-k",
        "30",
        str(TIMEOUT_RUN_S),
        *snakemake_cmd(slurm, "--workflow-profile", str(slurm / "profile")),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t_runs = time.monotonic()
    with open(local / "run.log", "w") as local_out, open(slurm / "run.log", "w") as slurm_out:
        procs = {
            "slurm": subprocess.Popen(slurm_cmd, stdout=slurm_out, stderr=subprocess.STDOUT, env=env, cwd=slurm),
            "local": subprocess.Popen(
                ["timeout", "-s", "INT", "-k", "30", str(TIMEOUT_RUN_S), *local_cmd],
                stdout=local_out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=local,
            ),
        }
        codes = {}
        deadline = t_runs + TIMEOUT_RUN_S + 60  # `timeout` ends each run before this
        while len(codes) < len(procs):
            for name, proc in procs.items():
                if name not in codes and (proc.poll() is not None or time.monotonic() > deadline):
                    if proc.poll() is None:
                        proc.kill()
                    codes[name] = proc.wait()
                    wall[name] = time.monotonic() - t_runs
            time.sleep(0.5)
    slurm_log, local_log = (slurm / "run.log").read_text(), (local / "run.log").read_text()

    queue = {}
    for line in sh("squeue", "--states=all", "--noheader", "--format=%i|%T|%k").splitlines():
        jobid, state, comment = line.strip().split("|", 2)
        queue[jobid] = (state, comment)
    submitted = [
        (re.search(r"slurm_logs/rule_(\w+?)/", logfile).group(1), jobid, Path(logfile))
        for jobid, logfile in re.findall(
            r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.?$", slurm_log, re.M
        )
    ]
    scontrol = {jobid: sh("scontrol", "show", "job", jobid) for _, jobid, _ in submitted}
    result = Runs(
        local=local / "results" / RUN,
        slurm=slurm / "results" / RUN,
        slurm_log=slurm_log,
        local_log=local_log,
        squeue=queue,
        scontrol=scontrol,
        submitted=submitted,
        daemon_logs=daemon_logs(),
    )
    wall["total"] = time.monotonic() - t0
    result.wall_s = wall
    print(f"wall times (s): {json.dumps({k: round(v, 1) for k, v in wall.items()})}")
    if codes["slurm"] != 0:
        failed = [p for p in (slurm / ".snakemake" / "slurm_logs").rglob("*.log")]
        raise AssertionError(
            f"the Slurm run exited {codes['slurm']} (124: timed out after {TIMEOUT_RUN_S} s)\n"
            f"----- snakemake\n{slurm_log[-6000:]}\n"
            + "".join(f"----- {p}\n{tail(p, 40)}\n" for p in failed[-6:])
            + f"----- squeue\n{queue}\n{result.daemon_logs}"
        )
    assert codes["local"] == 0, f"the local run exited {codes['local']}:\n{local_log[-6000:]}"
    return result


# -------------------------------------------------------------------------------------------- tests
def test_every_job_submitted_to_slurm_and_seen_by_squeue(runs):
    rules = [rule for rule, _, _ in runs.submitted]
    expected = {
        "halo_catalog",
        "sightline_plan",
        "project_shard",
        "assemble_dataset",
        "figure_mass_function",
        "split_dataset",
        "train_model",
        "sample_posterior",
        "evaluate_posterior",
    }
    assert set(rules) == expected, rules
    assert rules.count("project_shard") == 2
    for rule, jobid, _ in runs.submitted:
        assert jobid in runs.squeue, f"Slurm job {jobid} ({rule}) not in squeue: {runs.squeue}"
        state, comment = runs.squeue[jobid]
        assert comment.startswith(f"rule_{rule}"), (jobid, comment)
        if rule != "train_model":
            assert state == "COMPLETED", (rule, jobid, state)
    # the plugin polled squeue, never sacct (there is no accounting here)
    queries = re.findall(r"Status query timing \(cycle\): command=(\w+)", runs.slurm_log)
    assert queries and set(queries) == {"squeue"}, queries
    assert "Falling back to 'sacct'" not in runs.slurm_log
    # no account, and only the cluster's default partition (the plugin asks sinfo for it)
    calls = re.findall(r"sbatch call: (.*)", runs.slurm_log)
    assert len(calls) == len(runs.submitted)
    assert not any(re.search(r" (-A|--account)[ =]", c) for c in calls), calls
    assert all(re.findall(r" (?:-p|--partition)[ =](\S+)", c) == ["debug"] for c in calls), calls


def test_gpu_rules_request_the_gpu_gres(runs):
    for rule, jobid, _ in runs.submitted:
        gpu = re.search(r"TresPerJob=gres:gpu:1\b", runs.scontrol[jobid]) is not None
        assert gpu == (rule in ("train_model", "sample_posterior")), (rule, runs.scontrol[jobid])


def test_training_resumes_across_time_limit(runs):
    import torch

    from massmaps.learning import score

    attempts = [(jobid, logfile) for rule, jobid, logfile in runs.submitted if rule == "train_model"]
    states = [runs.squeue[jobid][0] for jobid, _ in attempts]
    assert len(attempts) >= 2, f"training finished in one 1-minute job: {states}"
    assert states[-1] == "COMPLETED" and all(s in ("FAILED", "TIMEOUT") for s in states[:-1]), states
    for jobid, logfile in attempts[:-1]:  # a failed job's Slurm log is kept
        assert "returned non-zero exit status 75" in logfile.read_text(), f"job {jobid} did not exit 75"
    assert all("TimeLimit=00:01:00" in runs.scontrol[jobid] for jobid, _ in attempts)

    # every attempt's log, beside the checkpoints
    (train_log,) = [p.read_text() for p in runs.slurm.glob("checkpoints/*/attempts.log")]
    budgets = re.findall(r"time budget of this attempt: (\d+) s", train_log)
    stops = [(int(step), why) for step, why in re.findall(r"stopping at step (\d+): (.+?); checkpoint", train_log)]
    resumes = [int(s) for s in re.findall(r"resuming from \S+ at step (\d+)", train_log)]
    assert budgets == ["25"] * len(attempts), budgets  # 1 min - runtime_margin_s (35 s)
    # every attempt but the last stopped on its budget (or on Slurm's SIGTERM at the time limit, when the
    # job's start-up took longer than the margin), and the next one resumed from that very step
    assert len(stops) == len(attempts) - 1, stops
    assert [step for step, _ in stops] == resumes == sorted(resumes), (stops, resumes)
    assert all(why.startswith("time budget") or why == "SIGTERM" for _, why in stops), stops
    assert any(why.startswith("time budget") for _, why in stops), stops
    print(
        f"train_model: {len(attempts)} Slurm jobs {states}, stopped at {stops}, finished at step {STEPS}; "
        f"wall times (s) {json.dumps({k: round(v, 1) for k, v in runs.wall_s.items()})}"
    )

    (local_log,) = [p.read_text() for p in runs.local.glob("checkpoints/*/attempts.log")]
    assert local_log.count("---- train_model") == 1
    assert "time budget" not in local_log and "resuming" not in local_log  # local runs are never cut short
    meta = {
        k: json.loads((d / "model" / "massmaps_model.json").read_text())["training"]
        for k, d in (("local", runs.local), ("slurm", runs.slurm))
    }
    assert meta["local"]["steps"] == meta["slurm"]["steps"] == STEPS
    assert meta["local"]["resumed_from"] is None and meta["slurm"]["resumed_from"] == stops[-1][0]
    weights = {
        k: torch.load(d / "model" / score.WEIGHTS_FILE, weights_only=True)
        for k, d in (("local", runs.local), ("slurm", runs.slurm))
    }
    assert weights["local"].keys() == weights["slurm"].keys()
    for name, tensor in weights["local"].items():
        assert torch.equal(tensor, weights["slurm"][name]), f"weights {name} differ"
    assert (runs.local / "model" / score.WEIGHTS_FILE).read_bytes() == (
        runs.slurm / "model" / score.WEIGHTS_FILE
    ).read_bytes()


def test_outputs_identical_to_local_run(runs):
    for name in COMPARED_FILES:
        assert (runs.local / name).read_bytes() == (runs.slurm / name).read_bytes(), name
    for name in COMPARED_STORES:
        assert digest(runs.local / name) == digest(runs.slurm / name), name


# ----------------------------------------------------------------------- the profile, without Slurm
def test_slurm_profile_portable_settings():
    prof = yaml.safe_load(PROFILE.read_text())
    assert prof["executor"] == "slurm"
    assert prof["slurm-status-command"] == "squeue"  # works without slurmdbd
    assert prof["retries"] >= 1  # a training job that ran out of time is resubmitted
    text = PROFILE.read_text()
    assert not re.search(r"^\s*-?\s*slurm_(partition|account)\s*[:=]", text, re.M), "partition/account hard-coded"
    defaults = dict(item.split("=", 1) for item in prof["default-resources"])
    assert {"mem_mb", "runtime"} <= set(defaults)  # every job asks for memory and a time limit
    res = prof["set-resources"]
    assert res["sample_posterior"]["gpu"] == 1
    # train_model's GPU and tasks come from the rule (massmaps.learning.launch.rule_resources): a profile
    # value would replace them
    assert not {"gpu", "gres", "tasks", "nodes"} & set(res["train_model"])
    for rule in ("train_model", "sample_posterior"):
        assert {"mem_mb", "runtime"} <= set(res[rule])
    # the early SIGTERM comes well inside the time limit, and after the runtime-derived budget would stop
    # training (config/config.yaml's runtime_margin_s), so that it is a fallback
    lead = int(re.fullmatch(r"'--signal=TERM@(\d+)'", res["train_model"]["slurm_extra"]).group(1))
    margin = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["training"]["runtime_margin_s"]
    assert lead < margin < res["train_model"]["runtime"] * 60 / 10


def _dry_run_train_block(tmp_path, *configfiles) -> str:
    pytest.importorskip("snakemake_executor_plugin_slurm")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--cores",
            "16",
            "--workflow-profile",
            str(PROFILE.parent),
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(ROOT / "config" / "config.yaml"),
            *map(str, configfiles),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-5000:]
    block = text[text.index("rule train_model:") :]
    return block[: block.index("\n\n")] if "\n\n" in block else block


def test_slurm_profile_dry_run(tmp_path):
    """The profile parses and gives train_model its GPU, runtime and threads (dry run: nothing submitted;
    a dry run caps threads at --cores)."""
    block = _dry_run_train_block(tmp_path)
    assert "threads: 8" in block and "gpu=1" in block and "runtime=1440" in block, block
    assert "tasks=" not in block and "mpi=" not in block, block


def test_slurm_profile_asks_for_one_task_and_gpu_per_rank(tmp_path):
    """2 nodes x 4 processes on CUDA: 8 tasks on 2 nodes, 4 GPUs per node (gres, per node; the plugin's gpu
    is a total), one task per GPU, and mpi so that the job's script starts its own srun step."""
    extra = tmp_path / "ranks.yaml"
    extra.write_text("training: {device: cuda, nodes: 2, processes_per_node: 4}\n")
    block = _dry_run_train_block(tmp_path, extra)
    for want in ("tasks=8", "nodes=2", "mpi=srun", "gres=gpu:4", "tasks_per_gpu=1", "gpu=0"):
        assert want in block, (want, block)


def test_two_training_tasks_and_two_sampling_groups(runs, tmp_path):
    """On a copy of the finished Slurm run: training.processes_per_node 2 (on the CPU: the node's one fake GPU
    cannot serve two ranks) and 50 more steps, so train_model is one Slurm job of 2 tasks whose ranks srun
    starts and which resume the 1-rank checkpoint; sampling.groups 2 on the validation split (4 sightlines;
    the test split has 1), so sample_posterior is two Slurm jobs whose stores the evaluation reads as one."""
    import numpy as np

    from massmaps import store as store_mod
    from massmaps.config import load_merged, training_hash

    work = tmp_path / "copy"
    shutil.copytree(runs.slurm.parents[1], work, symlinks=True)
    extra = work / "ranks.yaml"
    extra.write_text(
        f"training: {{processes_per_node: 2, device: cpu, steps: {STEPS + 50}}}\nsampling: {{split: val, groups: 2}}\n"
    )
    res = work / "results" / RUN
    old = next(p for p in (res / "checkpoints").iterdir() if (p / "checkpoint.pt").is_file())
    new_hash = training_hash(load_merged([ROOT / "config" / "config.yaml", work / "test.yaml", extra]))
    shutil.copytree(old, res / "checkpoints" / new_hash)  # resumed at step STEPS by the two ranks
    cmd = snakemake_cmd(work, str(extra), "--workflow-profile", str(work / "profile"))  # extra: a third configfile
    out = subprocess.run(
        ["timeout", "-s", "INT", "-k", "30", str(TIMEOUT_RUN_S), *cmd],
        capture_output=True, text=True, cwd=work, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-6000:] + daemon_logs()
    jobs = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.?$", log, re.M)
    rules = {jobid: re.search(r"slurm_logs/rule_(\w+?)/", path).group(1) for jobid, path in jobs}
    train_jobs = [j for j, r in rules.items() if r == "train_model"]
    assert train_jobs and [r for r in rules.values()].count("sample_posterior") == 2, rules
    show = sh("scontrol", "show", "job", train_jobs[-1])
    assert re.search(r"NumTasks=2\b", show), show
    train_log = (res / "logs" / "train_model.log").read_text()
    assert "starting 2 training ranks: srun" in train_log and "rank 0 of 2" in train_log, train_log[-3000:]
    model = json.loads((res / "model" / "massmaps_model.json").read_text())
    assert model["training"]["steps"] == STEPS + 50 and model["training"]["resumed_from"] == STEPS
    grouped = store_mod.open_store([res / "samples" / f"val.group{g}of2.zarr" for g in range(2)])
    assert grouped.sizes["sightline"] == 4 and np.isfinite(grouped["samples"].values).all()
