"""Data-parallel training across processes (``torch.distributed``): which rank this process is, what the
ranks agree on each step, and which part of each global batch a rank trains on.

A run with one process never touches ``torch.distributed``: :func:`current` is then ``World(0, 1, 0)``
and every helper here returns at once. Several processes are started by a launcher (torchrun, srun, or
:mod:`massmaps.learning.launch`), each calls :func:`init_from_env` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
as torchrun sets them, else ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID`` as srun sets them, with
``MASTER_ADDR``/``MASTER_PORT``), and :func:`massmaps.learning.training.train` then:

- gives rank r the items ``r*b .. (r+1)*b - 1`` of each global batch of ``B = batch_size`` items
  (``b = B / world_size``, :class:`ShardSampler`), so the ranks together see the batches one process
  would see, rotations and flips included (they are drawn per item by the stream);
- draws the loss noise for the whole global batch on every rank from the same seeded stream and uses
  the rank's rows (``score.training_loss(..., shard=...)``), so the noise of each item is the one a
  single process would draw;
- averages the gradients (DistributedDataParallel), so weights, Adam state and EMA stay identical on
  every rank; rank 0 alone validates, checkpoints and writes the model;
- all-reduces a stop flag each step, so that a time budget or a signal on any rank stops every rank at
  the same step, after rank 0's checkpoint.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = [
    "ShardSampler",
    "World",
    "any_rank",
    "average",
    "barrier",
    "broadcast_object",
    "check_identical",
    "current",
    "init_from_env",
    "main_only",
    "rank_device",
    "shutdown",
    "world_from_env",
    "wrap",
]


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """The rank, world size and local rank that torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) or
    srun (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``) gave this process; ``World()`` if neither."""
    env = os.environ if env is None else env
    for names in (("RANK", "WORLD_SIZE", "LOCAL_RANK"), ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")):
        if names[0] in env and names[1] in env:
            try:
                rank, size, local = (int(env.get(name, "0")) for name in names)
            except ValueError as err:
                raise ValueError(f"environment variables {names} must be integers: {err}") from None
            if not (0 <= rank < size and 0 <= local <= rank):
                raise ValueError(f"inconsistent {names}: {rank}, {size}, {local}")
            return World(rank, size, local)
    return World()


def _first_host(nodelist: str) -> str:
    """The first host of a Slurm node list such as ``gpu[07-09,12],cpu3`` (``gpu07``)."""
    first = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if first is None:
        raise ValueError(f"cannot read the Slurm node list {nodelist!r}")
    prefix, ranges = first.groups()
    return prefix + ranges.split(",")[0].split("-")[0] if ranges else prefix


def master_address(env: Mapping[str, str] | None = None) -> str:
    """``MASTER_ADDR``, else the first host of the Slurm job (srun starts rank 0 there), else this host."""
    env = os.environ if env is None else env
    if env.get("MASTER_ADDR"):
        return env["MASTER_ADDR"]
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    return _first_host(nodelist) if nodelist else socket.gethostname()


def init_from_env(backend: str | None = None, timeout_s: float = 1800.0) -> World:
    """Join the process group that the launcher's environment describes (a no-op for one process).

    ``backend``: gloo (CPU) or nccl (CUDA); default nccl when CUDA is available, else gloo. The port is
    ``MASTER_PORT`` (required with more than one process; :mod:`massmaps.learning.launch` sets it).
    """
    world = world_from_env()
    if world.size == 1 or dist.is_initialized():
        return world
    if not os.environ.get("MASTER_PORT"):
        raise ValueError(f"rank {world.rank} of {world.size}: MASTER_PORT is not set (the port rank 0 listens on)")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(
        backend,
        init_method=f"tcp://{master_address()}:{os.environ['MASTER_PORT']}",
        rank=world.rank,
        world_size=world.size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return world


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def current() -> World:
    """The world of the initialised process group, or ``World()`` (one process) when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    local = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")))
    return World(dist.get_rank(), dist.get_world_size(), local)


def rank_device(device: torch.device, world: World) -> torch.device:
    """The device of this rank: its own GPU (``cuda:LOCAL_RANK``) when training on CUDA."""
    if device.type != "cuda" or world.size == 1:
        return device
    if world.local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"rank {world.rank} has local rank {world.local_rank} but this node has {torch.cuda.device_count()} "
            "GPUs: start at most one process per GPU (training.processes_per_node)"
        )
    torch.cuda.set_device(world.local_rank)
    return torch.device("cuda", world.local_rank)


def wrap(module: torch.nn.Module, device: torch.device, world: World) -> torch.nn.Module:
    """``module`` inside DistributedDataParallel (gradients averaged over the ranks), or itself alone."""
    if world.size == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, output_device=device.index if ids else None)


# ------------------------------------------------------------------------------------ collectives
def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def average(value: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of a scalar over the ranks (itself for one process)."""
    if world.size == 1:
        return value
    total = value.detach().reshape(1).to(_device(), torch.float64)
    dist.all_reduce(total)
    return (total / world.size).reshape(())


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank when ``flag`` is true on any rank."""
    if world.size == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if world.size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def main_only(fn: Callable[[], Any], world: World) -> Any:
    """``fn()`` on rank 0 only, its result on every rank; when it raises there, every rank raises (the
    other ranks a RuntimeError naming rank 0's error) instead of waiting for rank 0 forever."""
    if world.size == 1:
        return fn()
    result, error = None, None
    if world.main:
        try:
            result = fn()
        except Exception as err:
            error = err
    result, message = broadcast_object((result, None if error is None else f"{type(error).__name__}: {error}"), world)
    if error is not None:
        raise error
    if message is not None:
        raise RuntimeError(f"rank 0 failed: {message}")
    return result


def check_identical(tensors: Iterator[torch.Tensor] | list[torch.Tensor], what: str, world: World) -> None:
    """Raise unless ``tensors`` hold the same values on every rank (compared by a float64 checksum)."""
    if world.size == 1:
        return
    sums = torch.stack([torch.stack([t.double().sum(), t.double().abs().sum()]) for t in tensors]).sum(0)
    lo, hi = sums.to(_device()).clone(), sums.to(_device()).clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise RuntimeError(f"the {what} differ between ranks (checksums from {lo.tolist()} to {hi.tolist()})")


# ---------------------------------------------------------------------------------------- data
class ShardSampler(Sampler):
    """This rank's part of each global batch of ``stream`` (an infinite sampler such as
    :class:`~massmaps.learning.training_data.StreamSampler`): of every ``global_batch`` consecutive items,
    those at positions ``rank * b .. (rank + 1) * b - 1`` with ``b = global_batch / world_size``."""

    def __init__(self, stream: Sampler, global_batch: int, world: World):
        if global_batch % world.size:
            raise ValueError(
                f"training.batch_size {global_batch} is not divisible by the {world.size} training processes "
                "(training.nodes x training.processes_per_node): every rank takes an equal part of each batch"
            )
        self.stream, self.global_batch, self.world = stream, global_batch, world
        self.local_batch = global_batch // world.size

    def __iter__(self):
        lo = self.world.rank * self.local_batch
        hi = lo + self.local_batch
        batch = []
        for item in self.stream:
            batch.append(item)
            if len(batch) == self.global_batch:
                yield from batch[lo:hi]
                batch = []
