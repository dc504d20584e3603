"""Which machine settings change a training's bytes? The laptop network trained a few steps on random maps,
once per (precision, oneDNN instruction-set cap, thread count), each in a fresh process; prints a digest of
the weights, the largest weight difference to the first row and the final training loss.

oneDNN picks its matrix-product kernels from the CPU's instruction set (AVX2, AVX-512, AVX-512 BF16,
AMX); ``ONEDNN_MAX_CPU_ISA`` caps that choice, which stands in for running on an older CPU. Rows with
the same digest gave the same bytes. A cap above what the CPU has changes nothing.

    python benchmarks/numerics.py                       # the laptop network, 20 steps, 2 threads and 1
    python benchmarks/numerics.py --isa DEFAULT AVX2 --threads 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ISAS = ("DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE", "AVX2")


def worker(precision: str, steps: int, out: str) -> None:
    """One training in this process; writes the weights' digest, the weights and the loss to ``out``."""
    import numpy as np
    import torch

    from massmaps.config import load_yaml
    from massmaps.learning import score
    from massmaps.learning.training import TrainConfig, train

    laptop = load_yaml(ROOT / "config" / "config.yaml")["training"]
    rng = np.random.default_rng(0)

    def maps(n):
        x = torch.from_numpy(rng.random((n, 2, 32, 32), dtype=np.float32))
        c = torch.from_numpy(rng.random((n, 2, 32, 32), dtype=np.float32))
        return torch.utils.data.TensorDataset(x, c)

    config = TrainConfig(
        steps=steps,
        batch_size=32,
        lr=1e-3,  # the rate the recorded digests were trained at (the default's before 2e-3)
        checkpoint_every=steps,
        val_every=steps,
        log_every=steps,
        seed=0,
        device="cpu",
        network=laptop["network"],
        preconditioning=laptop["preconditioning"],
        sigma_data=0.15,
        sigma_max=laptop["sigma_max"],
        precision=precision,
        progress=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = train(
            Path(tmp) / "model",
            maps(128),
            maps(32),
            config=config,
            checkpoint_dir=Path(tmp) / "ckpt",
            log=lambda *a: None,
        )
        weights = torch.load(Path(tmp) / "model" / score.WEIGHTS_FILE, weights_only=True)
    digest = hashlib.sha256()
    for key in sorted(weights):
        digest.update(weights[key].numpy().tobytes())
    torch.save(weights, out + ".pt")
    Path(out).write_text(json.dumps({"digest": digest.hexdigest()[:16], "loss": result.train_loss}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", nargs="+", default=["float32", "bf16"], choices=["float32", "bf16"])
    parser.add_argument("--isa", nargs="+", default=list(ISAS), help="ONEDNN_MAX_CPU_ISA values (DEFAULT: no cap)")
    parser.add_argument("--threads", nargs="+", type=int, default=[2, 1])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--worker", nargs=3, metavar=("PRECISION", "STEPS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), args.worker[2])
        return 0

    import torch

    print(f"torch {torch.__version__}; CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print("| precision | ONEDNN_MAX_CPU_ISA | threads | weights digest | max abs dw to the first row | train loss |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precision:
            first = None
            for isa in args.isa:
                for threads in args.threads:
                    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                    env.pop("ONEDNN_MAX_CPU_ISA", None)
                    if isa != "DEFAULT":
                        env["ONEDNN_MAX_CPU_ISA"] = isa
                    out = str(Path(tmp) / f"{precision}_{isa}_{threads}.json")
                    cmd = [sys.executable, __file__, "--worker", precision, str(args.steps), out]
                    subprocess.run(cmd, env=env, check=True)
                    row = json.loads(Path(out).read_text())
                    weights = torch.load(out + ".pt", weights_only=True)
                    if first is None:
                        first = weights
                    dw = max(float((weights[k].double() - first[k].double()).abs().max()) for k in weights)
                    print(f"| {precision} | {isa} | {threads} | {row['digest']} | {dw:.2g} | {row['loss']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
