"""Training checkpoints and the lock on their directory.

* checkpoints: written to a temporary file and renamed (the previous one kept as a fallback), verified
  (CRC of every record, expected content) when loaded; a damaged one is set aside and the previous used;
* :class:`DirLock`: a lock file (pid, host, job id, heartbeat) refusing a second live writer;
* :func:`attempt_time_budget`: how long one training attempt may run before it checkpoints and exits.

What a checkpoint holds and when it is written is :mod:`massmaps.learning.training`'s business.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "DirLock",
    "LOCK_FILE",
    "LockHeldError",
    "PREVIOUS_CHECKPOINT_FILE",
    "atomic_torch_save",
    "attempt_time_budget",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
]

CHECKPOINT_FILE = "checkpoint.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"  # the one before, kept as a fallback
LOCK_FILE = "lock.json"
CHECKPOINT_FORMAT = 1


class LockHeldError(RuntimeError):
    """Another live process holds the checkpoint directory."""


# --------------------------------------------------------------------------------------- lock
class DirLock:
    """Lock file in the checkpoint directory: {token, pid, host, job_id}, mtime = heartbeat."""

    def __init__(self, directory: Path, stale_after_s: float, log: Callable):
        self.path = directory / LOCK_FILE
        self.stale_after_s = stale_after_s
        self.log = log
        self.token = uuid.uuid4().hex
        self.info = {
            "token": self.token,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "job_id": os.environ.get("SLURM_JOB_ID"),  # informational only
            "started": time.time(),
        }
        self._last_beat = 0.0

    def _is_stale(self, holder: dict, age_s: float) -> bool:
        if holder.get("host") == socket.gethostname():
            pid = holder.get("pid")
            if pid == os.getpid():
                return True  # an earlier, finished train() call in this process
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return True
            except (PermissionError, TypeError, ValueError):
                return False
            return False
        return age_s > self.stale_after_s

    def acquire(self) -> None:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(self.path.read_text())
                    age = time.time() - self.path.stat().st_mtime
                except (OSError, ValueError):
                    holder, age = {}, float("inf")  # unreadable or vanished: treat as stale
                if not self._is_stale(holder, age):
                    raise LockHeldError(
                        f"{self.path} is held by pid {holder.get('pid')} on {holder.get('host')} "
                        f"(job {holder.get('job_id')}, heartbeat {age:.0f} s ago); refusing to train "
                        "into the same checkpoint directory"
                    ) from None
                self.log(f"removing stale lock {holder}")
                try:  # rename first: only one of several contenders wins the stale lock
                    os.replace(self.path, self.path.with_name(f".{LOCK_FILE}.stale-{self.token}"))
                    os.remove(self.path.with_name(f".{LOCK_FILE}.stale-{self.token}"))
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.info, f)
            self._last_beat = time.time()
            return
        raise LockHeldError(f"could not take {self.path}")

    def verify(self) -> None:
        """Raise if the lock is no longer ours (someone judged it stale and took it)."""
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            holder = {}
        if holder.get("token") != self.token:
            raise LockHeldError(f"lost {self.path} to {holder}; not writing checkpoints")

    def heartbeat(self, every_s: float = 30.0) -> None:
        now = time.time()
        if now - self._last_beat >= every_s:
            os.utime(self.path)
            self._last_beat = now

    def release(self) -> None:
        try:
            if json.loads(self.path.read_text()).get("token") == self.token:
                os.remove(self.path)
        except (OSError, ValueError):
            pass


# -------------------------------------------------------------------------------- checkpoints
def atomic_torch_save(obj, path: Path, keep_previous: bool = False) -> None:
    """``torch.save`` under a temporary name, then a rename onto ``path``; with ``keep_previous`` the file
    it replaces becomes :data:`PREVIOUS_CHECKPOINT_FILE` (the fallback of :func:`load_checkpoint`)."""
    from ..files import atomic_path

    with atomic_path(path, fsync=True, keep_previous=PREVIOUS_CHECKPOINT_FILE if keep_previous else None) as tmp:
        torch.save(obj, tmp)


def capture_rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class CheckpointError(ValueError):
    """No usable checkpoint where one was written; the message names the files and why each failed."""


def _read_checkpoint(path: Path) -> dict:
    """Load a checkpoint after checking every record's CRC (torch.load alone reads a flipped byte as data)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise ValueError(f"record {bad} fails its CRC check")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, RuntimeError, OSError, EOFError) as err:
        raise ValueError(f"unreadable ({type(err).__name__}: {str(err)[:200]})") from err
    missing = {"format", "step", "model", "ema", "optimizer", "rng", "config", "hparams", "history"} - set(ckpt)
    if missing:
        raise ValueError(f"not a training checkpoint (missing {sorted(missing)})")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise ValueError(f"unknown checkpoint format {ckpt['format']!r}")
    return ckpt


def load_checkpoint(checkpoint_dir: str | os.PathLike, log: Callable = print) -> dict | None:
    """The latest usable training checkpoint in ``checkpoint_dir`` (loaded on the CPU), or None if none was written.

    The checkpoint is verified (CRC of every record, expected content); a damaged one is renamed to
    ``<name>.damaged`` with a warning naming it, and the previous checkpoint is used instead. When no
    checkpoint is usable, :class:`CheckpointError` names each file and what is wrong with it.
    """
    folder = Path(checkpoint_dir)
    problems = []
    for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE):
        path = folder / name
        if not path.is_file():
            continue
        try:
            ckpt = _read_checkpoint(path)
        except ValueError as err:
            problems.append(f"{path}: {err}")
            damaged = path.with_name(f"{name}.damaged")
            os.replace(path, damaged)
            log(f"warning: {path} is damaged ({err}); kept as {damaged.name}, trying the previous checkpoint")
            continue
        if problems:
            log(f"resuming from the previous checkpoint {path} (step {ckpt['step']})")
        return ckpt
    if problems:
        raise CheckpointError(
            "no usable training checkpoint: " + "; ".join(problems) + f"; delete {folder} to train from the start"
        )
    return None


def attempt_time_budget(
    time_budget_s: float | None,
    runtime_min: float | None,
    margin_s: float | None,
    *,
    under_scheduler: bool,
) -> float | None:
    """Wall time in seconds that one training attempt may use, or None for no limit.

    An explicit ``time_budget_s`` always wins. Otherwise, inside a batch job (``under_scheduler``:
    the caller saw e.g. ``SLURM_JOB_ID``) whose time limit is ``runtime_min`` minutes, the budget is
    that limit less ``margin_s`` seconds for what the attempt does outside the training loop (the
    scheduler's and the workflow manager's start-up, the final model write, the job's epilogue); the
    attempt then checkpoints and exits with :data:`EXIT_RESUMABLE` before the scheduler kills it, and a
    resubmitted job resumes. Outside a batch job the runtime is only a scheduling hint that nobody
    enforces, so there is no budget; ``margin_s=None`` turns the derived budget off.
    """
    if time_budget_s is not None:
        if not time_budget_s > 0:
            raise ValueError(f"time_budget_s must be positive or None, got {time_budget_s!r}")
        return float(time_budget_s)
    if not under_scheduler or runtime_min is None or margin_s is None:
        return None
    if margin_s < 0:
        raise ValueError(f"the runtime margin must be >= 0 s, got {margin_s!r}")
    budget = float(runtime_min) * 60.0 - float(margin_s)
    if budget <= 0:
        raise ValueError(
            f"a runtime of {runtime_min} min leaves no training time after a margin of {margin_s} s: "
            "raise the rule's runtime or lower training.runtime_margin_s"
        )
    return budget
