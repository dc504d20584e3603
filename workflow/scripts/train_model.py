"""Rule train_model: fit the normalisation, train (or resume) the conditional score model.

Exits 75 after checkpointing when the time budget runs out or on SIGTERM/SIGUSR1; a rerun resumes.
Inside a Slurm job, with ``training.time_budget_s`` null, the budget is the rule's ``runtime``
resource (the job's time limit) less ``training.runtime_margin_s``, counted from this script's start,
so that a job about to hit its time limit checkpoints and exits and Snakemake's ``retries`` resubmit it.
With ``training.nodes`` x ``training.processes_per_node`` > 1 it starts one process per rank
(:func:`massmaps.learning.launch.launch`: srun inside Slurm, local processes otherwise) and exits with
their combined code (0, or 75 when every rank stopped after the checkpoint).
"""

import time

T0 = time.monotonic()  # the budget counts from here, before the imports and the normalisation
T0_UNIX = time.time()  # the same instant for the ranks of a multi-process training

import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

import torch  # noqa: E402

from massmaps import files, logs  # noqa: E402
from massmaps.learning import reconstruct  # noqa: E402
from massmaps.learning.launch import launch  # noqa: E402
from massmaps.learning.training import attempt_time_budget  # noqa: E402

# the log of every attempt, beside the checkpoints (Snakemake deletes the rule's log before each attempt)
log = logs.setup(snakemake.log[0], also_append=Path(snakemake.params.checkpoint_dir) / "attempts.log")  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821
training = dict(snakemake.params.training)  # noqa: F821
margin_s = training.pop("runtime_margin_s", None)
runtime_min = snakemake.resources.get("runtime")  # noqa: F821  (minutes; Snakemake >= 9.20)
slurm_job = os.environ.get("SLURM_JOB_ID")
log.info("---- train_model on %s (Slurm job %s)", os.uname().nodename, slurm_job)
training["time_budget_s"] = attempt_time_budget(
    training.get("time_budget_s"), runtime_min, margin_s, under_scheduler=slurm_job is not None
)
if training["time_budget_s"] is not None:
    log.info(
        "time budget of this attempt: %.0f s (training.time_budget_s %s, runtime %s min, margin %s s)",
        training["time_budget_s"],
        snakemake.params.training.get("time_budget_s"),  # noqa: F821
        runtime_min,
        margin_s,
    )
nodes, per_node = training.pop("nodes", 1), training.pop("processes_per_node", 1)
if nodes * per_node > 1:  # one process per rank (srun inside Slurm, else local processes); this one waits
    logs.append_from_now()  # rank 0 appends its lines to this job's log
    code = launch(
        {
            "store": snakemake.input.dataset,  # noqa: F821
            "splits": snakemake.input.splits,  # noqa: F821
            "model_dir": snakemake.output.model,  # noqa: F821
            "checkpoint_dir": snakemake.params.checkpoint_dir,  # noqa: F821
            "training": training,
            "normalisation": snakemake.params.normalisation,  # noqa: F821
            "log": snakemake.log[0],  # noqa: F821
            "provenance": snakemake.params.provenance,  # noqa: F821
        },
        Path(snakemake.params.checkpoint_dir) / "launch.json",  # noqa: F821
        nodes=nodes,
        processes_per_node=per_node,
        threads=snakemake.threads,  # noqa: F821
        log=log.info,
        started_unix=T0_UNIX,
    )
    log.info("%d training ranks ended with exit code %d", nodes * per_node, code)
    sys.exit(code)
result = reconstruct.train_from_store(
    snakemake.input.dataset,  # noqa: F821
    files.read_table(snakemake.input.splits),  # noqa: F821
    snakemake.output.model,  # noqa: F821
    snakemake.params.checkpoint_dir,  # noqa: F821
    training=training,
    normalisation=snakemake.params.normalisation,  # noqa: F821
    budget_start=T0,
    provenance=snakemake.params.provenance,  # noqa: F821
)
log.info(
    "trained to step %d (resumed from %s): train loss %s, val loss %s, %.1f images/s",
    result.step,
    result.resumed_from,
    result.train_loss,
    result.val_loss,
    result.images_per_s,
)
