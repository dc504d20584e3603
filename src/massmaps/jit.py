"""``njit`` with an on-disk cache that stays right when cache files from several processes meet.

numba's own cache (``cache=True``) keeps one index file per function that maps each compiled signature to a
numbered data file. Saving an entry reads the index, takes the first free number, rewrites the index, then
writes the data; two processes compiling different signatures of one function at the same moment (two
projection jobs started together on an empty cache, say) can take the same number, so the index ends up
sending one signature to the machine code of another. Loading trusts the index, and the wrong code then runs
on the caller's arrays without an error: maps come out wrong with exit status 0. (numba issue #10128.)

:func:`njit` here is ``numba.njit`` with that fixed in two ways:

- every data file also records the key it was saved under, and loading checks it: an entry that holds
  another signature's code (or anything else unexpected) is treated as missing, so the function is compiled
  again and the entry rewritten. This alone keeps the index from misleading, on any file system;
- saving holds an exclusive ``flock`` on a lock file beside the index, so concurrent saves do not undo
  each other's index updates (fewer recompiles). Where locks are not available the check still holds.

Everything else (where the cache lives, when it is stale, ``NUMBA_CACHE_DIR``) is numba's.

A second hazard is of names, not of the cache's bookkeeping. numba names the machine code of a function
after its qualified name and a counter that every process starts afresh, and a cached function carries
copies of the functions it calls under those names. Closures made by one factory share a qualified name;
if two of them end up under the same name in cache files written by different processes, a process that
loads both files links every call of that name to one body, and one caller runs the other's code. No
process needs to run at the same time as another for this: each file can be written on its own day.
:func:`njit` therefore refuses a function whose module and qualified name were already taken by a
different one; a factory names each closure it makes (``run.__qualname__ = f"...run_{nx}x{ny}"``).
"""

from __future__ import annotations

import contextlib
import logging

import numba
from numba.core.caching import FunctionCache, IndexDataCacheFile

try:  # POSIX; elsewhere the saves go unlocked and the key check alone keeps loads right
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["njit"]

log = logging.getLogger(__name__)

_TAG = "massmaps-keyed-entry-v1"


@contextlib.contextmanager
def _exclusive(path: str):
    """Hold an exclusive ``flock`` on ``path`` (created if missing); go on unlocked where that fails."""
    handle = None
    if fcntl is not None:
        try:
            handle = open(path, "a+b")
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:  # read-only directory, or a file system without locks
            log.debug("numba cache: saving without a lock on %s (%s)", path, exc)
            if handle is not None:
                handle.close()
            handle = None
    try:
        yield
    finally:
        if handle is not None:
            handle.close()  # closing the descriptor releases the lock


class _KeyedCacheFile(IndexDataCacheFile):
    """numba's index and data files, with each data file holding ``(tag, key, data)`` and loads checking it."""

    def save(self, key, data):
        with _exclusive(self._index_path + ".lock"):
            super().save(key, (_TAG, key, data))

    def load(self, key):
        try:
            entry = super().load(key)
        except Exception as exc:  # a truncated or foreign data file: compile again rather than fail
            log.info("numba cache: unreadable entry in %s (%s); compiling again", self._index_path, exc)
            return None
        if entry is None:
            return None
        if not (isinstance(entry, tuple) and len(entry) == 3 and entry[0] == _TAG and entry[1] == key):
            log.info(
                "numba cache: the entry that %s lists for %s holds other code (written by another process at the "
                "same time, or by plain numba); compiling again",
                self._index_path,
                key[0],
            )
            return None
        return entry[2]


class _KeyedFunctionCache(FunctionCache):
    """``FunctionCache`` on :class:`_KeyedCacheFile`: the same files and places, loads checked."""

    def __init__(self, py_func):
        super().__init__(py_func)
        self._cache_file = _KeyedCacheFile(
            cache_path=self._cache_path,
            filename_base=self._impl.filename_base,
            source_stamp=self._impl.locator.get_source_stamp(),
        )


#: (module, qualified name) -> the function's code and closure values, for the check of unique names.
_NAMES: dict[tuple[str, str], tuple] = {}


def _claim_name(function) -> None:
    """Refuse a second, different function under a module and qualified name already compiled here."""
    cells = tuple(repr(cell.cell_contents) for cell in function.__closure__ or ())
    identity = (function.__code__.co_code, function.__code__.co_consts, cells)
    key = (function.__module__, function.__qualname__)
    if _NAMES.setdefault(key, identity) != identity:
        raise ValueError(
            f"massmaps.jit.njit: {key[0]}.{key[1]} names two different functions (closures of one factory?). "
            "numba names compiled code by qualified name and a per-process counter, so cache files written by "
            "different processes could run one in place of the other: give each its own __qualname__."
        )


def njit(func=None, /, **options):
    """``numba.njit`` with the same options (``@njit`` or ``@njit(...)``); ``cache=True`` uses the checked cache
    described above, and every function must have a module and qualified name of its own (see above).
    Signatures are not taken: numba would compile them before the cache is in place."""
    if func is not None and not callable(func):
        raise TypeError("massmaps.jit.njit takes options only, not a signature; numba compiles on the first call")
    cache = options.pop("cache", False)

    def decorate(function):
        _claim_name(function)
        dispatcher = numba.njit(**options)(function)
        if cache:
            dispatcher._cache = _KeyedFunctionCache(dispatcher.py_func)
        return dispatcher

    return decorate if func is None else decorate(func)
