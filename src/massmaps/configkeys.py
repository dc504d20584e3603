"""Checking a plain mapping (e.g. YAML) against a dataclass's fields."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping


def reject_unknown_keys(cls, d: Mapping, what: str) -> None:
    """Raise ValueError naming every key of ``d`` that is not a field of dataclass ``cls``, with the
    closest field name as a hint (``what`` names the block in the message)."""
    names = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(d) - set(names))
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), names, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"unknown {what} key(s): {', '.join(hints)}")
