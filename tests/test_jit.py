"""The checked numba cache of :mod:`massmaps.jit`: an index entry that points at another signature's code is
never run, whether it got there by a race or by hand, and processes compiling at once leave a cache that
later processes load right."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# One function, two signatures (int64 and float64 elements): their data files hold different machine code,
# and the wrong one reads the caller's bytes as the other type.
MODULE = """
import numpy as np
from massmaps.jit import njit


@njit(cache=True)
def total(values):
    acc = values.dtype.type(0)
    for v in values.ravel():
        acc += v * v
    return acc + values.ndim


ARGS = {
    "i1": np.arange(5, dtype=np.int64),
    "f1": np.linspace(0.5, 2.0, 5),
}


def expected(name):
    values = ARGS[name]
    return float((values.astype(np.float64) ** 2).sum() + values.ndim)
"""

RUN = """
import logging, os, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
sys.path.insert(0, sys.argv[1])
if os.environ.get("SLOW_SAVE"):  # widen numba's window between reading the index and writing the data
    from numba.core.caching import IndexDataCacheFile

    after_index, before_data = map(float, os.environ["SLOW_SAVE"].split(","))
    load_index, save_data = IndexDataCacheFile._load_index, IndexDataCacheFile._save_data

    def slow_load_index(self):
        index = load_index(self)
        time.sleep(after_index)
        return index

    def slow_save_data(self, name, data):
        time.sleep(before_data)
        save_data(self, name, data)

    IndexDataCacheFile._load_index, IndexDataCacheFile._save_data = slow_load_index, slow_save_data
import kernel_mod
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.005)
for name in sys.argv[3:]:
    got = float(kernel_mod.total(kernel_mod.ARGS[name]))
    print(name, got, kernel_mod.expected(name), flush=True)
"""


def _module(tmp_path: Path) -> Path:
    folder = tmp_path / "mod"
    folder.mkdir()
    (folder / "kernel_mod.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "run.py").write_text(textwrap.dedent(RUN))
    return folder


def _env(**extra: str) -> dict[str, str]:
    """This environment with the package's sources first and numba's cache beside the test module."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env | extra


def _start(tmp_path: Path, folder: Path, names, start: float = 0.0, slow_save: str = "") -> subprocess.Popen:
    env = _env(SLOW_SAVE=slow_save)
    return subprocess.Popen(
        [sys.executable, str(tmp_path / "run.py"), str(folder), str(start), *names],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _results(proc: subprocess.Popen) -> tuple[dict[str, tuple[float, float]], str]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    rows = [line.split() for line in out.splitlines()]
    return {name: (float(got), float(want)) for name, got, want in rows}, err


def test_an_index_entry_holding_another_signatures_code_is_compiled_again(tmp_path):
    folder = _module(tmp_path)
    results, _ = _results(_start(tmp_path, folder, ["i1", "f1"]))
    assert all(got == want for got, want in results.values())
    cache = folder / "__pycache__"
    data = sorted(cache.glob("kernel_mod.total-*.nbc"))
    assert len(data) == 2, sorted(p.name for p in cache.iterdir())
    # What two processes saving at once can leave: the index sends each signature to the other's file.
    first, second = (p.read_bytes() for p in data)
    data[0].write_bytes(second)
    data[1].write_bytes(first)

    results, err = _results(_start(tmp_path, folder, ["i1", "f1"]))
    assert results == {"i1": (results["i1"][1],) * 2, "f1": (results["f1"][1],) * 2}
    assert err.count("holds other code") == 2, err
    # ... and the entries were rewritten: a third process loads both without compiling again.
    results, err = _results(_start(tmp_path, folder, ["i1", "f1"]))
    assert all(got == want for got, want in results.values())
    assert "holds other code" not in err, err


def test_two_processes_saving_at_once_leave_a_cache_later_processes_load_right(tmp_path):
    """The race as it happens, made likely by slowing numba's save: both processes read the empty index and
    take data file 1; the second rewrites the index last (``f1`` -> 1) while the first writes its data last
    (``i1``'s code). Plain numba then runs ``i1``'s code for ``f1`` in every later process."""
    import time

    folder = _module(tmp_path)
    start = time.time() + 4.0  # after both have imported numba
    first = _start(tmp_path, folder, ["i1"], start, slow_save="0.5,1.0")
    second = _start(tmp_path, folder, ["f1"], start + 0.2, slow_save="0.5,0.0")
    for proc in (first, second):
        results, _ = _results(proc)
        assert all(got == want for got, want in results.values()), results
    for order in (["f1", "i1"], ["i1", "f1"]):
        results, err = _results(_start(tmp_path, folder, order))
        assert all(got == want for got, want in results.values()), (results, err)


def test_the_package_compiles_with_its_checked_njit_only():
    """A kernel decorated with numba's own ``njit(cache=True)`` would bring the race back: the package
    imports ``njit`` from :mod:`massmaps.jit` everywhere."""
    import re

    package = Path(__file__).resolve().parents[1] / "src" / "massmaps"
    pattern = re.compile(r"^\s*(from numba import .*\bn?jit\b|.*\bnumba\.n?jit\()", re.MULTILINE)
    offenders = [
        f"{path.relative_to(package)}: {match.group(0).strip()}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "jit.py"
        for match in pattern.finditer(path.read_text())
    ]
    assert not offenders, offenders


# Closures of one factory, each compiled into a cached caller: big enough that LLVM keeps the calls.
FACTORY = """
import numpy as np
from massmaps.jit import njit


def make(c):
    def run(x):
        acc = 0.0
        for v in x:
BODY
        return acc

    run.__qualname__ = f"make.<locals>.run_{c}"  # without this, massmaps.jit.njit refuses the second
    return njit(run)


r1 = make(1)
r2 = make(2)


@njit(cache=True)
def use1(x):
    return r1(x) + r1(x[::-1])


@njit(cache=True)
def use2(x):
    return r2(x) + r2(x[::-1])
""".replace(
    "BODY",
    "\n".join(
        f"            if v > {i}.5:\n                acc += v * {i + 1} + c\n            else:\n                acc -= v / {i + 2} - c"
        for i in range(60)
    ),
)

FACTORY_RUN = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import factory_mod
x = np.linspace(0.0, 70.0, 50)
for name in sys.argv[2:]:
    fn = getattr(factory_mod, name)
    print(name, float(fn(x)), float(fn.py_func(x)))
"""


def test_closures_compiled_into_cache_files_of_different_processes_keep_their_own_code(tmp_path):
    """With numba's names (``make.<locals>.run`` and a per-process counter) the first two processes give the
    two closures the same machine-code name, and the third, loading both cache files, ran ``use1``'s runner
    for ``use2`` (checked by hand with ``numba.njit`` and no ``__qualname__``: 4120075.7 for 4126075.7)."""
    folder = tmp_path / "mod"
    folder.mkdir()
    (folder / "factory_mod.py").write_text(FACTORY)
    (tmp_path / "run.py").write_text(FACTORY_RUN)
    env = _env()
    for names in (["use1"], ["use2"], ["use1", "use2"], ["use2", "use1"]):  # one process after another
        proc = subprocess.run(
            [sys.executable, str(tmp_path / "run.py"), str(folder), *names], env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        rows = [line.split() for line in proc.stdout.splitlines()]
        assert [row[0] for row in rows] == names
        assert all(float(got) == float(want) for _, got, want in rows), rows


def test_two_different_functions_under_one_name_are_refused():
    from massmaps.jit import njit

    def make(c):
        def run(x):
            return x + c

        return njit(run)

    make(1)
    make(1)  # the same code and closure again: nothing to mix up
    with pytest.raises(ValueError, match="names two different functions"):
        make(2)
