"""Train, interrupt, resume and sample through the pipeline's own calls on one device.

What the rules ``train_model`` and ``sample_posterior`` do, on a dataset and split that the workflow
wrote (``results/<run>/dataset/maps.zarr`` and ``split/splits.parquet``), with the training and sampling
settings of the given config files (merged as Snakemake merges them), without Snakemake:

1. ``reconstruct.train_from_store`` until a SIGTERM sent to this process after ``--interrupt-after-s``
   (the preemption path: checkpoint, then ``TrainingInterrupted``);
2. the same call again, which resumes from that checkpoint and trains ``--resume-s`` more seconds'
   worth of steps at the first leg's rate, then writes the model;
3. ``reconstruct.sample_from_store`` on the first ``--n-sightlines`` test sightlines in the evaluation
   mass range (the config's sampler, steps and samples), and ``reconstruct.evaluate_samples``;
4. the first sightline sampled again alone with the same seed: the largest difference from step 3.

    python benchmarks/train_sample.py --results results/gpu128 --config config/config.yaml config/paper.yaml \
        --work /tmp/ts --interrupt-after-s 40 --resume-s 60 --n-sightlines 4

Prints one JSON summary (also written to ``--work``/summary.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import resolve  # noqa: E402

from massmaps import store  # noqa: E402
from massmaps.learning import reconstruct, score  # noqa: E402
from massmaps.learning.checkpoints import LOCK_FILE  # noqa: E402
from massmaps.learning.training import TrainingInterrupted, single_process_settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True, help="results/<run> holding dataset/ and split/")
    ap.add_argument("--config", nargs="+", default=["config/config.yaml"], help="config files, merged in order")
    ap.add_argument("--work", type=Path, required=True, help="model, checkpoints and summary go here (emptied)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--interrupt-after-s", type=float, default=30.0)
    ap.add_argument("--resume-s", type=float, default=30.0)
    ap.add_argument("--n-sightlines", type=int, default=4)
    ap.add_argument("--n-samples", type=int, default=None, help="default: the config's")
    ap.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (default: the config's)")
    args = ap.parse_args()

    cfg = resolve(args.config)
    device = score.resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); torch {torch.__version__}", flush=True)
    dataset = args.results / "dataset" / "maps.zarr"
    splits = pd.read_parquet(args.results / "split" / "splits.parquet")
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    model_dir, ckpt_dir = args.work / "model", args.work / "checkpoints"

    training = single_process_settings(cfg["training"], device=str(device), steps=10**9)
    if args.num_workers is not None:
        training["num_workers"] = args.num_workers
    norm = cfg["normalisation"]
    summary = {
        "device": name,
        "torch": torch.__version__,
        "network": training["network"],
        "batch_size": training["batch_size"],
        "num_workers": training.get("num_workers", 0),
        "n_train": int((splits["split"] == "train").sum()),
    }

    def train():
        return reconstruct.train_from_store(
            dataset,
            splits,
            model_dir,
            ckpt_dir,
            training=training,
            normalisation=norm,
            progress=False,
        )

    # ---- 1. interrupted by SIGTERM, counted from when training holds its lock (its handlers are set then)
    cancel = threading.Event()

    def interrupt():
        while not (ckpt_dir / LOCK_FILE).exists():
            if cancel.wait(0.05):
                return
        if not cancel.wait(args.interrupt_after_s):
            os.kill(os.getpid(), signal.SIGTERM)

    timer = threading.Thread(target=interrupt, daemon=True)
    t0 = time.monotonic()
    timer.start()
    try:
        train()
        raise RuntimeError("training ended before the SIGTERM")
    except TrainingInterrupted as stop:
        first_step = stop.step
    finally:
        cancel.set()
    leg1 = time.monotonic() - t0
    summary.update(interrupted_at_step=first_step, leg1_s=leg1)
    print(
        f"leg 1: SIGTERM after {args.interrupt_after_s:.0f} s, stopped at step {first_step} ({leg1:.1f} s with set-up)",
        flush=True,
    )

    # ---- 2. resumed, with a step budget worth --resume-s at leg 1's rate
    rate = first_step / max(leg1, 1e-9)
    training["steps"] = first_step + max(1, int(rate * args.resume_s))
    t0 = time.monotonic()
    result = train()
    leg2 = time.monotonic() - t0
    summary.update(
        resumed_from=result.resumed_from,
        final_step=result.step,
        leg2_s=leg2,
        train_images_per_s=result.images_per_s,
        train_loss=result.train_loss,
        val_loss=result.val_loss,
    )
    print(
        f"leg 2: resumed from step {result.resumed_from}, trained to {result.step} in {leg2:.1f} s, "
        f"{result.images_per_s:.1f} images/s in the loop; loss {result.train_loss:.4g}, val {result.val_loss}",
        flush=True,
    )

    # ---- 3. posterior samples of the first test sightlines in the evaluation range
    sa = cfg["sampling"]
    n_samples = args.n_samples or sa["n_samples"]
    test = splits[(splits["split"] == sa["split"]) & splits["in_eval_range"]].head(args.n_sightlines)
    chosen = pd.concat([splits[splits["split"] != sa["split"]], test])

    def sample(rows):
        return reconstruct.sample_from_store(
            model_dir,
            dataset,
            rows,
            which=sa["split"],
            eval_range_only=True,
            n_samples=n_samples,
            sampler=sa["sampler"],
            steps=sa["steps"],
            batch_size=sa["batch_size"],
            seed=cfg["seed"],
            device=str(device),
            sampler_kwargs=sa["sampler_kwargs"],
            prior_mean=sa["prior_mean"],
            progress=False,
        )

    t0 = time.monotonic()
    samples = sample(chosen)
    wall = time.monotonic() - t0
    n = int(samples.sizes["sightline"])
    evals = n * n_samples * int(samples.attrs["nfe_per_sample"])
    quality = reconstruct.evaluate_samples(samples, store.open_store(dataset))
    summary.update(
        npix=int(samples.sizes["x"]),
        n_sightlines=n,
        n_samples=n_samples,
        sampling_s=wall,
        sampling_evaluations_per_s=evals / wall,
        sampler=samples.attrs["sampler"],
        steps=int(samples.attrs["steps"]),
        quality=quality,
    )
    print(
        f"sampling: {n} sightlines x {n_samples} samples x {samples.attrs['nfe_per_sample']} evaluations in "
        f"{wall:.1f} s ({evals / wall:.0f} evaluations/s, {wall / n:.1f} s a sightline)",
        flush=True,
    )

    # ---- 4. the same seed again, first sightline alone
    again = sample(pd.concat([splits[splits["split"] != sa["split"]], test.head(1)]))
    a, b = samples["samples"].values[0], again["samples"].values[0]
    scale = float(np.abs(a).max())
    summary.update(repeat_identical=bool(np.array_equal(a, b)), repeat_max_rel_diff=float(np.abs(a - b).max() / scale))
    print(
        f"repeat of sightline {int(test['sightline_id'].iloc[0])}: identical {np.array_equal(a, b)}, largest "
        f"difference {summary['repeat_max_rel_diff']:.3g} of the largest value",
        flush=True,
    )

    text = json.dumps(summary, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    (args.work / "summary.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
