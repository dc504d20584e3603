"""Training loop for the conditional score model, with checkpoints that survive preemption.

Why not ``ScoreModel.fit()`` (score_models 0.5.11, see docs/samplers.md): it never moves
a batch to the model's device (only ``t``), defaults to ``batch_size=1`` and ``shuffle=False``, has no
validation loss, counts epochs rather than optimiser steps, names checkpoints by loss and deletes the
oldest, saves the EMA weights as "the model" next to an optimiser state that belongs to the raw
weights (so a resume restarts from EMA weights with a mismatched Adam state), stores no step and no
random state, writes files non-atomically into one directory, knows no lock, no time budget and no
signals, and leaves EMA weights in memory after training. So this module keeps score_models' network,
SDE and loss (``ScoreModel.loss_fn``, i.e. ``score_models.dsm.denoising_score_matching``, unchanged:
summed over pixels, divided by the batch size) and owns the loop:

- an infinite stream of per-epoch permutations drawn from the seed; batch k always holds the same
  sightlines, so a resumed run sees the data an uninterrupted run would have seen (the dataset and this
  stream are in :mod:`massmaps.learning.training_data`);
- batches moved to the device; Adam, optional gradient clipping, EMA of the weights (torch_ema);
- validation loss with the EMA weights every ``val_every`` steps, at a fixed random state;
- a checkpoint every ``checkpoint_every`` steps in ``checkpoint_dir`` (never inside the declared
  output, which Snakemake deletes on failure), written to a temporary file and ``os.replace``d:
  raw weights, EMA, optimiser, step, torch RNG states, loss history and configuration;
- resume from that checkpoint (raw weights, not EMA); on CPU a resumed run is bit-identical to an
  uninterrupted one;
- a lock file (pid, host, job id, heartbeat) refusing a second live writer (the lock and the checkpoint
  files are in :mod:`massmaps.learning.checkpoints`);
- a time budget and SIGTERM/SIGUSR1: checkpoint, then raise :class:`TrainingInterrupted`, a
  ``SystemExit`` with code 75 (EX_TEMPFAIL), so Snakemake's ``retries`` resubmit and the next
  attempt resumes;
- the final model (EMA weights + hyper-parameters + normalisation) written to ``model_dir`` only at
  the end, atomically (``score.save_model``);
- data-parallel training when the caller started several processes and joined them in a process group
  (:mod:`massmaps.learning.distributed`, launched by :mod:`massmaps.learning.launch`): the same global
  batches, noise and steps as one process, rank 0 alone writing; one process never touches
  ``torch.distributed``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch_ema import ExponentialMovingAverage
from tqdm.auto import tqdm

from . import distributed
from . import score as score_mod
from .checkpoints import (  # noqa: F401  (attempt_time_budget: for the training script and the tests)
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    DirLock,
    atomic_torch_save,
    attempt_time_budget,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)
from .normalise import Normaliser
from .training_data import StreamSampler

EXIT_RESUMABLE = 75  # EX_TEMPFAIL: checkpoint written, run again to resume
TRAIN_LOG_FILE = "training.json"

# Laptop-sized network. The paper gives only num_res_blocks = 2; for the rest it used score_models'
# defaults (nf=128, ch_mult=(2, 2, 2, 2), attention, FIR), which PAPER_NETWORK = {} keeps.
LAPTOP_NETWORK = {"nf": 16, "ch_mult": (1, 2, 2), "attention": False, "fir": False}
PAPER_NETWORK: dict = {}
LR_SCHEDULES = ("constant", "cosine")


class TrainingInterrupted(SystemExit):
    """Training stopped early after writing a checkpoint; exits the process with code 75."""

    def __init__(self, reason: str, step: int):
        super().__init__(EXIT_RESUMABLE)
        self.reason = reason
        self.step = step

    def __str__(self) -> str:
        return f"training interrupted at step {self.step} ({self.reason}); checkpoint written, exit {self.code}"


# ------------------------------------------------------------------------------------ config
#: Keys of the config's ``training`` block that say how the job is launched, not what one process trains:
#: the workflow's train script reads them; :class:`TrainConfig` does not take them.
LAUNCH_KEYS = ("runtime_margin_s", "nodes", "processes_per_node")


def single_process_settings(training: Mapping[str, Any], **overrides: Any) -> dict:
    """The config's ``training`` block as :class:`TrainConfig` settings for one process run outside the
    workflow (benchmarks, notebooks): the launch keys dropped, no time budget, then ``overrides``."""
    out = {k: v for k, v in training.items() if k not in LAUNCH_KEYS}
    out["time_budget_s"] = None
    out.update(overrides)
    return out


@dataclass
class TrainConfig:
    """Training options. ``network`` holds NCSNpp keywords (checked in ``score.build_score_model``)."""

    # the defaults are the workflow schema's (tests/test_config.py checks), except the parametrisation
    # (edm needs sigma_data, which train_from_store measures on the data, so the dataclass keeps the one
    # that needs nothing from the data: score_models, sigma_max 1) and augment (it needs a dataset that
    # applies the transforms, such as training_data.ZarrMapsDataset)
    steps: int = 4000
    batch_size: int = 32
    lr: float = 2e-3
    # constant (the paper's), or cosine: lr (1 + cos(pi step / steps)) / 2, from lr to 0 at the last step
    lr_schedule: str = "constant"
    # torch_ema's decay at update n is min(ema_decay, (1 + n) / (10 + n)): 0.999 is reached only after 8,990
    # updates, so shorter runs average as that warm-up says (logged; ema_warmup_note). ema_gamma instead: a
    # power-function EMA (PowerEMA) that averages a fixed fraction of any run; ema_decay is then unused
    ema_decay: float = 0.999
    ema_gamma: float | None = None
    grad_clip: float = 0.0  # max gradient norm; 0 = off (norm of the pixel-summed loss)
    checkpoint_every: int = 250
    val_every: int = 250
    val_batches: int | None = None  # cap on validation batches per evaluation; None = all
    log_every: int = 50
    seed: int = 0
    device: str = "auto"
    time_budget_s: float | None = None  # wall time of this attempt; None = no limit
    num_workers: int = 0
    network: dict = field(default_factory=lambda: dict(LAPTOP_NETWORK))
    sigma_min: float = score_mod.SIGMA_MIN
    sigma_max: float = score_mod.SIGMA_MAX
    # score_models (the paper's D = x + sigma F) or edm (Karras et al.'s c_skip, c_out, c_in and loss
    # weight); sigma_data: the std of the normalised targets, needed by edm
    preconditioning: str = "score_models"
    sigma_data: float | None = None
    # the noise levels the edm loss trains on: log_uniform on [sigma_min, sigma_max], or log_normal (EDM's
    # p_train) with median sigma_train_median * sigma_data and std of ln sigma sigma_train_width
    sigma_train: str = "log_uniform"
    sigma_train_median: float = 0.6
    sigma_train_width: float = 1.2
    # weight of the coarse scales' term of the edm loss (score.multiscale_error; 0: the plain loss); the
    # validation loss is the plain one whatever the weight, so that it compares across weights
    multiscale_loss: float = 0.0
    # weight of the radial-profile term of the edm loss (score.profile_error over the annuli of TARP's
    # summary; 0: none); like the multiscale term, left out of the validation loss
    profile_loss: float = 0.0
    # after training, measure the EMA network's mean error on the training maps per noise level and radial
    # bin (score.mean_error_profile) and save it with the model, whose denoiser then subtracts it
    mean_correction: bool = False
    # the diffusion's noise (score.colour_noise): white, or pyramid with this discount per level of blocks;
    # the samplers draw the model's own (it is saved with the model)
    noise: str = "white"
    noise_discount: float = 0.8
    lock_stale_s: float = 900.0  # a lock from another host is stale after this long without heartbeat
    # random rotations by multiples of 90 degrees and flips of each (target, condition) pair: exact
    # symmetries of maps centred on the halo with an even number of pixels (8x the distinct examples)
    augment: bool = False
    # bf16: the forward pass and the loss under torch.autocast (bfloat16 matrix products and convolutions;
    # weights, gradients, Adam and EMA stay float32); compile: torch.compile the network (True: inductor,
    # or a torch.compile backend name such as "aot_eager")
    precision: str = "float32"
    compile: bool | str = False
    progress: bool = True

    def __post_init__(self):
        for name in ("steps", "batch_size", "checkpoint_every", "val_every", "log_every"):
            v = getattr(self, name)
            if not (isinstance(v, (int, np.integer)) and v > 0):
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.num_workers, (int, np.integer)) and self.num_workers >= 0):
            raise ValueError(f"TrainConfig.num_workers must be >= 0, got {self.num_workers!r}")
        if self.val_batches is not None and self.val_batches < 1:
            raise ValueError(f"TrainConfig.val_batches must be None or >= 1, got {self.val_batches!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"TrainConfig.lr must be positive, got {self.lr!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"TrainConfig.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not (0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.ema_gamma is not None and not (
            isinstance(self.ema_gamma, (int, float)) and math.isfinite(self.ema_gamma) and self.ema_gamma > 0
        ):
            raise ValueError(f"TrainConfig.ema_gamma must be null or a number > 0, got {self.ema_gamma!r}")
        if self.grad_clip < 0:
            raise ValueError(f"TrainConfig.grad_clip must be >= 0, got {self.grad_clip!r}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"TrainConfig.time_budget_s must be positive or None, got {self.time_budget_s!r}")
        score_mod.check_ncsnpp_kwargs(self.network)
        self.network = dict(self.network)
        if self.preconditioning not in score_mod.PRECONDITIONINGS:
            raise ValueError(
                f"TrainConfig.preconditioning must be one of {score_mod.PRECONDITIONINGS}, got {self.preconditioning!r}"
            )
        if self.precision not in score_mod.PRECISION_CHOICES:
            raise ValueError(
                f"TrainConfig.precision must be one of {score_mod.PRECISION_CHOICES}, got {self.precision!r}"
            )
        if not isinstance(self.compile, (bool, str)):
            raise ValueError(
                f"TrainConfig.compile must be true, false or a torch.compile backend, got {self.compile!r}"
            )
        if self.preconditioning == "edm" and not (self.sigma_data and self.sigma_data > 0):
            raise ValueError(
                f"TrainConfig.sigma_data must be > 0 with the edm preconditioning, got {self.sigma_data!r}"
            )
        if self.sigma_train not in score_mod.SIGMA_TRAIN:
            raise ValueError(
                f"TrainConfig.sigma_train must be one of {score_mod.SIGMA_TRAIN}, got {self.sigma_train!r}"
            )
        if self.sigma_train != "log_uniform" and self.preconditioning != "edm":
            raise ValueError(f"TrainConfig.sigma_train {self.sigma_train!r} needs preconditioning 'edm'")
        for name in ("sigma_train_median", "sigma_train_width"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"TrainConfig.{name} must be a positive number, got {v!r}")
        for name in ("multiscale_loss", "profile_loss"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"TrainConfig.{name} must be a number >= 0, got {v!r}")
            if v and self.preconditioning != "edm":
                raise ValueError(f"TrainConfig.{name} {v!r} needs preconditioning 'edm'")
        if not isinstance(self.mean_correction, bool):
            raise ValueError(f"TrainConfig.mean_correction must be true or false, got {self.mean_correction!r}")
        if self.noise not in score_mod.NOISES:
            raise ValueError(f"TrainConfig.noise must be one of {score_mod.NOISES}, got {self.noise!r}")
        if self.noise != "white" and self.preconditioning != "edm":
            raise ValueError(f"TrainConfig.noise {self.noise!r} needs preconditioning 'edm'")
        v = self.noise_discount
        if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 < v <= 1):
            raise ValueError(f"TrainConfig.noise_discount must be a number in (0, 1], got {v!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from a config mapping, rejecting unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise ValueError(f"unknown TrainConfig key(s) {bad}; valid: {sorted(names)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return score_mod.to_jsonable(dataclasses.asdict(self))


class PowerEMA(ExponentialMovingAverage):
    """The power-function EMA of Karras et al. (2024, "Analyzing and improving the training dynamics of
    diffusion models", section 3.1): at update t the decay is (1 - 1/t)^(gamma + 1), so the average weighs
    the weights after update s about as s^gamma, the same fraction of any run, however long. Its relative width
    is sigma_rel = sqrt(gamma + 1) / ((gamma + 2) sqrt(gamma + 3)): 0.09 at gamma 8 (about what torch_ema's
    warm-up (1 + t) / (10 + t) gives), 0.16 at 3. State dicts are torch_ema's."""

    def __init__(self, parameters, gamma: float):
        super().__init__(parameters, decay=0.0, use_num_updates=True)
        self.gamma = float(gamma)

    def update(self, parameters=None) -> None:
        parameters = self._get_parameters(parameters)
        self.num_updates += 1
        one_minus_decay = 1.0 - (1.0 - 1.0 / self.num_updates) ** (self.gamma + 1.0)
        with torch.no_grad():
            for s_param, param in zip(self.shadow_params, parameters):
                s_param.sub_((s_param - param).mul_(one_minus_decay))


def ema_warmup_note(config: TrainConfig) -> str | None:
    """What torch_ema's warm-up does to ``ema_decay`` in a run of ``config.steps`` updates, when it never
    lets the decay reach ``ema_decay`` (None otherwise, or with a power-function EMA)."""
    d = config.ema_decay
    if config.ema_gamma is not None or d <= 0:
        return None
    reached = math.ceil((10 * d - 1) / (1 - d))  # (1 + n) / (10 + n) >= d
    if reached <= config.steps:
        return None
    final = (1 + config.steps) / (10 + config.steps)
    return (
        f"EMA: torch_ema's decay is min(ema_decay, (1 + n) / (10 + n)) at update n; ema_decay {d} is reached "
        f"after {reached} updates, beyond this run's {config.steps}, so it has no effect (final decay {final:.5f})"
    )


def _make_ema(parameters, config: TrainConfig) -> ExponentialMovingAverage:
    if config.ema_gamma is not None:
        return PowerEMA(parameters, config.ema_gamma)
    return ExponentialMovingAverage(parameters, decay=config.ema_decay)


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) under ``config.lr_schedule``."""
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * step / config.steps))
    return config.lr


@dataclass
class TrainResult:
    model_dir: Path
    step: int
    resumed_from: int | None
    train_loss: float | None  # mean DSM loss over the last logging interval
    val_loss: float | None  # last validation loss (EMA weights)
    history: dict
    wall_s: float  # this attempt
    images_per_s: float  # this attempt


# ------------------------------------------------------------------------------------- training
def _denoiser(model, config: TrainConfig, extra_terms: bool = True) -> score_mod.Denoiser:
    """The denoiser the loss is taken with; without ``extra_terms`` (the validation loss) the plain loss,
    whatever the multiscale and profile weights."""
    sigma_train = (config.sigma_train, config.sigma_train_median, config.sigma_train_width)
    weight, profile = (config.multiscale_loss, config.profile_loss) if extra_terms else (0.0, 0.0)
    noise = (config.noise, config.noise_discount)
    return score_mod.Denoiser(
        model, config.preconditioning, config.sigma_data, sigma_train, weight, noise, profile=profile
    )


def _autocast(config: TrainConfig, device):
    """The forward pass's precision: nothing changed for float32, bfloat16 autocast for bf16 (``auto``: bf16
    where the device computes it natively, :func:`score.resolve_precision`)."""
    return score_mod.autocast(score_mod.resolve_precision(config.precision, device), device)


def _network(module, config: TrainConfig):
    """The network the loss calls: ``module`` itself, or compiled (``config.compile``)."""
    return score_mod.compiled(module, config.compile)


#: The random state of the validation loss's noise levels and noise: one for every training seed, so that
#: the losses of two seeds compare. Each map gets one noise level, so the loss of a few dozen maps moves
#: with the draw far more than between models (laptop default: 283 to 414 over eight draws, while four
#: models kept their order and differed by 3% on every draw). 1 is the draw of the default seed, 0, from
#: before the state stopped following the seed.
VALIDATION_SEED = 1


@torch.no_grad()
def _validation_loss(model, ema, loader, config: TrainConfig, device) -> float | None:
    """Mean training loss (without the multiscale or profile term) of the EMA weights over the validation set, at a
    fixed random state (:data:`VALIDATION_SEED`, whatever ``config.seed``)."""
    denoiser = _denoiser(model, config, extra_terms=False)
    if loader is None:
        return None
    devices = [device] if device.type == "cuda" else []
    total, n = 0.0, 0
    model.model.eval()
    with ema.average_parameters(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(VALIDATION_SEED)
        for k, (x, cond) in enumerate(loader):
            if config.val_batches is not None and k >= config.val_batches:
                break
            x, cond = x.to(device), cond.to(device)
            with _autocast(config, device):
                total += float(score_mod.training_loss(denoiser, x, cond)) * x.shape[0]
            n += x.shape[0]
    model.model.train()
    return total / n if n else None


def train(
    model_dir: str | os.PathLike,
    train_dataset: Dataset,
    val_dataset: Dataset | None,
    *,
    config: TrainConfig,
    checkpoint_dir: str | os.PathLike,
    normaliser: Normaliser | Mapping | None = None,
    log: Callable[[str], Any] = print,
    budget_start: float | None = None,
) -> TrainResult:
    """Train (or resume training of) the conditional score model; write it to ``model_dir``.

    Items of the datasets are ``(x_target, cond)`` float32 tensors, normalised. ``normaliser``
    (default: ``train_dataset.normaliser`` if present) is stored with the model. Raises
    :class:`TrainingInterrupted` (exit code 75) after checkpointing when the time budget runs out
    or on SIGTERM/SIGUSR1, and :class:`~massmaps.learning.checkpoints.LockHeldError` if another live process trains into
    ``checkpoint_dir``. ``config.time_budget_s`` counts from ``budget_start`` (a ``time.monotonic()``
    reading, e.g. taken when the process started; default: now).
    """
    t_start = time.monotonic() if budget_start is None else float(budget_start)
    model_dir, checkpoint_dir = Path(model_dir), Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    world = distributed.current()
    device = distributed.rank_device(score_mod.resolve_device(config.device), world)
    if normaliser is None:
        normaliser = getattr(train_dataset, "normaliser", None)

    lock = DirLock(checkpoint_dir, config.lock_stale_s, log) if world.main else _NoLock()
    distributed.main_only(lock.acquire, world)
    stop = {"reason": None}
    old_handlers = {}

    def _on_signal(signum, frame):
        stop["reason"] = signal.Signals(signum).name

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            old_handlers[sig] = signal.signal(sig, _on_signal)
    try:
        return _train_locked(
            model_dir,
            train_dataset,
            val_dataset,
            config,
            checkpoint_dir,
            normaliser,
            log,
            device,
            lock,
            stop,
            t_start,
            world,
        )
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        lock.release()


_ONE_PROCESS = distributed.World()


class _NoLock:
    """The lock of a rank other than 0, which never writes into the checkpoint directory."""

    def acquire(self) -> None:
        pass

    verify = heartbeat = release = acquire


@dataclass
class _Run:
    """What one training attempt carries from step to step (and into its checkpoints)."""

    model: Any  # score_models ScoreModel
    optimizer: torch.optim.Optimizer
    ema: ExponentialMovingAverage
    hparams: dict
    pixels: int  # values per target map (channels x pixels), for the per-pixel loss in the log
    step: int = 0
    resumed_from: int | None = None
    history: dict = field(default_factory=lambda: {"loss": [], "val": []})


def _build(config: TrainConfig, train_dataset, device) -> _Run:
    """Network, optimiser and EMA from the seed, checked against the dataset's map size and channels."""
    torch.manual_seed(config.seed)
    model = score_mod.build_score_model(
        config.network, sigma_min=config.sigma_min, sigma_max=config.sigma_max, device=device
    )
    x0, c0 = train_dataset[0]
    mult = score_mod.image_multiple(model)
    if x0.shape[-1] % mult or x0.shape[-2] % mult:
        raise ValueError(f"map size {tuple(x0.shape[-2:])} is not a multiple of {mult} (ch_mult levels)")
    if x0.shape[0] != model.model.channels or c0.shape[0] != model.model.condition_input_channels:
        raise ValueError(
            f"dataset gives {x0.shape[0]} target / {c0.shape[0]} input channels, the network expects "
            f"{model.model.channels} / {model.model.condition_input_channels}"
        )
    return _Run(
        model=model,
        optimizer=torch.optim.Adam(model.model.parameters(), lr=config.lr),
        ema=_make_ema(model.model.parameters(), config),
        hparams=score_mod.to_jsonable(model.hyperparameters),
        pixels=int(np.prod(x0.shape)),
    )


def _resume(run: _Run, config: TrainConfig, checkpoint_dir: Path, log) -> dict | None:
    """Load the latest usable checkpoint into ``run``; return its random states (None: a fresh start)."""
    ckpt = load_checkpoint(checkpoint_dir, log)
    if ckpt is None:
        return None
    if ckpt["hparams"] != run.hparams:
        raise ValueError(
            f"{checkpoint_dir / CHECKPOINT_FILE} was written for another model "
            f"({ckpt['hparams']} != {run.hparams}); delete it to start afresh"
        )
    for key in ("batch_size", "seed"):
        if ckpt["config"][key] != getattr(config, key):
            log(f"warning: {key} changed from {ckpt['config'][key]} to {getattr(config, key)} since the checkpoint")
    run.model.model.load_state_dict(ckpt["model"])  # raw weights, not EMA
    run.ema.load_state_dict(ckpt["ema"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    for group in run.optimizer.param_groups:  # a changed lr in the config applies from here on
        group["lr"] = config.lr
    run.step = run.resumed_from = int(ckpt["step"])
    run.history = ckpt["history"]
    log(f"resuming from {checkpoint_dir / CHECKPOINT_FILE} at step {run.step}")
    return ckpt["rng"]


def _loaders(train_dataset, val_dataset, config: TrainConfig, device, step: int, world=_ONE_PROCESS):
    """The training batch stream, starting where step ``step`` left it (this rank's part of each global
    batch), and the validation loader."""
    pin = device.type == "cuda"
    loader_gen = torch.Generator().manual_seed(config.seed)  # keeps worker seeding off the global RNG
    sampler = StreamSampler(len(train_dataset), config.seed, start=step * config.batch_size, augment=config.augment)
    if world.size > 1:
        sampler = distributed.ShardSampler(sampler, config.batch_size, world)
    train_loader = DataLoader(
        train_dataset,
        batch_size=config.batch_size // world.size,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=pin,
        persistent_workers=config.num_workers > 0,
        generator=loader_gen,
    )
    val_loader = None
    if val_dataset is not None and len(val_dataset) > 0:
        val_loader = DataLoader(
            val_dataset,
            batch_size=config.batch_size,
            shuffle=False,
            num_workers=config.num_workers,
            pin_memory=pin,
            persistent_workers=config.num_workers > 0,
        )
    return iter(train_loader), val_loader


def _seed_rng(rng_state: dict | None, config: TrainConfig, device) -> None:
    """The DSM loss draws t and z from torch's global RNG: the checkpoint's state, or the seed."""
    if rng_state is not None:
        restore_rng_state(rng_state, device)
    else:
        torch.manual_seed(config.seed)
        if device.type == "cuda":
            torch.cuda.manual_seed(config.seed)


def _save_checkpoint(run: _Run, config: TrainConfig, checkpoint_dir: Path, lock, device) -> float:
    """Everything needed to resume at ``run.step`` (the previous checkpoint kept); returns its seconds."""
    lock.verify()
    t0 = time.monotonic()
    atomic_torch_save(
        {
            "format": CHECKPOINT_FORMAT,
            "step": run.step,
            "model": run.model.model.state_dict(),
            "ema": run.ema.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "rng": capture_rng_state(device),
            "config": config.to_dict(),
            "hparams": run.hparams,
            "history": run.history,
        },
        checkpoint_dir / CHECKPOINT_FILE,
        keep_previous=True,
    )
    os.utime(lock.path)
    return time.monotonic() - t0


def _optimisation_step(run: _Run, denoiser, batch, config: TrainConfig, device, world=_ONE_PROCESS) -> float:
    """One step of the optimiser and the EMA on ``batch`` (this rank's part of the global batch); returns
    the loss (of the global batch)."""
    pin = device.type == "cuda"
    x, cond = (t.to(device, non_blocking=pin) for t in batch)
    run.optimizer.zero_grad(set_to_none=True)
    for group in run.optimizer.param_groups:  # from the step alone, so a resumed run continues the schedule
        group["lr"] = learning_rate(config, run.step)
    # score_models' own DSM loss calls the raw network: several ranks or a compiled network take the loss
    # of the same draws that calls denoiser.net (shard (0, B) is the same loss, bit for bit)
    shard = None if world.size == 1 and not config.compile else (world.rank * x.shape[0], config.batch_size)
    with _autocast(config, device):
        loss = score_mod.training_loss(denoiser, x, cond, shard)  # score_models' DSM loss unchanged, or EDM's
    if shard is not None:  # every rank takes part in the gradient all-reduce before any may stop
        loss.backward()
        loss = distributed.average(loss.detach(), world)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {float(loss)} at step {run.step}; last checkpoint kept")
    if shard is None:
        loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.model.parameters(), max_norm=config.grad_clip)
    run.optimizer.step()
    run.ema.update()
    run.step += 1
    return loss.item()


def _stop_reason(stop: dict, config: TrainConfig, step: int, t_start: float, step_time: float, ckpt_time: float):
    """Why this attempt must stop now (a signal, or too little budget left for one more step and a
    checkpoint), or None."""
    reason = stop["reason"]
    if reason is None and config.time_budget_s is not None and step < config.steps:
        elapsed = time.monotonic() - t_start
        if elapsed + 2 * step_time + 2 * ckpt_time + 1.0 > config.time_budget_s:
            reason = f"time budget of {config.time_budget_s:.0f} s"
    return reason


def numerics(device: torch.device) -> dict:
    """What sets the low bits of a training on this machine: the same config and seed give the same weights
    only with the same torch, device, CPU instruction set and thread count. bfloat16 matrix products in
    particular differ between a CPU with AMX, one with AVX-512 only and one with AVX2 (benchmarks/numerics.py
    and its section in benchmarks/README.md)."""
    out = {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
        return out
    out["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    try:  # Linux: the model name and the bfloat16 instruction sets oneDNN dispatches on
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return out
    model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), None)
    flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    out["cpu"] = model
    out["cpu_bf16"] = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return out


#: The mean correction (``TrainConfig.mean_correction``): noise levels per decade of sigma, noise draws per
#: map, and the most training maps it is measured on (a seeded subset of a larger training set).
CORRECTION_PER_DECADE = 5
CORRECTION_DRAWS = 2
CORRECTION_MAPS = 1024


def _correction_threads(device: torch.device, world) -> int | None:
    """The CPU threads rank 0 measures the correction with while the other ranks wait: theirs too (capped at
    the CPUs it may run on), so that a local multi-rank run measures it as one process with all the job's
    threads does, to the byte. None: leave the count as it is (one process, or a GPU)."""
    if device.type != "cpu" or world.size == 1:
        return None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(torch.get_num_threads() * world.size, usable))


def _mean_correction(run: _Run, config: TrainConfig, train_dataset, log, threads: int | None = None) -> dict:
    """The network's (with its current weights: the EMA's) mean error on the training maps, per noise level,
    field and radial bin (score.mean_error_profile), as the model's metadata stores it."""
    n = len(train_dataset)
    pick = np.arange(n)
    if n > CORRECTION_MAPS:
        pick = np.sort(np.random.default_rng([config.seed, 1]).choice(n, CORRECTION_MAPS, replace=False))
    items = [train_dataset[int(i)] for i in pick]
    x0, cond = torch.stack([a for a, _ in items]), torch.stack([c for _, c in items])
    denoiser = _denoiser(run.model, config, extra_terms=False)
    sigmas = score_mod.correction_levels(config.sigma_min, config.sigma_max, CORRECTION_PER_DECADE)
    t0 = time.monotonic()
    was_training, before = run.model.model.training, torch.get_num_threads()
    run.model.model.eval()
    if threads:
        torch.set_num_threads(threads)
    try:
        error = score_mod.mean_error_profile(
            denoiser, x0, cond, sigmas, draws=CORRECTION_DRAWS, seed=config.seed, progress=config.progress
        )
    finally:
        run.model.model.train(was_training)
        torch.set_num_threads(before)
    worst = np.abs(error).max(axis=(1, 2))
    log(
        f"mean correction: the network's mean error on {len(pick)} training maps at {len(sigmas)} noise levels, "
        f"largest {worst.max():.3g} (normalised units) at sigma {sigmas[int(worst.argmax())]:.3g}, "
        f"in {time.monotonic() - t0:.0f} s"
    )
    return {
        "sigmas": sigmas.tolist(),
        "error": error.tolist(),
        "split": "train",
        "maps": int(len(pick)),
        "draws": CORRECTION_DRAWS,
        "seed": config.seed,
    }


def _write_model(
    run: _Run,
    config: TrainConfig,
    model_dir: Path,
    checkpoint_dir: Path,
    normaliser,
    lock,
    val_loss,
    images_per_s: float,
    device: torch.device,
    train_dataset=None,
    log=print,
    world=_ONE_PROCESS,
) -> dict:
    """The final model (EMA weights, and with ``config.mean_correction`` their mean error on the training
    maps), written only now, and the training log; returns the summary."""
    lock.verify()
    with run.ema.average_parameters():
        ema_weights = {k: v.detach().clone() for k, v in run.model.model.state_dict().items()}
        correction = None
        if config.mean_correction:
            correction = _mean_correction(run, config, train_dataset, log, _correction_threads(device, world))
    if correction is not None:
        lock.verify()  # still ours after the minutes the correction took
        lock.heartbeat()
    summary = {
        "training": {
            "steps": run.step,
            "resumed_from": run.resumed_from,
            "train_loss": run.history["loss"][-1][1] if run.history["loss"] else None,
            "val_loss": val_loss,
            "weights": "ema",
            "config": config.to_dict(),
            "images_per_s_last_attempt": images_per_s,
            "numerics_last_attempt": {
                **numerics(device),
                "precision": score_mod.resolve_precision(config.precision, device),
            },
        },
        "preconditioning": {
            "kind": config.preconditioning,
            "sigma_data": config.sigma_data,
            **({"noise": [config.noise, config.noise_discount]} if config.noise != "white" else {}),
        },
        **({"mean_correction": correction} if correction is not None else {}),
    }
    score_mod.save_model(model_dir, run.model, normaliser=normaliser, state_dict=ema_weights, metadata=summary)
    (checkpoint_dir / TRAIN_LOG_FILE).write_text(json.dumps({**summary, "history": run.history}, indent=2))
    return summary


def _train_locked(
    model_dir, train_dataset, val_dataset, config, checkpoint_dir, normaliser, log, device, lock, stop, t_start, world
) -> TrainResult:
    """The training loop, in named steps: build, resume, data, then optimise, log, validate, checkpoint
    and check for a stop at each step; the EMA model is written at the end. With several ranks, rank 0
    resumes first (it sets a damaged checkpoint aside), and it alone validates and writes."""
    run = _build(config, train_dataset, device)
    for note in (ema_warmup_note(config), score_mod.precision_note(config.precision, device)):
        if note and world.main:
            log(note)
    rng_state = distributed.main_only(lambda: _resume(run, config, checkpoint_dir, log), world)
    if not world.main:
        rng_state = _resume(run, config, checkpoint_dir, lambda *a: None)
    distributed.check_identical([torch.tensor(float(run.step))], "resumed steps", world)
    run.ema.to(device)
    batches, val_loader = _loaders(train_dataset, val_dataset, config, device, run.step, world)
    _seed_rng(rng_state, config, device)  # after the loader's iterator: it must not draw from this stream

    denoiser = _denoiser(run.model, config)
    denoiser.net = _network(distributed.wrap(run.model.model, device, world), config)
    run.model.model.train()
    t_loop = time.monotonic()
    steps_this_run, ckpt_time, step_time = 0, 0.0, 0.0
    running, running_n = 0.0, 0
    history = run.history
    val_loss = history["val"][-1][1] if history["val"] else None
    pbar = tqdm(
        total=config.steps,
        initial=run.step,
        disable=not config.progress,
        desc="train",
        smoothing=0.1,
        mininterval=0.1 if sys.stderr.isatty() else 30.0,
    )  # few lines in a log file
    while run.step < config.steps:
        t_step = time.monotonic()
        running += _optimisation_step(run, denoiser, next(batches), config, device, world)
        running_n += 1
        steps_this_run += 1
        step = run.step
        pbar.update(1)
        step_time = (
            0.9 * step_time + 0.1 * (time.monotonic() - t_step) if steps_this_run > 1 else time.monotonic() - t_step
        )

        if step % config.log_every == 0 or step == config.steps:
            history["loss"].append([step, running / running_n])
            pbar.set_postfix(loss=f"{running / running_n:.4g}")
            log(f"step {step}: loss {running / running_n:.5g} (per pixel {running / running_n / run.pixels:.4g})")
            running, running_n = 0.0, 0
        if step % config.val_every == 0 or step == config.steps:
            val_loss = distributed.main_only(
                lambda: _validation_loss(run.model, run.ema, val_loader, config, device), world
            )
            if val_loss is not None:
                history["val"].append([step, val_loss])
                log(f"step {step}: validation loss (EMA) {val_loss:.5g}")
        if (step % config.checkpoint_every == 0 or step == config.steps) and world.main:
            ckpt_time = _save_checkpoint(run, config, checkpoint_dir, lock, device)
        lock.heartbeat()

        reason = _stop_reason(stop, config, step, t_start, step_time, ckpt_time)
        if distributed.any_rank(reason is not None, world) and reason is None:
            reason = "stopped by another rank"
        if reason is not None and step < config.steps:
            # rank 0 checkpoints and releases the lock before any rank exits (a launcher may end the rest then)
            distributed.main_only(
                lambda: (_save_checkpoint(run, config, checkpoint_dir, lock, device), lock.release()), world
            )
            pbar.close()
            log(f"stopping at step {step}: {reason}; checkpoint in {checkpoint_dir}")
            raise TrainingInterrupted(reason, step)
    pbar.close()
    wall = time.monotonic() - t_loop
    images_per_s = steps_this_run * config.batch_size / wall if steps_this_run else 0.0

    distributed.check_identical(run.ema.shadow_params, "EMA weights", world)
    written = lambda: _write_model(
        run,
        config,
        model_dir,
        checkpoint_dir,
        normaliser,
        lock,
        val_loss,
        images_per_s,
        device,
        train_dataset,
        log,
        world,
    )
    summary = distributed.main_only(lambda: (written(), lock.release())[0], world)  # before any rank exits
    log(f"wrote {model_dir} after {run.step} steps ({images_per_s:.1f} images/s this attempt)")
    return TrainResult(
        model_dir=model_dir,
        step=run.step,
        resumed_from=run.resumed_from,
        train_loss=summary["training"]["train_loss"],
        val_loss=val_loss,
        history=history,
        wall_s=time.monotonic() - t_start,
        images_per_s=images_per_s,
    )
