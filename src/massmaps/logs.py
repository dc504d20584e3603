"""Logging set-up for command-line and workflow entry points."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import warnings


def _log_uncaught(exc_type, exc, tb) -> None:
    """Write an uncaught exception with its traceback to the log, then to stderr as Python would."""
    if not issubclass(exc_type, KeyboardInterrupt):
        logging.getLogger("massmaps").critical("failed: %s: %s", exc_type.__name__, exc, exc_info=(exc_type, exc, tb))
        for handler in logging.getLogger().handlers:
            handler.flush()
    sys.__excepthook__(exc_type, exc, tb)


def _log_termination(signum, frame) -> None:
    """SIGTERM (a cancelled, preempted or timed-out job): say so in the log, then exit with 128 + signum.
    The exit unwinds the stack, so that temporary files are removed and resumable work is kept."""
    name = signal.Signals(signum).name
    logging.getLogger("massmaps").error(
        "stopped by %s (job cancelled, preempted or out of time); a rerun resumes where the step keeps partial work",
        name,
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    raise SystemExit(128 + signum)


def setup(
    path: str | os.PathLike | None = None,
    level: int = logging.INFO,
    also_append: str | os.PathLike | None = None,
) -> logging.Logger:
    """Send the root logger (and warnings) to ``path`` (or stderr); return the ``massmaps`` logger.

    An exception that ends the program is logged with its traceback before Python prints it, and SIGTERM
    is logged before the program exits (code 143), so that a failed or killed job's log says why it ended.

    ``also_append``: a second file that is appended to, never truncated, e.g. one that keeps the log of
    every attempt of a resumable job (Snakemake deletes a job's log file before each attempt).
    """
    handlers: list[logging.Handler] = [
        logging.FileHandler(path, mode="w") if path else logging.StreamHandler(sys.stderr)
    ]
    if also_append is not None:
        os.makedirs(os.path.dirname(os.path.abspath(also_append)), exist_ok=True)
        handlers.append(logging.FileHandler(also_append, mode="a"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    if path is not None:
        sys.excepthook = _log_uncaught
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            signal.signal(signal.SIGTERM, _log_termination)
    return logging.getLogger("massmaps")


def append_from_now() -> None:
    """Reopen the root logger's files in append mode, so that child processes may append to the same files
    (a handle opened for writing would write over their lines at its own offset)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.flush()
            handler.close()  # reopened by the next record, in the mode set here
            handler.mode = "a"
