import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from massmaps import store


def make_ds(ids, shard=0, nx=8, seed=0, attrs=None):
    rng = np.random.default_rng(seed)
    maps = rng.random((len(ids), 2, nx, nx)).astype(np.float32)
    return store.maps_dataset(
        maps,
        fields=["gas", "tsz"],
        units=["1", "microK"],
        long_names=["gas", "tSZ"],
        pixel_Mpc=0.4,
        sightline_coords={
            "sightline_id": np.asarray(ids),
            "halo_id": np.asarray(ids) // 3,
            "shard": np.full(len(ids), shard),
        },
        attrs={"config_hash": "abc", "massmaps_version": "0", "pixel_Mpc": 0.4, "npix": nx, **(attrs or {})},
    )


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_roundtrip_coords_units_and_lazy(tmp_path):
    ds = make_ds([0, 1, 2])
    store.write_store(ds, tmp_path / "a.zarr", chunk_sightlines=2)
    back = store.open_store(tmp_path / "a.zarr")
    assert back["maps"].chunks is not None  # lazy (dask)
    assert back["maps"].chunks[0] == (2, 1)  # dask chunks are the shards (files) of 2 sightlines
    # inside them, one compressed chunk per sightline: a random read decodes that sightline alone
    import zarr

    array = zarr.open_array(tmp_path / "a.zarr" / "maps", mode="r")
    assert array.chunks == (1, 2, 8, 8) and array.shards == (2, 2, 8, 8)
    assert len(list((tmp_path / "a.zarr" / "maps" / "c").iterdir())) == 2
    np.testing.assert_array_equal(back["maps"].values, ds["maps"].values)
    assert list(back["units"].values) == ["1", "microK"]
    assert back["x"].attrs["units"] == "Mpc"
    assert np.isclose(back["x"].values[0], -1.4) and np.isclose(back["x"].values[-1], 1.4)
    assert back.attrs[store.COMPLETE_ATTR]


def test_opens_without_dask(tmp_path, monkeypatch):
    """Where dask is missing (as on some GPU images) a store opens as lazy arrays without dask chunks."""
    ds = make_ds([0, 1, 2])
    store.write_store(ds, tmp_path / "a.zarr", chunk_sightlines=2)
    monkeypatch.setattr(store, "_has_dask", lambda: False)
    back = store.open_store(tmp_path / "a.zarr")
    assert back["maps"].chunks is None  # no .chunk() call, which would need dask
    np.testing.assert_array_equal(back["maps"].values, ds["maps"].values)


def test_same_data_same_bytes(tmp_path):
    store.write_store(make_ds([0, 1, 2]), tmp_path / "a.zarr")
    store.write_store(make_ds([0, 1, 2]), tmp_path / "b.zarr")
    assert digest(tmp_path / "a.zarr") == digest(tmp_path / "b.zarr")


def test_assemble_sorts_checks_and_is_lazy(tmp_path):
    p1 = store.write_store(make_ds([3, 4, 5], shard=1, seed=1), tmp_path / "s1.zarr")
    p0 = store.write_store(make_ds([0, 1, 2], shard=0, seed=0), tmp_path / "s0.zarr")
    ds = store.assemble([p1, p0], tmp_path / "all.zarr", chunk_sightlines=4)
    back = store.open_store(tmp_path / "all.zarr")
    assert back["sightline_id"].values.tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(back["maps"].values[:3], make_ds([0, 1, 2])["maps"].values)
    assert back.attrs["n_shards"] == 2 and ds.sizes["sightline"] == 6


def test_assemble_rejects_mixed_configs(tmp_path):
    p0 = store.write_store(make_ds([0]), tmp_path / "s0.zarr")
    p1 = store.write_store(make_ds([1], attrs={"config_hash": "other"}), tmp_path / "s1.zarr")
    with pytest.raises(ValueError, match=r"s1.zarr.*config_hash"):
        store.assemble([p0, p1], tmp_path / "all.zarr")


def test_incomplete_store_refused(tmp_path):
    ds = make_ds([0, 1])
    ds.to_zarr(tmp_path / "partial.zarr", consolidated=False)  # written without the completion mark
    with pytest.raises(ValueError, match=r"partial.zarr.*incomplete"):
        store.open_store(tmp_path / "partial.zarr")
    with pytest.raises(FileNotFoundError, match="not found"):
        store.open_store(tmp_path / "missing.zarr")


def test_unwritten_chunks_read_as_nan(tmp_path):
    import zarr

    store.write_store(make_ds([0, 1, 2, 3]), tmp_path / "a.zarr", chunk_sightlines=2)
    arr = zarr.open_array(tmp_path / "a.zarr" / "maps")
    assert np.isnan(arr.fill_value)


def test_killed_writer_leaves_nothing_complete(tmp_path):
    """A writer killed mid-write leaves only a temporary store, which assembly never takes."""
    script = textwrap.dedent(
        f"""
        import time, dask, dask.array as da, numpy as np, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store import make_ds
        from massmaps import store
        ds = make_ds(list(range(8)))
        def slow(block):
            time.sleep(0.5)
            return block
        ds["maps"].data = da.from_array(ds["maps"].values, chunks=(1, 2, 8, 8)).map_blocks(slow)
        dask.config.set(scheduler="synchronous")
        store.write_store(ds, {str(tmp_path / "shard.zarr")!r}, chunk_sightlines=1)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while not list(tmp_path.glob(".shard.zarr.tmp-*")) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert list(tmp_path.glob(".shard.zarr.tmp-*")), "the writer was killed before it started writing"
    assert not (tmp_path / "shard.zarr").exists()
    with pytest.raises(FileNotFoundError):
        store.assemble([tmp_path / "shard.zarr"], tmp_path / "all.zarr")
    # the next writer clears the stale temporary store
    store.write_store(make_ds([0]), tmp_path / "shard.zarr")
    assert not list(tmp_path.glob(".shard.zarr.tmp-*"))
    assert store.open_store(tmp_path / "shard.zarr").sizes["sightline"] == 1


def test_config_hash_stable_and_sensitive():
    a = store.config_hash({"b": 1, "a": [1, 2]})
    assert a == store.config_hash({"a": [1, 2], "b": 1})
    assert a != store.config_hash({"a": [1, 2], "b": 2})
    assert len(a) == 16 and os.path.basename(a) == a


def _flip_byte(f: Path, offset: int = 40) -> None:
    data = bytearray(f.read_bytes())
    data[offset] ^= 0xFF
    f.write_bytes(bytes(data))


DAMAGE = {
    "shard deleted": (lambda p: (p / "maps" / "c" / "1" / "0" / "0" / "0").unlink(), "maps/c/1/0/0/0 is missing"),
    "shard truncated": (lambda p: os.truncate(p / "maps" / "c" / "1" / "0" / "0" / "0", 20), "has 20 bytes"),
    "byte flipped": (lambda p: _flip_byte(p / "maps" / "c" / "1" / "0" / "0" / "0"), "changed bytes"),
    "coordinate deleted": (lambda p: (p / "halo_id" / "c" / "0").unlink(), "halo_id/c/0 is missing"),
    "not marked complete": (lambda p: _unseal(p), "incomplete"),
    "a file": (lambda p: (store.shutil.rmtree(p), p.write_text("x")), "found a file"),
    "an empty folder": (lambda p: (store.shutil.rmtree(p), p.mkdir()), "directory without zarr.json"),
}


def _unseal(path: Path) -> None:
    import zarr

    group = zarr.open_group(path, mode="r+")
    group.attrs.update({store.COMPLETE_ATTR: False})


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_store_refused_naming_store_file_and_sightlines(tmp_path, damage):
    """Class 'missing data': every reader opens stores through open_store, which refuses a store whose
    files no longer match the manifest written with it (instead of reading NaN or zeros), naming the
    store, the file and the sightlines held there."""
    path = tmp_path / "a.zarr"
    store.write_store(make_ds([10, 11, 12, 13, 14]), path, chunk_sightlines=2)
    store.open_store(path)  # intact
    change, words = DAMAGE[damage]
    change(path)
    with pytest.raises(store.StoreError) as err:
        store.open_store(path)
    message = str(err.value)
    assert str(path) in message and words in message, message
    if damage.startswith("shard"):
        assert "sightline_id 12..13" in message  # the second shard file holds the third and fourth sightlines


def test_changed_bytes_of_a_large_store_fail_their_read(tmp_path, monkeypatch):
    """Above FULL_CHECK_BYTES the CRC of every file is not read at open; each chunk's CRC32C catches it."""
    path = tmp_path / "a.zarr"
    store.write_store(make_ds([10, 11, 12, 13]), path, chunk_sightlines=2)
    _flip_byte(path / "maps" / "c" / "1" / "0" / "0" / "0")
    monkeypatch.setattr(store, "FULL_CHECK_BYTES", 0)
    ds = store.open_store(path)
    ds["maps"].isel(sightline=[0, 1]).values  # noqa: B018  (the read is the test)
    with pytest.raises(ValueError, match="checksum"):
        ds["maps"].isel(sightline=[2]).values  # noqa: B018


def test_atomic_path_renames_on_success_and_leaves_nothing_on_failure(tmp_path):
    from massmaps.files import atomic_path, write_text_atomic

    target = tmp_path / "sub" / "table.csv"
    write_text_atomic("old\n", target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.suffix == ".csv" and tmp.name.startswith(".")
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n" and sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]
    with atomic_path(target, fsync=True, keep_previous="table.prev.csv") as tmp:
        tmp.write_text("new\n")
    assert target.read_text() == "new\n" and (target.parent / "table.prev.csv").read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.csv", "table.prev.csv"]
