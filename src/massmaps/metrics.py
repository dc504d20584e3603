"""Evaluation metrics on maps (numpy only; no plotting). Definitions in PHYSICS.md section 9."""

from __future__ import annotations

import numpy as np


def pixel_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation over the pixels of each map: a, b of shape (..., H, W) -> (...)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=(-2, -1), keepdims=True)
    b = b - b.mean(axis=(-2, -1), keepdims=True)
    den = np.sqrt((a * a).sum(axis=(-2, -1)) * (b * b).sum(axis=(-2, -1)))
    return np.where(den > 0, (a * b).sum(axis=(-2, -1)) / np.where(den > 0, den, 1.0), np.nan)


def total_mass_error(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Fractional total-mass error per map, (sum gen - sum sim) / sum sim."""
    g = np.asarray(generated, dtype=np.float64).sum(axis=(-2, -1))
    t = np.asarray(truth, dtype=np.float64).sum(axis=(-2, -1))
    return (g - t) / t


def standardized_errors(mean: np.ndarray, std: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(S_gen - S_sim) / sigma_gen per pixel (the paper's Eq. 12); NaN where sigma_gen is 0."""
    std = np.asarray(std, dtype=np.float64)
    return np.where(std > 0, (np.asarray(mean, np.float64) - truth) / np.where(std > 0, std, 1.0), np.nan)


def percentiles(x: np.ndarray) -> dict:
    """Median with 16th and 84th percentiles of finite values."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    p16, p50, p84 = np.percentile(x, [16, 50, 84]) if x.size else (np.nan,) * 3
    return {"median": float(p50), "p16": float(p16), "p84": float(p84), "n": int(x.size)}


def posterior_summary(mean: dict, std: dict, truth: dict, inputs: dict) -> dict:
    """Headline numbers of a posterior: per target field, the pixel correlation of the posterior mean
    with the truth, that of each input with the truth (the no-learning baseline), the total-mass error
    and the standardized-error spread. Each argument maps field name -> array (n, H, W)."""
    out = {}
    for f in truth:
        z = standardized_errors(mean[f], std[f], truth[f])
        zf = z[np.isfinite(z)]
        out[f] = {
            "corr_mean_truth": percentiles(pixel_correlation(mean[f], truth[f])),
            **{f"corr_{i}_truth": percentiles(pixel_correlation(inputs[i], truth[f])) for i in inputs},
            "total_mass_error": percentiles(total_mass_error(mean[f], truth[f])),
            "z_std": float(np.std(zf)) if zf.size else float("nan"),
            "z_within_1sigma": float(np.mean(np.abs(zf) < 1)) if zf.size else float("nan"),
            "z_within_2sigma": float(np.mean(np.abs(zf) < 2)) if zf.size else float("nan"),
        }
    return out
