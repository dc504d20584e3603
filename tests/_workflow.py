"""The tiny workflow config and a Snakemake runner, shared by the workflow and fault tests."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = """
run: tiny
seed: 3
catalog: {box_Mpc: 120.0, test_box_Mpc: 40.0, test_box_m_min_Msun: 2.0e+14}
sightlines: {target_per_bin: 2, max_per_cluster: 6, n_shards: 2}
projection: {npix: 16, pixel_Mpc: 0.8}
dataset: {chunk_sightlines: 4}
figures: {formats: [png]}
split: {fractions: [0.6, 0.2, 0.2], test_views: 3, held_out_per_bin: 2}
training: {steps: 30, batch_size: 8, checkpoint_every: 10, val_every: 15, log_every: 10,
           network: {nf: 8, ch_mult: [1, 2], attention: false, fir: false}}
sampling: {eval_range_only: false, n_samples: 3, steps: 3, batch_size: 8}
"""


def snakemake_cmd(workdir: Path, *args: str, extra: str = "") -> list[str]:
    """The command that runs the workflow in ``workdir`` on the tiny config (plus ``extra`` YAML)."""
    (workdir / "tiny.yaml").write_text(TINY)
    configs = [str(workdir / "tiny.yaml")]
    if extra:
        (workdir / "extra.yaml").write_text(extra)
        configs.append(str(workdir / "extra.yaml"))
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(ROOT / "config" / "config.yaml"),
        *configs,
        "--cores",
        "2",
        *args,
    ]


def snakemake(workdir: Path, *args: str, extra: str = "", timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_cmd(workdir, *args, extra=extra), capture_output=True, text=True, timeout=timeout)
