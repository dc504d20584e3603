"""Start the processes of a data-parallel training job, and the entry point each of them runs.

``python -m massmaps.learning.launch JOB.json`` is one rank: it joins the process group its launcher
describes (torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` or srun's ``SLURM_PROCID``/``SLURM_NTASKS``/
``SLURM_LOCALID``, with ``MASTER_ADDR``/``MASTER_PORT``), then runs
:func:`massmaps.learning.reconstruct.train_from_store` with the job's arguments. It exits as one
process would: 0 when the model is written, 75 when every rank stopped after rank 0's checkpoint.

:func:`launch` starts ``world_size`` such ranks: through ``srun`` inside a Slurm job (one task per rank,
on up to ``nodes`` nodes), otherwise as local child processes with torchrun's environment variables
(one node only). It forwards SIGTERM, SIGUSR1 and SIGINT to the ranks and returns one exit code: 0 when
every rank ended with 0, 75 when every rank ended with 0 or 75, else the first other code. torchrun
itself runs the same entry point: ``torchrun --nproc-per-node N -m massmaps.learning.launch JOB.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

EXIT_RESUMABLE = 75  # as massmaps.learning.training.EXIT_RESUMABLE (not imported: torch loads slowly)
JOB_KEYS = {"store", "splits", "model_dir", "checkpoint_dir", "training", "normalisation", "log", "provenance"}


def free_port() -> int:
    """A TCP port that is free on this host now (for rank 0 to listen on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def rank_command(job_file: str | os.PathLike) -> list[str]:
    return [sys.executable, "-m", "massmaps.learning.launch", str(job_file)]


def _combined_exit(codes: Sequence[int]) -> int:
    if all(c == 0 for c in codes):
        return 0
    if all(c in (0, EXIT_RESUMABLE) for c in codes):
        return EXIT_RESUMABLE
    return next(c for c in codes if c not in (0, EXIT_RESUMABLE))


def spawn_local(
    command: Sequence[str],
    world_size: int,
    env: Mapping[str, str] | None = None,
    threads: int | None = None,
    grace_s: float = 60.0,
    log=print,
) -> int:
    """Run ``world_size`` copies of ``command`` on this host, each with torchrun's environment variables
    (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` on a free port) and
    ``OMP_NUM_THREADS=threads``; return the combined exit code (see the module's docstring). When a rank
    fails, the others get ``grace_s`` seconds to end, then are killed."""
    base = dict(os.environ if env is None else env)
    base.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(world_size)})
    if threads is not None:
        base["OMP_NUM_THREADS"] = str(threads)
    procs = [
        subprocess.Popen(list(command), env={**base, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(world_size)
    ]

    def forward(signum, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = {}
    if threading_main():
        old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    try:
        failed_at = None
        while any(p.poll() is None for p in procs):
            bad = [p.returncode for p in procs if p.returncode not in (None, 0, EXIT_RESUMABLE)]
            if bad and failed_at is None:
                failed_at = time.monotonic()
                log(f"a training rank failed with exit code {bad[0]}; waiting {grace_s:.0f} s for the others")
            if failed_at is not None and time.monotonic() - failed_at > grace_s:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.05)
        return _combined_exit([p.returncode for p in procs])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for sig, handler in old.items():
            signal.signal(sig, handler)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def srun_command(command: Sequence[str], world_size: int, nodes: int, threads: int) -> list[str]:
    """``srun`` starting one task per rank in the current Slurm job. Not --kill-on-bad-exit: the ranks of
    an interrupted training all exit 75, and a rank killed while it exits would turn srun's exit code (the
    highest of its tasks) into 137; a rank that fails makes the others fail at their next collective."""
    options = [f"--ntasks={world_size}", f"--nodes={nodes}", f"--cpus-per-task={threads}", "--kill-on-bad-exit=0"]
    return ["srun", *options, *command]


def launch(
    job: Mapping,
    job_file: str | os.PathLike,
    *,
    nodes: int,
    processes_per_node: int,
    threads: int,
    log=print,
    started_unix: float | None = None,
) -> int:
    """Write ``job`` (the keywords of :func:`run_job`) to ``job_file`` and run one rank per process.

    Through srun inside a Slurm job, else locally (``nodes`` must then be 1; the ``threads`` are shared
    among the local ranks). ``started_unix``: when the attempt's time budget started (``time.time()``;
    default now). Returns the combined exit code.
    """
    bad = sorted(set(job) - JOB_KEYS)
    if bad:
        raise ValueError(f"unknown training job key(s) {bad}; valid: {sorted(JOB_KEYS)}")
    world_size = nodes * processes_per_node
    Path(job_file).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(job_file).with_name(f".{Path(job_file).name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({**job, "started_unix": started_unix or time.time()}, indent=2))
    os.replace(tmp, job_file)
    command = rank_command(job_file)
    if os.environ.get("SLURM_JOB_ID") and shutil.which("srun"):
        env = {**os.environ, "MASTER_PORT": str(free_port())}
        from .distributed import master_address

        env["MASTER_ADDR"] = master_address(env)
        call = srun_command(command, world_size, nodes, threads)
        log(f"starting {world_size} training ranks: {' '.join(call)}")
        return subprocess.run(call, env=env).returncode
    if nodes != 1:
        raise ValueError(
            f"training.nodes is {nodes}, but this job runs outside Slurm (no SLURM_JOB_ID or no srun): "
            "several nodes need the Slurm profile (profiles/slurm); on one machine set training.nodes: 1"
        )
    log(f"starting {world_size} local training ranks: {' '.join(command)}")
    return spawn_local(command, world_size, threads=max(1, threads // world_size), log=log)


def rule_resources(training: Mapping) -> dict:
    """The train_model rule's device and task resources, from the config's training block.

    One process: ``gpu`` 1 when ``training.device`` may be CUDA (as ever). Several: one Slurm task per
    rank (``tasks``, ``nodes``) and ``mpi`` (snakemake-executor-plugin-slurm then runs the job's script
    directly in the batch job, not inside a one-task ``srun``, so that :func:`launch` may start its own
    ``srun`` step with every task); on CUDA one GPU per rank, asked per node as ``gres: gpu:P`` (the
    plugin's ``gpu`` is a total, ``--gpus``), with ``tasks_per_gpu: 1`` (else the plugin would pass
    ``tasks`` as ``--ntasks-per-gpu``).
    """
    nodes, per_node = int(training.get("nodes", 1)), int(training.get("processes_per_node", 1))
    cuda = training.get("device", "auto") in ("auto", "cuda")
    if nodes * per_node == 1:
        return {"gpu": 1 if cuda else 0}
    out = {"gpu": 0, "tasks": nodes * per_node, "nodes": nodes, "mpi": "srun"}
    if cuda:
        out.update({"gres": f"gpu:{per_node}", "tasks_per_gpu": 1})
    return out


def run_job(job: Mapping) -> int:
    """One rank of the job: join the process group, train, leave it; returns the exit code."""
    import torch

    from .. import logs
    from ..files import read_table
    from . import distributed
    from .reconstruct import train_from_store

    world = distributed.world_from_env()
    log_path = job.get("log") if world.main else Path(job["checkpoint_dir"]) / f"rank{world.rank}.log"
    log = logs.setup(None, also_append=log_path) if log_path else logs.setup(None)
    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    budget_start = time.monotonic() - (time.time() - float(job.get("started_unix", time.time())))
    cuda = job["training"].get("device", "auto") == "cuda" or (
        job["training"].get("device", "auto") == "auto" and torch.cuda.is_available()
    )
    distributed.init_from_env("nccl" if cuda else "gloo")  # gloo for CPU training on a machine with GPUs
    try:
        log.info("rank %d of %d (local rank %d) on %s", world.rank, world.size, world.local_rank, socket.gethostname())
        result = train_from_store(
            job["store"],
            read_table(job["splits"]),
            job["model_dir"],
            job["checkpoint_dir"],
            training=job["training"],
            normalisation=job.get("normalisation"),
            progress=False,
            budget_start=budget_start,
            provenance=job.get("provenance"),
        )
        log.info("rank %d: trained to step %d (resumed from %s)", world.rank, result.step, result.resumed_from)
        return 0
    except SystemExit as stop:
        return int(stop.code) if isinstance(stop.code, int) else 1
    finally:
        distributed.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) != 1:
        print("usage: python -m massmaps.learning.launch JOB.json", file=sys.stderr)
        return 2
    return run_job(json.loads(Path(argv[0]).read_text()))


def exit_now(code: int) -> None:
    """End this rank with ``code`` once its logs and standard streams are flushed, skipping the interpreter's
    teardown: a rank that had written the model was seen to abort there (SIGABRT, "terminate called without
    an active exception", from a thread that torch's compiled or distributed runtime left behind), which
    the launcher would count as a failed rank."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing more to save
            pass
    os._exit(int(code))


if __name__ == "__main__":
    exit_now(main())
