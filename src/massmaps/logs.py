"""Logging set-up for command-line and workflow entry points."""

from __future__ import annotations

import logging
import os
import sys
import warnings


def _log_uncaught(exc_type, exc, tb) -> None:
    """Write an uncaught exception with its traceback to the log, then to stderr as Python would."""
    if not issubclass(exc_type, KeyboardInterrupt):
        logging.getLogger("massmaps").critical("failed: %s: %s", exc_type.__name__, exc, exc_info=(exc_type, exc, tb))
        for handler in logging.getLogger().handlers:
            handler.flush()
    sys.__excepthook__(exc_type, exc, tb)


def setup(
    path: str | os.PathLike | None = None,
    level: int = logging.INFO,
    also_append: str | os.PathLike | None = None,
) -> logging.Logger:
    """Send the root logger (and warnings) to ``path`` (or stderr); return the ``massmaps`` logger.

    An exception that ends the program is logged with its traceback before Python prints it, so that a
    failed job's log file says why it failed.

    ``also_append``: a second file that is appended to, never truncated, e.g. one that keeps the log of
    every attempt of a resumable job (Snakemake deletes a job's log file before each attempt).
    """
    handlers: list[logging.Handler] = [logging.FileHandler(path, mode="w") if path else logging.StreamHandler(sys.stderr)]
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
    return logging.getLogger("massmaps")
