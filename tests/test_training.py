"""Training loop: config checks, zarr dataset, lock, time budget, SIGTERM + resume, a tiny real train.

Run as a script (``python tests/test_training.py WORKER_JSON``) it is the training subprocess of the
kill-and-resume test.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from massmaps import store
from massmaps.learning import checkpoints, samplers, score, training
from massmaps.learning.normalise import Normaliser
from massmaps.learning.training import TrainConfig, TrainingInterrupted
from massmaps.learning.training_data import ZarrMapsDataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

TINY_NET = {"nf": 8, "ch_mult": (1, 2), "attention": False, "fir": False}


def synthetic(n, size, seed):
    """Conditional toy maps: a blob of amplitude a at a random centre; inputs (a g, a^2 g^2),
    targets gas = a g + noise, dm = 0.7 a g_wide + noise, all within [0, 1]."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.1, 0.9, n)
    centres = (size - 1) / 2 + rng.uniform(-size / 5, size / 5, (n, 2))
    blob, wide = _blobs(size, centres)
    A = a[:, None, None]
    gas = A * blob + 0.02 * rng.standard_normal(blob.shape)
    dm = 0.7 * A * wide + 0.02 * rng.standard_normal(blob.shape)
    x = np.stack([gas, dm], 1).astype(np.float32)
    c = np.stack([A * blob, A**2 * blob**2], 1).astype(np.float32)
    return torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(c))


def _blobs(size, centres):
    yy, xx = np.mgrid[:size, :size].astype(float)
    centres = np.asarray(centres, dtype=float)
    r2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    return np.exp(-r2 / (2 * (size / 8) ** 2)), np.exp(-r2 / (2 * (size / 5) ** 2))


def small_config(**kw):
    base = dict(
        steps=200,
        batch_size=8,
        lr=2e-3,
        ema_decay=0.99,
        checkpoint_every=10,
        val_every=50,
        log_every=50,
        seed=5,
        device="cpu",
        network=dict(TINY_NET),
        progress=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def quiet(*args):
    pass


# ------------------------------------------------------------------------------------- config
def test_config_rejects_typos_and_bad_values():
    with pytest.raises(ValueError, match="batchsize"):
        TrainConfig.from_dict({"batchsize": 8})
    with pytest.raises(ValueError, match="ch_mul"):
        TrainConfig(network={"ch_mul": (1, 2)})
    for bad in ({"steps": 0}, {"lr": -1.0}, {"ema_decay": 1.0}, {"batch_size": 2.5}, {"time_budget_s": 0}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    cfg = TrainConfig.from_dict({"steps": 3, "network": TINY_NET})
    assert json.loads(json.dumps(cfg.to_dict()))["network"]["ch_mult"] == [1, 2]


# -------------------------------------------------------------------------------- zarr dataset
@pytest.fixture(scope="module")
def zarr_store(tmp_path_factory):
    xr = pytest.importorskip("xarray")
    rng = np.random.default_rng(0)
    n, size = 12, 8
    maps = rng.lognormal(0, 1, (n, 4, size, size)).astype(np.float32)
    maps[:, 3] *= 1e-12  # X-ray-like scale
    ds = xr.Dataset(
        {"maps": (("sightline", "field", "y", "x"), maps)},
        coords={"field": ["gas", "dm", "tsz", "xray"], "halo_id": ("sightline", np.arange(n) // 2)},
    )
    path = tmp_path_factory.mktemp("store") / "maps.zarr"
    store.write_store(ds, path, chunk_sightlines=4)
    (path / ".snakemake_timestamp").write_text("")  # as Snakemake's directory() leaves it
    return path, maps


def test_zarr_dataset_reads_normalised_sightlines(zarr_store):
    path, maps = zarr_store
    train_idx = np.arange(0, 12, 2)
    norm = Normaliser(stretch={"xray": {"stretch": "log", "offset": 1e-15}}).fit([maps[train_idx]])
    ds = ZarrMapsDataset(path, train_idx, norm)
    assert len(ds) == 6 and ds.map_shape == (8, 8)
    x, c = ds[2]
    assert x.dtype == torch.float32 and x.shape == (2, 8, 8) and c.shape == (2, 8, 8)
    np.testing.assert_array_equal(x.numpy(), norm.apply(maps[4, :2], ("gas", "dm")))
    np.testing.assert_array_equal(c.numpy(), norm.apply(maps[4, 2:], ("tsz", "xray")))
    # Pickles without the open store (DataLoader workers reopen it).
    import pickle

    clone = pickle.loads(pickle.dumps(ds))
    assert clone._array is None and clone._cache == {} and ds._cache
    np.testing.assert_array_equal(clone[2][0].numpy(), x.numpy())
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1)
    xs = torch.cat([b[0] for b in loader])
    np.testing.assert_array_equal(xs.numpy(), norm.apply(maps[train_idx, :2], ("gas", "dm")))
    with pytest.raises(ValueError, match="not in the store"):
        ZarrMapsDataset(path, train_idx, norm, inputs=("tsz", "lensing"))
    with pytest.raises(ValueError, match="out of range"):
        ZarrMapsDataset(path, [0, 12], norm)


def test_zarr_dataset_cache_gives_the_same_items(zarr_store):
    """Cached items equal uncached ones under every rotation and flip, and a caller cannot alter them."""
    from massmaps.learning.training_data import dihedral

    path, maps = zarr_store
    idx = np.arange(12)
    norm = Normaliser(stretch="asinh").fit([maps])
    cached, uncached = ZarrMapsDataset(path, idx, norm), ZarrMapsDataset(path, idx, norm, cache_mb=0)
    item_mb = 4 * 8 * 8 * 4 / 2**20
    capped = ZarrMapsDataset(path, idx, norm, cache_mb=3.5 * item_mb)
    for _rep in range(2):
        for i in range(12):
            for code in range(8):
                a, b, c = cached[i, code], uncached[i, code], capped[i, code]
                for u, v, w in zip(a, b, c):
                    assert torch.equal(u, v) and torch.equal(u, w)
                want = dihedral(maps[i], code)
                np.testing.assert_array_equal(a[0].numpy(), norm.apply(want[:2], ("gas", "dm")))
    assert len(cached._cache) == 12 and uncached._cache == {} and len(capped._cache) == 3
    x, _ = cached[5]
    x += 1.0  # tensors handed out are copies
    assert torch.equal(cached[5][0], uncached[5][0])


def test_validation_loss_is_drawn_alike_for_every_training_seed(zarr_store):
    """The validation loss of given weights does not depend on training.seed, so seeds' losses compare;
    other weights give another loss."""
    from torch_ema import ExponentialMovingAverage

    path, maps = zarr_store
    norm = Normaliser().fit([maps[:8]])
    loader = torch.utils.data.DataLoader(ZarrMapsDataset(path, np.arange(8, 12), norm), batch_size=4)

    def loss(weights_seed, training_seed):
        torch.manual_seed(weights_seed)
        model = score.build_score_model(TINY_NET, device="cpu")
        ema = ExponentialMovingAverage(model.model.parameters(), decay=0.9)
        return training._validation_loss(model, ema, loader, small_config(seed=training_seed), torch.device("cpu"))

    assert loss(3, 0) == loss(3, 7) == loss(3, 5)
    assert loss(4, 0) != loss(3, 0)


def test_train_from_zarr_then_sample(zarr_store, tmp_path):
    path, maps = zarr_store
    norm = Normaliser().fit([maps[:8]])
    train_ds = ZarrMapsDataset(path, np.arange(8), norm)
    val_ds = ZarrMapsDataset(path, np.arange(8, 12), norm)
    cfg = small_config(steps=4, batch_size=4, checkpoint_every=2, val_every=2, num_workers=1)
    result = training.train(
        tmp_path / "model", train_ds, val_ds, config=cfg, checkpoint_dir=tmp_path / "ckpt", log=quiet
    )
    assert result.step == 4 and result.resumed_from is None and np.isfinite(result.val_loss)
    assert not (tmp_path / "ckpt" / checkpoints.LOCK_FILE).exists()  # released
    loaded = score.load_model(tmp_path / "model", device="cpu")
    assert loaded.normaliser.to_dict() == norm.to_dict()
    assert loaded.metadata["training"]["steps"] == 4
    inputs = np.stack([val_ds[i][1].numpy() for i in range(2)])
    samples = samplers.draw_posterior_samples(tmp_path / "model", inputs, 2, steps=3, device="cpu")
    phys = loaded.normaliser.invert(samples, ("gas", "dm"))
    assert phys.shape == (2, 2, 2, 8, 8) and np.all(np.isfinite(phys))


# ---------------------------------------------------------------------------------------- lock
def _write_lock(ckpt_dir, pid, host):
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / checkpoints.LOCK_FILE
    path.write_text(json.dumps({"token": "other", "pid": pid, "host": host, "job_id": "1"}))
    return path


def test_lock_refuses_a_second_live_writer_and_takes_stale_locks(tmp_path):
    data = synthetic(16, 8, 0)
    cfg = small_config(steps=2, checkpoint_every=1)
    ckpt = tmp_path / "ckpt"
    # A live process on this host holds the directory.
    _write_lock(ckpt, os.getppid(), socket.gethostname())
    with pytest.raises(checkpoints.LockHeldError, match="held by"):
        training.train(tmp_path / "m", data, None, config=cfg, checkpoint_dir=ckpt, log=quiet)
    assert not (ckpt / checkpoints.CHECKPOINT_FILE).exists()
    # Another host with a recent heartbeat: refused; with an old heartbeat: stale.
    lock = _write_lock(ckpt, 1, "some-other-node")
    with pytest.raises(checkpoints.LockHeldError):
        training.train(tmp_path / "m", data, None, config=cfg, checkpoint_dir=ckpt, log=quiet)
    os.utime(lock, (time.time() - 3600, time.time() - 3600))
    training.train(tmp_path / "m", data, None, config=cfg, checkpoint_dir=ckpt, log=quiet)
    # A dead process on this host: stale.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(ckpt, dead.pid, socket.gethostname())
    result = training.train(tmp_path / "m", data, None, config=cfg, checkpoint_dir=ckpt, log=quiet)
    assert result.resumed_from == 2 and result.step == 2


# --------------------------------------------------------------------------- budget and resume
def test_time_budget_checkpoints_and_exits_75(tmp_path):
    cfg = small_config(steps=100_000, checkpoint_every=100_000, time_budget_s=2.0)
    with pytest.raises(TrainingInterrupted) as info:
        training.train(
            tmp_path / "model", synthetic(32, 8, 0), None, config=cfg, checkpoint_dir=tmp_path / "ckpt", log=quiet
        )
    assert info.value.code == training.EXIT_RESUMABLE == 75
    ckpt = checkpoints.load_checkpoint(tmp_path / "ckpt")
    assert 0 < ckpt["step"] == info.value.step < 100_000
    assert not (tmp_path / "model").exists()  # the declared output is written only at the end


def _record_data_offset(path):
    """Offset of the middle of the largest record's data in a torch.save zip file."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
    return info.header_offset + 30 + name_len + extra_len + info.file_size // 2


@pytest.mark.parametrize("damage", ["truncated", "byte flipped", "not a checkpoint"])
def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    """A damaged latest checkpoint is set aside with a warning naming it, training resumes from the one
    before and ends with the same weights as an uninterrupted run; with both damaged, the error names both."""
    ckpt_dir = tmp_path / "ckpt"
    data = synthetic(32, 8, 0)
    training.train(tmp_path / "m1", data, None, config=small_config(steps=20), checkpoint_dir=ckpt_dir, log=quiet)
    latest = ckpt_dir / checkpoints.CHECKPOINT_FILE
    assert checkpoints.load_checkpoint(ckpt_dir)["step"] == 20
    assert (
        checkpoints.load_checkpoint(ckpt_dir)["step"] == 20
        and (ckpt_dir / checkpoints.PREVIOUS_CHECKPOINT_FILE).is_file()
    )

    def spoil(path):
        raw = bytearray(path.read_bytes())
        if damage == "truncated":
            raw = raw[: len(raw) // 2]
        elif damage == "byte flipped":  # inside the largest tensor's bytes (not the zip's alignment padding)
            raw[_record_data_offset(path)] ^= 0xFF
        else:
            torch.save({"step": 20}, path)
            return
        path.write_bytes(bytes(raw))

    spoil(latest)
    said = []
    result = training.train(
        tmp_path / "m2", data, None, config=small_config(steps=30), checkpoint_dir=ckpt_dir, log=said.append
    )
    assert result.resumed_from == 10 and result.step == 30
    assert any(str(latest) in line and "damaged" in line for line in said), said
    assert (ckpt_dir / f"{checkpoints.CHECKPOINT_FILE}.damaged").is_file()
    training.train(
        tmp_path / "m3", data, None, config=small_config(steps=30), checkpoint_dir=tmp_path / "straight", log=quiet
    )
    for a, b in zip(
        score.load_model(tmp_path / "m2", device="cpu").score_model.model.parameters(),
        score.load_model(tmp_path / "m3", device="cpu").score_model.model.parameters(),
    ):
        assert torch.equal(a, b)
    spoil(latest)
    spoil(ckpt_dir / checkpoints.PREVIOUS_CHECKPOINT_FILE)
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.load_checkpoint(ckpt_dir, quiet)
    assert str(latest) in str(err.value) and checkpoints.PREVIOUS_CHECKPOINT_FILE in str(err.value)


def test_cosine_learning_rate_decays_to_zero_and_resumes_on_schedule(tmp_path):
    cfg = small_config(steps=20, lr_schedule="cosine")
    rates = [training.learning_rate(cfg, s) for s in range(20)]
    assert rates[0] == cfg.lr and rates[10] == pytest.approx(cfg.lr / 2) and 0 < rates[-1] < 0.01 * cfg.lr
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert training.learning_rate(small_config(steps=20), 19) == small_config().lr  # constant
    with pytest.raises(ValueError, match="lr_schedule"):
        small_config(lr_schedule="linear")
    data = synthetic(32, 8, 0)
    ckpt = tmp_path / "ckpt"
    training.train(tmp_path / "straight", data, None, config=cfg, checkpoint_dir=ckpt, log=quiet)
    training.train(
        tmp_path / "flat", data, None, config=small_config(steps=20), checkpoint_dir=tmp_path / "c2", log=quiet
    )
    torch.save({"step": 20}, ckpt / checkpoints.CHECKPOINT_FILE)  # unreadable: resume from step 10
    result = training.train(tmp_path / "resumed", data, None, config=cfg, checkpoint_dir=ckpt, log=quiet)
    assert result.resumed_from == 10

    def weights(name):
        return list(score.load_model(tmp_path / name, device="cpu").score_model.model.parameters())

    assert all(torch.equal(a, b) for a, b in zip(weights("straight"), weights("resumed")))
    assert not all(torch.equal(a, b) for a, b in zip(weights("straight"), weights("flat")))


def test_time_budget_counts_from_budget_start(tmp_path):
    """A budget that an earlier start (e.g. the script's, before the normalisation) has spent stops at once."""
    cfg = small_config(steps=100_000, checkpoint_every=100_000, time_budget_s=30.0)
    t0 = time.monotonic()
    with pytest.raises(TrainingInterrupted) as info:
        training.train(
            tmp_path / "model",
            synthetic(32, 8, 0),
            None,
            config=cfg,
            checkpoint_dir=tmp_path / "ckpt",
            log=quiet,
            budget_start=time.monotonic() - 29.0,
        )
    assert info.value.step == 1 and time.monotonic() - t0 < 20


@pytest.mark.parametrize(
    "budget, runtime_min, margin_s, under_scheduler, expected",
    [
        (None, 60, 300, True, 3300.0),  # a Slurm job: its time limit less the margin
        (None, 1, 35, True, 25.0),
        (None, 240, 300, False, None),  # local: the runtime is a hint, never a limit
        (None, None, 300, True, None),  # no runtime resource
        (None, 60, None, True, None),  # margin null: off
        (120, 60, 300, True, 120.0),  # an explicit budget wins, under Slurm or not
        (120, None, None, False, 120.0),
    ],
)
def test_attempt_time_budget(budget, runtime_min, margin_s, under_scheduler, expected):
    assert training.attempt_time_budget(budget, runtime_min, margin_s, under_scheduler=under_scheduler) == expected


def test_attempt_time_budget_rejects_a_runtime_shorter_than_the_margin():
    with pytest.raises(ValueError, match="runtime_margin_s"):
        training.attempt_time_budget(None, 5, 300, under_scheduler=True)
    with pytest.raises(ValueError):
        training.attempt_time_budget(None, 5, -1, under_scheduler=True)
    with pytest.raises(ValueError):
        training.attempt_time_budget(0, 5, 60, under_scheduler=True)


def _final_weights(model_dir):
    return torch.load(Path(model_dir) / score.WEIGHTS_FILE, weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    assert torch.get_num_threads() == 1  # as in the subprocess that gets killed
    d = tmp_path_factory.mktemp("reference")
    result = training.train(
        d / "model",
        synthetic(64, 8, 1),
        synthetic(16, 8, 2),
        config=small_config(),
        checkpoint_dir=d / "ckpt",
        log=quiet,
    )
    return result, d


def test_sigterm_then_resume_matches_uninterrupted_run(tmp_path, uninterrupted):
    ref, ref_dir = uninterrupted
    ckpt_dir, model_dir = tmp_path / "ckpt", tmp_path / "model"
    job = {"model_dir": str(model_dir), "checkpoint_dir": str(ckpt_dir)}
    proc = subprocess.Popen(
        [sys.executable, __file__, json.dumps(job)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 120
    while not (ckpt_dir / checkpoints.CHECKPOINT_FILE).exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 75, out
    assert "SIGTERM" in out
    killed_at = checkpoints.load_checkpoint(ckpt_dir)["step"]
    assert 10 <= killed_at < 200
    assert not model_dir.exists()

    result = training.train(
        model_dir, synthetic(64, 8, 1), synthetic(16, 8, 2), config=small_config(), checkpoint_dir=ckpt_dir, log=quiet
    )
    assert result.resumed_from == killed_at
    assert result.step == ref.step == 200
    # Bit-identical to the uninterrupted run: data order, noise, Adam and EMA state all resumed.
    a, b = _final_weights(model_dir), _final_weights(ref_dir / "model")
    assert all(torch.equal(a[k], b[k]) for k in a), (killed_at, [k for k in a if not torch.equal(a[k], b[k])][:3])
    assert result.val_loss == ref.val_loss
    # The checkpoint holds the raw weights; the model directory holds the EMA weights.
    ckpt = checkpoints.load_checkpoint(ckpt_dir)
    raw = ckpt["model"]
    assert ckpt["step"] == 200
    assert any(not torch.equal(raw[k], a[k]) for k in a if raw[k].is_floating_point())
    names = [n for n, _ in score.build_score_model(TINY_NET, device="cpu").model.named_parameters()]
    shadow = dict(zip(names, ckpt["ema"]["shadow_params"], strict=True))
    assert all(torch.equal(shadow[k], a[k]) for k in names)


# ------------------------------------------------------------------------- tiny real training
def test_tiny_training_samples_follow_their_conditioning(tmp_path):
    size = 16
    cfg = small_config(steps=300, batch_size=16, checkpoint_every=300, val_every=300, seed=0)
    training.train(
        tmp_path / "model",
        synthetic(512, size, 1),
        synthetic(64, size, 2),
        config=cfg,
        checkpoint_dir=tmp_path / "ckpt",
        log=quiet,
    )
    centres = [(7.5, 7.5), (7.5, 7.5), (4.5, 10.5)]
    amplitude = np.array([0.2, 0.8, 0.6])
    blob, _ = _blobs(size, centres)
    A = amplitude[:, None, None]
    inputs = np.stack([A * blob, A**2 * blob**2], 1).astype(np.float32)
    s = samplers.draw_posterior_samples(tmp_path / "model", inputs, 8, steps=10, batch_size=24, seed=0, device="cpu")
    mean = s.mean(axis=1)  # (3 inputs, 2 channels, H, W)
    centre = mean[:, :, 7:9, 7:9].mean(axis=(2, 3))
    # The brighter input gives brighter gas and dm (true differences 0.6 and 0.42).
    assert centre[1, 0] - centre[0, 0] > 0.25, centre
    assert centre[1, 1] - centre[0, 1] > 0.15, centre
    # The sample mean follows the input's position.
    for k in range(3):
        peak = np.unravel_index(np.argmax(mean[k, 0]), (size, size))
        assert np.hypot(peak[0] - centres[k][0], peak[1] - centres[k][1]) <= 2.5, (k, peak)
    # And the samples are not all the same.
    assert s.std(axis=1).mean() > 1e-3


def _worker(job):
    """The training subprocess of the kill-and-resume test."""
    torch.set_num_threads(1)
    training.train(
        job["model_dir"],
        synthetic(64, 8, 1),
        synthetic(16, 8, 2),
        config=small_config(),
        checkpoint_dir=job["checkpoint_dir"],
        log=print,
    )


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))


def test_dihedral_codes_are_the_eight_symmetries():
    from massmaps.learning.training_data import StreamSampler, dihedral

    a = np.arange(2 * 4 * 4).reshape(2, 4, 4)
    images = {dihedral(a, c).tobytes() for c in range(8)}
    assert len(images) == 8  # all distinct
    assert np.array_equal(dihedral(a, 0), a)
    np.testing.assert_array_equal(dihedral(a, 1), np.rot90(a, 1, axes=(1, 2)))
    np.testing.assert_array_equal(dihedral(dihedral(a, 4), 4), a)  # a flip is an involution
    # the augmented stream: same permutation as without augmentation, codes resume-safe
    plain = StreamSampler(5, seed=3)
    aug = StreamSampler(5, seed=3, augment=True)
    it_p, it_a = iter(plain), iter(aug)
    first = [next(it_a) for _ in range(12)]
    assert [i for i, _ in first] == [next(it_p) for _ in range(12)]
    assert {c for _, c in first} - set(range(8)) == set()
    resumed = iter(StreamSampler(5, seed=3, start=7, augment=True))
    assert [next(resumed) for _ in range(5)] == first[7:12]


def test_edm_preconditioning_trains_saves_and_loads(tmp_path):
    cfg = small_config(steps=4, preconditioning="edm", sigma_data=0.25)
    training.train(
        tmp_path / "model",
        synthetic(16, 8, 0),
        synthetic(8, 8, 1),
        config=cfg,
        checkpoint_dir=tmp_path / "ckpt",
        log=quiet,
    )
    den = score.load_model(tmp_path / "model", device="cpu").denoiser
    assert (den.preconditioning, den.sigma_data) == ("edm", 0.25)
    with pytest.raises(ValueError, match="sigma_data"):
        small_config(preconditioning="edm")
    with pytest.raises(ValueError, match="sigma_train"):
        small_config(sigma_train="log_normal")  # score_models' loss draws its own levels
    with pytest.raises(ValueError, match="sigma_train_width"):
        small_config(preconditioning="edm", sigma_data=0.25, sigma_train="log_normal", sigma_train_width=-1.0)
    with pytest.raises(ValueError, match="multiscale_loss"):
        small_config(multiscale_loss=1.0)  # score_models' loss is its own
    with pytest.raises(ValueError, match="multiscale_loss"):
        small_config(preconditioning="edm", sigma_data=0.25, multiscale_loss=-0.5)
    with pytest.raises(ValueError, match="profile_loss"):
        small_config(profile_loss=1.0)
    with pytest.raises(ValueError, match="profile_loss"):
        small_config(preconditioning="edm", sigma_data=0.25, profile_loss=float("nan"))
    with pytest.raises(ValueError, match="noise"):
        small_config(noise="pyramid")  # score_models' loss draws its own noise
    with pytest.raises(ValueError, match="noise_discount"):
        small_config(preconditioning="edm", sigma_data=0.25, noise="pyramid", noise_discount=0.0)


def test_mean_correction_is_measured_on_the_training_maps_and_saved_with_the_model(tmp_path):
    """With mean_correction the model carries its EMA network's mean error on the training maps, and its
    denoiser subtracts it; without, the metadata keeps its form and the denoiser is the network's own."""
    with pytest.raises(ValueError, match="mean_correction"):
        small_config(mean_correction="yes")
    for name, on in (("plain", False), ("corrected", True)):
        cfg = small_config(steps=3, preconditioning="edm", sigma_data=0.25, mean_correction=on)
        training.train(
            tmp_path / name, synthetic(12, 8, 0), None, config=cfg, checkpoint_dir=tmp_path / f"c-{name}", log=quiet
        )
    plain = score.load_model(tmp_path / "plain", device="cpu")
    corrected = score.load_model(tmp_path / "corrected", device="cpu")
    assert "mean_correction" not in plain.metadata and plain.denoiser.mean_correction is None
    meta = corrected.metadata["mean_correction"]
    assert (meta["split"], meta["maps"], meta["draws"]) == ("train", 12, training.CORRECTION_DRAWS)
    sigmas, error = corrected.denoiser.mean_correction
    assert float(sigmas[0]) == pytest.approx(1e-3) and float(sigmas[-1]) == pytest.approx(cfg.sigma_max)
    assert tuple(error.shape) == (len(sigmas), 2, int(score.radial_bins(8, 8).max()) + 1)
    torch.testing.assert_close(plain.score_model.model.state_dict(), corrected.score_model.model.state_dict())
    x0, c = synthetic(12, 8, 0).tensors
    again = score.mean_error_profile(
        plain.denoiser, x0, c, sigmas.numpy(), draws=training.CORRECTION_DRAWS, seed=cfg.seed
    )
    np.testing.assert_allclose(error.numpy(), again, rtol=1e-5, atol=1e-7)  # the same weights, maps and draws
    x = torch.rand(2, 2, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        diff = plain.denoiser(x, 0.5, cond=c[:2]) - corrected.denoiser(x, 0.5, cond=c[:2])
    assert float(diff.abs().max()) > 0


def test_pyramid_noise_is_saved_with_the_model_and_its_denoiser_draws_it(tmp_path):
    """The model remembers the noise it was trained on, so the samplers draw the same; white noise writes
    nothing new into the model's metadata (the default's files keep their form)."""
    for noise in ("white", "pyramid"):
        cfg = small_config(steps=2, preconditioning="edm", sigma_data=0.25, noise=noise, noise_discount=0.7)
        training.train(
            tmp_path / noise,
            synthetic(16, 8, 0),
            None,
            config=cfg,
            checkpoint_dir=tmp_path / f"ckpt-{noise}",
            log=quiet,
        )
    white = score.load_model(tmp_path / "white", device="cpu")
    pyramid = score.load_model(tmp_path / "pyramid", device="cpu")
    assert "noise" not in white.metadata["preconditioning"]
    assert white.denoiser.noise == ("white", 0.0)
    assert pyramid.denoiser.noise == ("pyramid", 0.7)
    z = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pyramid.denoiser.colour(z), score.colour_noise(z, "pyramid", 0.7))
    torch.testing.assert_close(white.denoiser.colour(z), z)


# ------------------------------------------------------------------------------------------- EMA
def test_torch_ema_warmup_is_reported_when_it_keeps_ema_decay_from_acting():
    """torch_ema's decay is min(ema_decay, (1 + n) / (10 + n)): with 4,000 steps 0.999 is never reached, and
    the note says so (the laptop default); with enough steps, or a power-function EMA, there is no note."""
    note = training.ema_warmup_note(TrainConfig(steps=4000, ema_decay=0.999))
    assert "8990" in note and "0.99776" in note and "no effect" in note
    assert training.ema_warmup_note(TrainConfig(steps=9000, ema_decay=0.999)) is None
    assert training.ema_warmup_note(TrainConfig(steps=4000, ema_gamma=3.0)) is None
    with pytest.raises(ValueError, match="ema_gamma"):
        TrainConfig(ema_gamma=0.0)


def test_power_ema_weights_and_resume():
    """gamma 0 is the running mean of every iterate and gamma 1 weighs update s as 2s - 1 (exactly, from
    the decay (1 - 1/t)^(gamma + 1)); a state dict saved midway and loaded into a new PowerEMA continues to
    the same average."""
    steps = 50
    for gamma, weight in ((0.0, lambda s: 1.0), (1.0, lambda s: 2.0 * s - 1.0)):
        p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        ema = training.PowerEMA([p], gamma)
        for t in range(1, steps + 1):
            p.data.fill_(float(t))
            ema.update()
        w = np.array([weight(s) for s in range(1, steps + 1)])
        expected = float((w * np.arange(1, steps + 1)).sum() / w.sum())
        assert float(ema.shadow_params[0][0]) == pytest.approx(expected, rel=1e-12)

    def run(split_at=None):
        p = torch.nn.Parameter(torch.zeros(3))
        ema = training.PowerEMA([p], 3.0)
        for t in range(1, 41):
            if t == split_at:
                state = ema.state_dict()
                ema = training.PowerEMA([p], 3.0)
                ema.load_state_dict(state)
            p.data.copy_(torch.tensor([t, t**0.5, -t], dtype=torch.float32))
            ema.update()
        return ema.shadow_params[0].clone()

    assert torch.equal(run(), run(split_at=17))


# ------------------------------------------------------------------------- precision and compile
def _train_short(tmp_path, name, **kw):
    cfg = small_config(steps=6, checkpoint_every=3, val_every=3, log_every=3, **kw)
    data = synthetic(32, 16, 1), synthetic(8, 16, 2)
    result = training.train(tmp_path / name, *data, config=cfg, checkpoint_dir=tmp_path / f"{name}_ckpt", log=quiet)
    return result, _final_weights(tmp_path / name)


def _max_abs_diff(a, b):
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("preconditioning", ["score_models", "edm"])
def test_compiled_network_trains_to_the_eager_weights(tmp_path, preconditioning):
    """training.compile: the network through torch.compile. Here with the aot_eager backend (the same graph
    capture; inductor's C++ compilation of this network took 94 s on a 2-core CPU): the eager weights and
    losses bit for bit."""
    kw = dict(preconditioning=preconditioning, sigma_data=0.3 if preconditioning == "edm" else None)
    eager, a = _train_short(tmp_path, "eager", **kw)
    compiled, b = _train_short(tmp_path, "compiled", compile="aot_eager", **kw)
    assert all(torch.equal(a[k], b[k]) for k in a), _max_abs_diff(a, b)
    assert compiled.history == eager.history


def test_model_records_the_numerics_that_set_its_low_bits(tmp_path):
    """The same config and seed give the same weights only on the same torch, device, instruction set and
    thread count (bfloat16 products differ between AMX, AVX-512 and AVX2 CPUs): the model's metadata
    names them, so two runs whose bytes differ can be told apart."""
    _train_short(tmp_path, "x", precision="bf16")
    meta = json.loads((tmp_path / "x" / score.META_FILE).read_text())["training"]["numerics_last_attempt"]
    assert meta["torch"] == torch.__version__ and meta["device"] == "cpu"
    assert meta["threads"] == torch.get_num_threads() == 1  # the one_torch_thread fixture
    assert meta["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert meta["precision"] == "bf16"  # as asked, native or not
    if Path("/proc/cpuinfo").exists():  # Linux; the model name is missing on some ARM kernels
        assert set(meta["cpu_bf16"]) <= {"avx512_bf16", "amx_bf16"} and "cpu" in meta


def test_precision_auto_takes_bf16_only_where_it_is_native_and_says_so(tmp_path, monkeypatch):
    """training.precision auto: bf16 on a device that computes bfloat16 natively, float32 elsewhere (where
    torch emulates it: a bf16 step ran 7 times slower than float32 on an AVX2-only CPU); the log says which
    and the model records it. An explicit bf16 on such a device trains as asked, with a warning in the log."""
    data = synthetic(32, 16, 1), synthetic(8, 16, 2)
    weights = {}
    for native in (False, True):
        monkeypatch.setattr(score, "native_bf16", lambda device, native=native: native)
        for precision in ("auto", "bf16", "float32"):
            lines = []
            name = f"{precision}_{native}"
            cfg = small_config(steps=3, checkpoint_every=3, val_every=3, log_every=3, precision=precision)
            training.train(tmp_path / name, *data, config=cfg, checkpoint_dir=tmp_path / f"{name}_c", log=lines.append)
            meta = json.loads((tmp_path / name / score.META_FILE).read_text())["training"]
            used = "bf16" if precision == "bf16" or (precision == "auto" and native) else "float32"
            assert meta["numerics_last_attempt"]["precision"] == used and meta["config"]["precision"] == precision
            said = [line for line in lines if line.startswith(("precision", "WARNING: precision"))]
            if precision == "auto":
                assert len(said) == 1 and said[0].startswith(f"precision auto: {used} (this cpu")
            elif precision == "bf16" and not native:
                assert len(said) == 1 and said[0].startswith("WARNING: precision bf16") and "float32" in said[0]
            else:
                assert said == []
            weights[name] = (used, _final_weights(tmp_path / name))
    for name, (used, w) in weights.items():  # auto trains exactly as the precision it resolves to
        reference = weights[f"{used}_False"][1]
        assert all(torch.equal(w[k], reference[k]) for k in w), name
    with pytest.raises(ValueError, match="precision"):
        score.resolve_precision("fp16", "cpu")


def test_bf16_autocast_trains_close_to_float32(tmp_path):
    """training.precision bf16: the forward pass in bfloat16 (8 bits of mantissa), weights and optimiser in
    float32. After 6 steps the losses agree to 1e-3 (measured 2e-5 train, 3e-4 validation) and the weights
    differ by a quarter of what training moved them at most (measured 8%: an element whose gradient
    changes sign moves by Adam's lr the other way); a second bf16 run gives the same bytes."""
    f32, a = _train_short(tmp_path, "f32")
    bf16, b = _train_short(tmp_path, "bf16", precision="bf16")
    _, again = _train_short(tmp_path, "bf16_again", precision="bf16")
    assert all(torch.equal(b[k], again[k]) for k in b), "bf16 training must repeat to the bit"
    torch.manual_seed(5)  # small_config's seed: the initial weights, as training._build draws them
    w0 = score.build_score_model(TINY_NET, device="cpu").model.state_dict()
    keys = [k for k in a if a[k].is_floating_point()]
    moved = torch.cat([(a[k] - w0[k]).flatten() for k in keys]).norm()
    ratio = float(torch.cat([(a[k] - b[k]).flatten() for k in keys]).norm() / moved)
    print(f"bf16 vs float32 after 6 steps: |dw| / |w - w0| = {ratio:.3g}; max |dw| {_max_abs_diff(a, b):.3g}")
    assert 0 < ratio < 0.25
    assert bf16.train_loss == pytest.approx(f32.train_loss, rel=1e-3)
    assert bf16.val_loss == pytest.approx(f32.val_loss, rel=1e-3)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16")
