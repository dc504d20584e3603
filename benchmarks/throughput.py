"""Training images/s and sampling network evaluations/s of the configs' score models, on one device.

Each size is a config as the workflow resolves it: ``laptop`` is config/config.yaml, ``paper`` is
config/config.yaml with config/paper.yaml merged in the way Snakemake merges a --configfile (nested
mappings key by key). Per size, on random normalised maps of the config's npix:

- training: the training loop's step (score_models' DSM loss, backward, Adam, EMA update, loss read
  back) at ``training.batch_size``, timed over ``--train-steps`` steps after ``--warmup`` untimed ones;
- sampling: ``massmaps.learning.samplers.draw_posterior_samples`` (the sampler of ``sampling.sampler`` with its
  per-sample generators), ``sampling.batch_size`` samples of one sightline in one batch, at
  ``--sample-steps`` noise levels (default: the config's; fewer give the same rate per evaluation),
  after one untimed call. Reported as network evaluations per second (images through the network) and
  as the time of the config's ``sampling.n_samples`` samples of one sightline at its steps.

    python benchmarks/throughput.py                                   # both sizes, device auto
    python benchmarks/throughput.py --sizes laptop --threads 1
    python benchmarks/throughput.py --sizes paper --train-steps 2 --warmup 1 --train-batch 2 \
        --sample-steps 2 --sample-batch 2                             # the paper model on a CPU

CUDA timings synchronise the device before each clock reading. ``--cudnn-benchmark`` also times the
sizes with ``torch.backends.cudnn.benchmark`` on (the pipeline leaves it off). ``--precision bf16`` and
``--compile`` time the training step and the sampler as ``training.precision`` / ``training.compile`` and
``sampling.precision`` / ``sampling.compile`` run them (the untimed first call compiles).

``--ranks 1 2`` times data-parallel training instead (docs/scaling.md): for each count, that many local
processes (gloo on the CPU, nccl on GPUs, one GPU a rank) each train on their part of the global batch
``training.batch_size`` with DistributedDataParallel; reported as images of the global batch per second
(``--threads`` torch threads per rank)::

    python benchmarks/throughput.py --sizes laptop --ranks 1 2 --threads 1 --device cpu
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch_ema import ExponentialMovingAverage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from massmaps.config import merge  # noqa: E402
from massmaps.learning import samplers, score  # noqa: E402

SIZES = {"laptop": ["config/config.yaml"], "paper": ["config/config.yaml", "config/paper.yaml"]}


def fill_defaults(config: dict, schema: dict) -> dict:
    """The schema's defaults for keys the config leaves out, as Snakemake's validate() fills them."""
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if isinstance(config.get(key), dict) and sub.get("properties"):
            fill_defaults(config[key], sub)
    return config


def resolve(files) -> dict:
    """The config files merged in order (as Snakemake merges them, without needing Snakemake or jsonschema,
    which a GPU image may lack), with the schema's defaults filled in (no validation)."""
    config: dict = {}
    for f in files:
        merge(config, yaml.safe_load((ROOT / f).read_text()))
    return fill_defaults(config, yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text()))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(
    model, batch, npix, steps, warmup, lr, ema_decay, device, seed=0, precision="float32", compile=False, world=None
) -> float:
    """Images per second of the training loop's step (of the global batch ``batch`` with several ranks)."""
    from massmaps.learning import distributed

    world = world or distributed.World()
    g = torch.Generator().manual_seed(seed)
    channels = model.model.channels
    cond_channels = model.model.condition_input_channels
    local = batch // world.size
    x = torch.rand((local, channels, npix, npix), generator=g).to(device)
    cond = torch.rand((local, cond_channels, npix, npix), generator=g).to(device)
    optimizer = torch.optim.Adam(model.model.parameters(), lr=lr)
    ema = ExponentialMovingAverage(model.model.parameters(), decay=ema_decay)
    model.model.train()
    denoiser = score.Denoiser(model)
    denoiser.net = distributed.wrap(model.model, device, world)
    denoiser.net = score.compiled(denoiser.net, compile)
    shard = None if world.size == 1 and not compile else (world.rank * local, batch)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with score.autocast(precision, device):
            loss = score.training_loss(denoiser, x, cond, shard)
        loss.backward()
        optimizer.step()
        ema.update()
        return loss.item()  # the loop reads the loss every step

    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * batch / (time.perf_counter() - t0)


def time_sampling(
    model, batch, npix, sampler, steps, sampler_kwargs, device, precision="float32", compile=False
) -> tuple[float, float]:
    """(network evaluations per second, seconds per call) of the sampler on ``batch`` samples."""
    denoiser = score.Denoiser(model).configured(precision, compile)
    cond = np.random.default_rng(0).random((1, model.model.condition_input_channels, npix, npix), dtype=np.float32)

    def call():
        samplers.draw_posterior_samples(
            denoiser,
            cond,
            batch,
            sampler=sampler,
            steps=steps,
            batch_size=batch,
            seed=0,
            sampler_kwargs=sampler_kwargs,
            disable=True,
        )

    call()
    sync(device)
    t0 = time.perf_counter()
    call()
    sync(device)
    wall = time.perf_counter() - t0
    return batch * samplers.nfe(sampler, steps) / wall, wall


def rank_worker(job: dict) -> None:
    """One rank of ``--ranks``: join the group, time the training step; rank 0 writes the rate to a file."""
    from massmaps.learning import distributed

    torch.set_num_threads(job["threads"])
    world = distributed.init_from_env()
    try:
        device = distributed.rank_device(score.resolve_device(job["device"]), world)
        tr = resolve(SIZES[job["size"]])["training"]
        torch.manual_seed(0)
        model = score.build_score_model(
            tr["network"], sigma_min=tr["sigma_min"], sigma_max=tr["sigma_max"], device=device
        )
        rate = time_training(
            model,
            job["batch"],
            job["npix"],
            job["steps"],
            job["warmup"],
            tr["lr"],
            tr["ema_decay"],
            device,
            world=world,
        )
        if world.main:
            Path(job["out"]).write_text(json.dumps(rate))
    finally:
        distributed.shutdown()


def time_ranks(args, size: str, cfg: dict, counts) -> list[dict]:
    """Images per second of data-parallel training on 1, 2, ... local ranks (``counts``)."""
    import tempfile

    from massmaps.learning import launch

    rows = []
    batch, npix = args.train_batch or cfg["training"]["batch_size"], int(cfg["projection"]["npix"])
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            job = dict(size=size, batch=batch, npix=npix, steps=args.train_steps, warmup=args.warmup)
            job.update(threads=args.threads or 1, device=args.device, out=str(Path(tmp) / "rate.json"))
            code = launch.spawn_local(
                [sys.executable, __file__, "--worker", json.dumps(job)], n, threads=job["threads"]
            )
            if code:
                raise SystemExit(f"{n} ranks failed with exit code {code}")
            rate = json.loads((Path(tmp) / "rate.json").read_text())
        rows.append(
            dict(size=size, ranks=n, threads_per_rank=job["threads"], train_batch=batch, train_images_per_s=rate)
        )
        print(
            f"{size:6s} {npix}^2, {n} rank(s) x {job['threads']} thread(s): training {rate:8.2f} images/s (global batch {batch})",
            flush=True,
        )
    return rows


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        return rank_worker(json.loads(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--sample-steps", type=int, default=None, help="noise levels of the timed sampling call")
    ap.add_argument("--sample-batch", type=int, default=None, help="samples per call (default: the config's)")
    ap.add_argument("--train-batch", type=int, default=None, help="training batch (default: the config's)")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="also time with cudnn.benchmark on")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here as JSON")
    ap.add_argument(
        "--precision", default="float32", choices=["float32", "bf16"], help="as training.precision, sampling.precision"
    )
    ap.add_argument(
        "--compile", action="store_true", help="torch.compile the network (training.compile, sampling.compile)"
    )
    ap.add_argument("--ranks", type=int, nargs="+", default=None, help="time data-parallel training on N ranks")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = score.resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); torch {torch.__version__}")

    rows = []
    if args.ranks:
        for size in args.sizes:
            rows += time_ranks(args, size, resolve(SIZES[size]), args.ranks)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1, default=str))
        return
    modes = [False, True] if (args.cudnn_benchmark and device.type == "cuda") else [False]
    step = dict(precision=args.precision, compile=args.compile)  # as training.precision, training.compile
    for size in args.sizes:
        cfg = resolve(SIZES[size])
        tr, sa, npix = cfg["training"], cfg["sampling"], int(cfg["projection"]["npix"])
        sample_steps = args.sample_steps or sa["steps"]
        sample_batch = args.sample_batch or sa["batch_size"]
        train_batch = args.train_batch or tr["batch_size"]
        for bench in modes:
            torch.backends.cudnn.benchmark = bench
            torch.manual_seed(0)
            model = score.build_score_model(
                tr["network"], sigma_min=tr["sigma_min"], sigma_max=tr["sigma_max"], device=device
            )
            n_params = sum(p.numel() for p in model.model.parameters())
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            img_s = time_training(
                model, train_batch, npix, args.train_steps, args.warmup, tr["lr"], tr["ema_decay"], device, **step
            )
            peak_train = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            eval_s, wall = time_sampling(
                model, sample_batch, npix, sa["sampler"], sample_steps, dict(sa["sampler_kwargs"]), device, **step
            )
            peak_sample = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            per_sightline = sa["n_samples"] * samplers.nfe(sa["sampler"], sa["steps"]) / eval_s
            row = dict(
                size=size,
                device=name,
                cudnn_benchmark=bench,
                precision=args.precision,
                compile=args.compile,
                npix=npix,
                params_M=n_params / 1e6,
                network=tr["network"],
                train_batch=train_batch,
                train_images_per_s=img_s,
                sample_batch=sample_batch,
                sample_steps=sample_steps,
                sampler=sa["sampler"],
                evaluations_per_s=eval_s,
                sample_call_s=wall,
                s_per_sightline=per_sightline,
                n_samples=sa["n_samples"],
                steps=sa["steps"],
                peak_train_GiB=peak_train,
                peak_sample_GiB=peak_sample,
            )
            rows.append(row)
            print(
                f"{size:6s} {npix}^2 {n_params / 1e6:6.2f} M params{' cudnn.benchmark' if bench else ''} "
                f"{args.precision}{' compiled' if args.compile else ''}: "
                f"training {img_s:8.2f} images/s (batch {train_batch}); sampling {eval_s:8.1f} "
                f"evaluations/s (batch {sample_batch}, {sample_steps} levels, {wall:.2f} s a call) -> "
                f"{per_sightline:.1f} s for {sa['n_samples']} samples at {sa['steps']} levels"
                + (f"; peak {peak_train:.1f} / {peak_sample:.1f} GiB" if peak_train is not None else ""),
                flush=True,
            )
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if device.type == "cpu":
        print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
