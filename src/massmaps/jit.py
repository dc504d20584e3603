"""``njit`` with an on-disk cache that stays right when several processes compile at once.

numba's own cache (``cache=True``) keeps one index file per function that maps each compiled signature to a
numbered data file. Saving an entry reads the index, takes the first free number, rewrites the index, then
writes the data; two processes compiling different signatures of one function at the same moment (two
projection jobs started together on an empty cache, say) can take the same number, so the index ends up
sending one signature to the machine code of another. Loading trusts the index, and the wrong code then runs
on the caller's arrays without an error: maps come out wrong with exit status 0. (numba issue #10128.)

:func:`njit` here is ``numba.njit`` with that fixed in two ways:

- every data file also records the key it was saved under, and loading checks it: an entry that holds
  another signature's code (or anything else unexpected) is treated as missing, so the function is compiled
  again and the entry rewritten. This alone makes the cache safe, on any file system;
- saving holds an exclusive ``flock`` on a lock file beside the index, so concurrent saves do not undo
  each other's index updates (fewer recompiles). Where locks are not available the check still holds.

Everything else (where the cache lives, when it is stale, ``NUMBA_CACHE_DIR``) is numba's.
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


def njit(func=None, /, **options):
    """``numba.njit`` with the same options (``@njit`` or ``@njit(...)``); ``cache=True`` uses the checked cache
    described above. Signatures are not taken: numba would compile them before the cache is in place."""
    if func is not None and not callable(func):
        raise TypeError("massmaps.jit.njit takes options only, not a signature; numba compiles on the first call")
    cache = options.pop("cache", False)

    def decorate(function):
        dispatcher = numba.njit(**options)(function)
        if cache:
            dispatcher._cache = _KeyedFunctionCache(dispatcher.py_func)
        return dispatcher

    return decorate if func is None else decorate(func)
