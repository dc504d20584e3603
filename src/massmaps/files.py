"""Files: the one atomic writer every output goes through, and checks on the files a run has produced."""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where a table is read
    import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = False, keep_previous: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write to; on success it is renamed onto ``path``, on an
    exception removed, so that an interrupted write never leaves anything that looks complete.

    The temporary name keeps the suffix (writers that pick the format from it still work) and starts
    with a dot. ``fsync``: flush the file to disk before the rename. ``keep_previous``: the file that
    ``path`` replaces is first renamed to this sibling name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        if keep_previous and path.is_file():
            os.replace(path, path.with_name(keep_previous))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Text to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def wrong_kind_outputs(outputs: Iterable[tuple[str, bool]]) -> list[str]:
    """Problems with existing outputs of the wrong kind: ``outputs`` holds (path pattern, is_directory);
    a pattern may hold ``{wildcard}`` parts, which match any existing name. Missing paths are fine."""
    problems = []
    for pattern, is_dir in outputs:
        for path in sorted(glob.glob(_as_glob(pattern))) if "{" in pattern else [pattern]:
            if not os.path.lexists(path) or os.path.isdir(path) == is_dir:
                continue
            found = "a directory" if os.path.isdir(path) else "a file"
            expected = "a directory (zarr store or model folder)" if is_dir else "a file"
            problems.append(f"{path}: expected {expected}, found {found}")
    return problems


def _as_glob(pattern: str) -> str:
    out, depth = [], 0
    for ch in pattern:
        if ch == "{":
            depth += 1
            if depth == 1:
                out.append("*")
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            out.append(glob.escape(ch))
    return "".join(out)


def check_output_kinds(outputs: Iterable[tuple[str, bool]]) -> None:
    """Raise FileExistsError naming every existing output of the wrong kind (a file where a directory
    is written, or the reverse), so that no job runs on, or deletes, something it did not write."""
    problems = wrong_kind_outputs(outputs)
    if problems:
        raise FileExistsError(
            "outputs of the wrong kind (not written by this workflow; move or delete them, then run again):\n  "
            + "\n  ".join(problems)
        )


def read_table(path: str | os.PathLike, columns=()) -> pd.DataFrame:
    """A parquet table written by an earlier job; one that is missing, of the wrong kind, unreadable or
    without the expected ``columns`` raises ValueError naming the file (and the columns)."""
    import pandas as pd

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: expected a parquet table, found {'a directory' if os.path.isdir(path) else 'nothing'}"
        )
    try:
        table = pd.read_parquet(path)
    except Exception as err:  # pyarrow's errors name neither the file nor the fix
        raise ValueError(
            f"{path}: cannot be read as a parquet table ({type(err).__name__}: {err}); "
            "delete it and run snakemake again"
        ) from err
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: columns {missing} missing (found {list(table.columns)}); delete it and run snakemake again"
        )
    return table
