"""Data-parallel training on the CPU (gloo): two ranks with global batch B reach the weights of one process
with batch B; a stop on one rank stops both at the same step and a resume continues to the same weights.

Run as a script (``python tests/test_distributed.py JOB_JSON``) it is one rank, started by
:func:`massmaps.learning.launch.spawn_local` (torchrun's environment variables) or with srun's.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from massmaps.learning import checkpoints, distributed, launch, score, training

HERE = Path(__file__).resolve().parent
# The tolerance of 2 ranks against 1 process. Not bit-identical: each rank's convolutions sum the weight
# gradients over its half of the batch and gloo adds the halves, where one process sums the whole batch
# in one kernel (another order of float32 additions, differences of ~1e-7 relative); Adam then divides
# by the square root of the second moment, which carries such differences on into the weights.
ATOL = 1e-5  # measured: 1.2e-7 after 12 steps (tiny network, 16^2 maps, batch 8)


def _config(**kw):
    sys.path.insert(0, str(HERE))
    from test_training import small_config

    return small_config(**kw)


def _data():
    sys.path.insert(0, str(HERE))
    from test_training import synthetic

    return synthetic(32, 16, 1), synthetic(8, 16, 2)


def _worker(job: dict) -> int:
    """One rank: join the group from the environment, train, leave; the exit code of the process."""
    torch.set_num_threads(1)
    distributed.init_from_env()
    try:
        train, val = _data()
        training.train(
            job["model_dir"],
            train,
            val,
            config=_config(**job["config"]),
            checkpoint_dir=job["checkpoint_dir"],
            log=lambda *a: print(*a, flush=True),
        )
        return 0
    except training.TrainingInterrupted as stop:
        print(stop, flush=True)
        return stop.code
    finally:
        distributed.shutdown()


def _start(tmp_path, name, config, world_size=2, env=None):
    job = {
        "model_dir": str(tmp_path / name / "model"),
        "checkpoint_dir": str(tmp_path / name / "ckpt"),
        "config": config,
    }
    return launch.spawn_local([sys.executable, __file__, json.dumps(job)], world_size, env=env, threads=1, grace_s=10)


def _weights(model_dir):
    return torch.load(Path(model_dir) / score.WEIGHTS_FILE, weights_only=True)


def _max_diff(a, b):
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


CONFIG = dict(steps=12, batch_size=8, checkpoint_every=4, val_every=6, log_every=4)


@pytest.mark.parametrize(
    "extra",
    [{}, {"preconditioning": "edm", "sigma_data": 0.3}, {"compile": "aot_eager"}],
    ids=["score_models", "edm", "compiled"],
)
def test_two_ranks_reach_the_weights_of_one_process(tmp_path, extra):
    torch.set_num_threads(1)
    train, val = _data()
    config = dict(CONFIG, **extra)
    ref_dir = tmp_path / "one"
    training.train(ref_dir / "model", train, val, config=_config(**config), checkpoint_dir=ref_dir / "ckpt", log=print)
    t0 = time.monotonic()
    assert _start(tmp_path, "two", config) == 0
    wall = time.monotonic() - t0
    a, b = _weights(tmp_path / "two" / "model"), _weights(ref_dir / "model")
    diff = _max_diff(a, b)
    print(f"2 ranks vs 1 process ({extra}) after {CONFIG['steps']} steps: max |dw| = {diff:.3g} ({wall:.1f} s)")
    assert diff < ATOL
    ckpt2 = checkpoints.load_checkpoint(tmp_path / "two" / "ckpt")
    ckpt1 = checkpoints.load_checkpoint(ref_dir / "ckpt")
    assert ckpt2["step"] == ckpt1["step"] == CONFIG["steps"]
    # the same global batches and noise: the logged losses agree to float32 rounding
    for (s1, l1), (s2, l2) in zip(ckpt1["history"]["loss"], ckpt2["history"]["loss"], strict=True):
        assert s1 == s2 and l2 == pytest.approx(l1, rel=1e-4)
    # only rank 0 wrote: no lock left, no stray files
    assert sorted(p.name for p in (tmp_path / "two" / "ckpt").iterdir()) == sorted(
        p.name for p in (ref_dir / "ckpt").iterdir()
    )


def test_stop_on_one_rank_stops_both_and_resume_matches(tmp_path):
    """SIGTERM to rank 1 only: both ranks stop at the same step after rank 0's checkpoint and exit 75;
    a rerun resumes to the weights of an uninterrupted 2-rank run (bit for bit: same ranks, same order)."""
    config = dict(CONFIG, steps=60, checkpoint_every=1000, val_every=1000, log_every=10)
    assert _start(tmp_path, "straight", config) == 0

    ckpt_dir = tmp_path / "cut" / "ckpt"
    job = {"model_dir": str(tmp_path / "cut" / "model"), "checkpoint_dir": str(ckpt_dir), "config": config}
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(launch.free_port()), "WORLD_SIZE": "2"}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, json.dumps(job)],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(2)
    ]
    deadline, seen = time.monotonic() + 120, []
    while not (seen and seen[-1].startswith("step 10:")):
        seen.append(procs[0].stdout.readline())
        assert procs[0].poll() is None and time.monotonic() < deadline, seen
    procs[1].send_signal(signal.SIGTERM)
    outs = [p.communicate(timeout=60)[0] for p in procs]
    outs[0] = "".join(seen) + outs[0]
    assert [p.returncode for p in procs] == [75, 75], outs
    step = checkpoints.load_checkpoint(ckpt_dir)["step"]
    assert 10 <= step < 60
    assert f"stopping at step {step}: SIGTERM" in outs[1] and f"stopping at step {step}: stopped by another" in outs[0]
    assert not (tmp_path / "cut" / "model").exists()
    import shutil

    shutil.copytree(ckpt_dir, tmp_path / "one_process_ckpt")

    assert _start(tmp_path, "cut", config) == 0
    ckpt = checkpoints.load_checkpoint(ckpt_dir)
    assert ckpt["step"] == 60
    a, b = _weights(tmp_path / "cut" / "model"), _weights(tmp_path / "straight" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a), _max_diff(a, b)

    # the same checkpoint resumed by one process: the 2-rank weights to float32 rounding
    torch.set_num_threads(1)
    result = training.train(
        tmp_path / "one_process",
        *_data(),
        config=_config(**config),
        checkpoint_dir=tmp_path / "one_process_ckpt",
        log=print,
    )
    assert result.resumed_from == step and result.step == 60
    assert _max_diff(_weights(tmp_path / "one_process"), b) < ATOL


def test_time_budget_on_two_ranks_stops_both_at_one_step(tmp_path):
    config = dict(CONFIG, steps=100_000, checkpoint_every=100_000, val_every=100_000, time_budget_s=4.0)
    assert _start(tmp_path, "budget", config) == 75
    step = checkpoints.load_checkpoint(tmp_path / "budget" / "ckpt")["step"]
    assert 0 < step < 100_000
    assert not (tmp_path / "budget" / "ckpt" / checkpoints.LOCK_FILE).exists()


def test_launch_trains_from_the_store_like_one_process(tmp_path):
    """The workflow's path: launch() starts 2 local ranks of ``python -m massmaps.learning.launch``; with
    rotations and flips (drawn per item by the stream) they reach the weights of one process."""
    import numpy as np
    import pandas as pd

    from massmaps import store
    from massmaps.learning import reconstruct

    rng = np.random.default_rng(0)
    maps = rng.lognormal(0, 1, (16, 4, 16, 16)).astype(np.float32)
    ds = store.maps_dataset(
        maps,
        fields=["gas", "dm", "tsz", "xray"],
        units=["1", "1", "microK", "erg/s/cm^2"],
        long_names=["gas", "dm", "tsz", "xray"],
        pixel_Mpc=0.4,
        sightline_coords={"sightline_id": np.arange(16), "halo_id": np.arange(16)},
        attrs={"config_hash": "test", "pixel_Mpc": 0.4, "npix": 16},
    )
    store.write_store(ds, tmp_path / "maps.zarr", chunk_sightlines=4)
    splits = pd.DataFrame({"index": np.arange(16), "split": ["train"] * 12 + ["val"] * 4})
    splits.to_parquet(tmp_path / "splits.parquet")
    tiny = {"nf": 8, "ch_mult": [1, 2], "attention": False, "fir": False}
    training_block = dict(CONFIG, steps=6, batch_size=4, checkpoint_every=3, val_every=3, log_every=3, lr=2e-3)
    training_block.update(seed=2, device="cpu", network=tiny, augment=True, preconditioning="score_models")
    torch.set_num_threads(1)
    reconstruct.train_from_store(
        tmp_path / "maps.zarr", splits, tmp_path / "one", tmp_path / "ckpt1", training=training_block, progress=False
    )
    job = {
        "store": str(tmp_path / "maps.zarr"),
        "splits": str(tmp_path / "splits.parquet"),
        "model_dir": str(tmp_path / "two"),
        "checkpoint_dir": str(tmp_path / "ckpt2"),
        "training": training_block,
        "log": str(tmp_path / "train.log"),
    }
    assert launch.launch(job, tmp_path / "ckpt2" / "launch.json", nodes=1, processes_per_node=2, threads=2) == 0
    diff = _max_diff(_weights(tmp_path / "two"), _weights(tmp_path / "one"))
    print(f"launch, 2 ranks vs 1 process, augment: max |dw| = {diff:.3g}")
    assert diff < ATOL
    meta = [json.loads((tmp_path / name / score.META_FILE).read_text()) for name in ("one", "two")]
    assert meta[1]["data"] == meta[0]["data"]  # the data record, written by rank 0
    assert "rank 0 of 2" in (tmp_path / "train.log").read_text()
    assert "rank 1 of 2" in (tmp_path / "ckpt2" / "rank1.log").read_text()
    with pytest.raises(ValueError, match="training.nodes is 2, but this job runs outside Slurm"):
        launch.launch(job, tmp_path / "job.json", nodes=2, processes_per_node=1, threads=1)


@pytest.mark.parametrize(
    "block, want",
    [
        ({}, {"gpu": 1}),
        ({"device": "cpu"}, {"gpu": 0}),
        ({"device": "cpu", "processes_per_node": 2}, {"gpu": 0, "tasks": 2, "nodes": 1, "mpi": "srun"}),
        (
            {"device": "cuda", "nodes": 2, "processes_per_node": 4},
            {"gpu": 0, "tasks": 8, "nodes": 2, "mpi": "srun", "gres": "gpu:4", "tasks_per_gpu": 1},
        ),
    ],
)
def test_rule_resources(block, want):
    assert launch.rule_resources(block) == want


def test_batch_not_divisible_by_ranks_is_refused():
    with pytest.raises(ValueError, match="training.batch_size 9 is not divisible by the 2"):
        distributed.ShardSampler(range(4), 9, distributed.World(0, 2, 0))


def test_shard_sampler_splits_each_global_batch():
    stream = list(range(24))
    parts = [list(distributed.ShardSampler(stream, 8, distributed.World(r, 2, r))) for r in range(2)]
    assert parts[0] == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19]
    assert parts[1] == [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23]


@pytest.mark.parametrize("preconditioning", ["score_models", "edm"])
def test_sharded_loss_draws_the_global_batch_noise(preconditioning):
    """shard=(0, B) is the unsharded loss bit for bit; two halves average to the whole batch's loss."""
    torch.manual_seed(0)
    model = score.build_score_model({"nf": 8, "ch_mult": (1, 2), "attention": False, "fir": False}, device="cpu")
    den = score.Denoiser(model, preconditioning, 0.3 if preconditioning == "edm" else None)
    x, c = torch.rand(4, 2, 16, 16), torch.rand(4, 2, 16, 16)
    losses = {}
    for name, shard in (("whole", None), ("as one shard", (0, 4))):
        torch.manual_seed(1)
        losses[name] = score.training_loss(den, x, c, shard)
    halves = []
    for first in (0, 2):
        torch.manual_seed(1)
        halves.append(score.training_loss(den, x[first : first + 2], c[first : first + 2], (first, 4)))
    assert torch.equal(losses["whole"], losses["as one shard"])
    assert float(sum(halves).detach() / 2) == pytest.approx(float(losses["whole"].detach()), rel=1e-5)


@pytest.mark.parametrize(
    "env, want",
    [
        ({}, distributed.World()),
        ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, distributed.World(1, 4, 1)),
        ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}, distributed.World(5, 8, 1)),
    ],
)
def test_world_from_env(env, want):
    assert distributed.world_from_env(env) == want


def test_master_address_from_the_slurm_node_list():
    assert distributed.master_address({"SLURM_JOB_NODELIST": "gpu[07-09,12],cpu3"}) == "gpu07"
    assert distributed.master_address({"SLURM_JOB_NODELIST": "node5"}) == "node5"
    assert distributed.master_address({"MASTER_ADDR": "10.0.0.1", "SLURM_JOB_NODELIST": "n1"}) == "10.0.0.1"


if __name__ == "__main__":
    launch.exit_now(_worker(json.loads(sys.argv[1])))
