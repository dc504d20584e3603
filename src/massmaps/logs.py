"""Logging set-up for command-line and workflow entry points."""

from __future__ import annotations

import logging
import os
import sys
import warnings


def setup(path: str | os.PathLike | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send the root logger (and warnings) to ``path`` (or stderr); return the ``massmaps`` logger."""
    handler: logging.Handler = logging.FileHandler(path, mode="w") if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    return logging.getLogger("massmaps")
