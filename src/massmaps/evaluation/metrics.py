"""Evaluation metrics on maps (numpy only; no plotting). Definitions in docs/physics.md section 9."""

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


def _finite(x: np.ndarray) -> np.ndarray:
    """``x`` as float64; a non-finite value raises (a summary never silently drops a map)."""
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} non-finite of {x.size} values (first at index {int(np.flatnonzero(bad)[0])})"
        )
    return x


def percentiles(x: np.ndarray) -> dict:
    """Median with 16th and 84th percentiles; a non-finite value raises ValueError."""
    x = _finite(x)
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


# --------------------------------------------------------------------------------------------------
# Power spectra, b(k) and r(k) (docs/physics.md section 9; the paper's Eqs. 13-14)
# --------------------------------------------------------------------------------------------------


class KBins:
    """Linear |k| bins of one fundamental mode width, centred on multiples of it up to the Nyquist mode.

    ``npix`` pixels of ``pixel`` per side. ``length_unit`` says what the pixel size is measured in:
    ``"Mpc"`` (physical Mpc, the default: k is then divided by ``h`` to read in h/Mpc) or ``"Mpc/h"``
    (the pixel size taken as Mpc/h, one reading of the paper). ``two_pi`` chooses k = 2 pi n / L (default)
    or k = n / L. Bin j (1 <= j <= npix // 2) holds the modes with j - 1/2 <= |n| < j + 1/2, so the
    corners beyond the Nyquist circle and the k = 0 mode are in no bin. For the paper's 128 pixels of
    0.1 Mpc and h = 0.7, the fundamental is 0.701 h/Mpc and the last bin is centred on 44.9 h/Mpc.
    """

    def __init__(self, npix: int, pixel: float, *, h: float = 0.7, length_unit: str = "Mpc", two_pi: bool = True):
        if length_unit not in ("Mpc", "Mpc/h"):
            raise ValueError(f"length_unit must be 'Mpc' or 'Mpc/h', got {length_unit!r}")
        if npix < 4 or not pixel > 0 or not h > 0:
            raise ValueError(f"need npix >= 4, pixel > 0 and h > 0, got {npix}, {pixel}, {h}")
        self.npix, self.pixel, self.h, self.length_unit, self.two_pi = (
            int(npix),
            float(pixel),
            float(h),
            length_unit,
            bool(two_pi),
        )
        side = self.npix * self.pixel
        k_f = (2 * np.pi if two_pi else 1.0) / side
        if length_unit == "Mpc":
            k_f /= self.h  # 1/Mpc -> h/Mpc
        self.k_fundamental = k_f
        self.unit = "h/Mpc"
        n = np.fft.fftfreq(self.npix, d=1.0 / self.npix)
        n_abs = np.hypot(n[:, None], n[None, :])
        index = np.rint(n_abs).astype(np.int64)  # bin j: |n| in [j - 1/2, j + 1/2)
        index[(n_abs < 0.5) | (index > self.npix // 2)] = 0
        self.mode_bin = index  # 0 = in no bin
        nb = self.npix // 2
        self.n_modes = np.bincount(index.ravel(), minlength=nb + 1)[1:]
        self.centres = k_f * np.arange(1, nb + 1)
        self.k_mean = k_f * np.bincount(index.ravel(), weights=n_abs.ravel(), minlength=nb + 1)[1:] / self.n_modes

    def average(self, modes: np.ndarray) -> np.ndarray:
        """Mean over the modes of each bin: (..., npix, npix) -> (..., nbins)."""
        modes = np.asarray(modes, dtype=np.float64)
        flat = modes.reshape(-1, self.npix * self.npix)
        idx = self.mode_bin.ravel()
        out = np.stack([np.bincount(idx, weights=row, minlength=len(self.centres) + 1)[1:] for row in flat])
        return (out / self.n_modes).reshape(*modes.shape[:-2], len(self.centres))

    def scale_mask(self, k_split: float, which: str) -> np.ndarray:
        """Bins classified by their centre: ``large`` (k < k_split) or ``small`` (k >= k_split)."""
        if which == "large":
            return self.centres < k_split
        if which == "small":
            return self.centres >= k_split
        raise ValueError(f"which must be 'small' or 'large', got {which!r}")


def _fft(maps: np.ndarray, kbins: KBins) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float64)
    if maps.shape[-2:] != (kbins.npix, kbins.npix):
        raise ValueError(f"maps of shape {maps.shape[-2:]} do not match the k bins' {kbins.npix}^2 pixels")
    return np.fft.fft2(maps) * kbins.pixel**2  # continuous Fourier transform of a map in [S] Mpc^2


def power_spectrum(maps: np.ndarray, kbins: KBins) -> np.ndarray:
    """P(k) = <|F|^2> / A per map in each |k| bin (no window, no mean subtraction; k = 0 excluded)."""
    f = _fft(maps, kbins)
    area = (kbins.npix * kbins.pixel) ** 2
    return kbins.average(np.abs(f) ** 2 / area)


def cross_spectrum(a: np.ndarray, b: np.ndarray, kbins: KBins) -> np.ndarray:
    """P_ab(k) = <Re(F_a conj(F_b))> / A per map in each |k| bin."""
    area = (kbins.npix * kbins.pixel) ** 2
    return kbins.average(np.real(_fft(a, kbins) * np.conj(_fft(b, kbins))) / area)


def bias_and_correlation(generated: np.ndarray, simulated: np.ndarray, kbins: KBins) -> tuple[np.ndarray, np.ndarray]:
    """b(k) = sqrt(P_gen / P_sim) and r(k) = P_sim,gen / sqrt(P_sim P_gen) per map: (..., nbins) each."""
    p_gen = power_spectrum(generated, kbins)
    p_sim = power_spectrum(simulated, kbins)
    p_x = cross_spectrum(simulated, generated, kbins)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(p_gen / p_sim), p_x / np.sqrt(p_gen * p_sim)


def scale_average(per_k: np.ndarray, kbins: KBins, k_split: float, which: str) -> np.ndarray:
    """Per-map mean of a (..., nbins) quantity over the bins of one scale range."""
    mask = kbins.scale_mask(k_split, which)
    if not mask.any():
        raise ValueError(
            f"no k bin is {which}-scale for k_split = {k_split} {kbins.unit} (bins {kbins.centres[[0, -1]]})"
        )
    return np.asarray(per_k)[..., mask].mean(axis=-1)


def mean_with_offsets(x: np.ndarray) -> dict:
    """Mean over maps with the 16th/84th percentile offsets (Table 1's ``a +b/-c``); a non-finite value
    raises ValueError."""
    x = _finite(x)
    if not x.size:
        return {"mean": float("nan"), "plus": float("nan"), "minus": float("nan"), "n": 0}
    m = float(x.mean())
    p16, p84 = np.percentile(x, [16, 84])
    return {"mean": m, "plus": float(p84 - m), "minus": float(m - p16), "n": int(x.size)}


# --------------------------------------------------------------------------------------------------
# Radial profiles, convergence, pixel z-scores
# --------------------------------------------------------------------------------------------------


def radial_bin_edges(r_max: float, width: float) -> np.ndarray:
    """Annuli edges 0, width, 2 width, ... up to r_max (the last edge is <= r_max + 1e-9 width)."""
    if not (width > 0 and r_max > 0):
        raise ValueError(f"need width > 0 and r_max > 0, got {width}, {r_max}")
    n = int(np.floor(r_max / width + 1e-9))
    if n < 1:
        raise ValueError(f"annulus width {width} exceeds r_max {r_max}")
    return width * np.arange(n + 1)


def annulus_index(ny: int, nx: int, pixel: float, edges: np.ndarray) -> np.ndarray:
    """The annulus (0 .. len(edges) - 2) of each pixel of a (ny, nx) map whose centre falls in it, by the rule
    of :func:`radial_profiles`; len(edges) - 1 for a pixel in none. (ny, nx) integers."""
    edges = np.asarray(edges, dtype=np.float64)
    y = (np.arange(ny) + 0.5) * pixel - ny * pixel / 2
    x = (np.arange(nx) + 0.5) * pixel - nx * pixel / 2
    r = np.hypot(y[:, None], x[None, :])
    idx = np.searchsorted(edges, r, side="right") - 1
    idx[(r >= edges[-1]) | (idx < 0)] = len(edges) - 1  # overflow bin, dropped
    return idx


def radial_profiles(maps: np.ndarray, pixel: float, edges: np.ndarray) -> np.ndarray:
    """Mean value of the pixels whose centres fall in each annulus about the map centre.

    The centre is the map's middle (the corner between the two central pixels for an even size), pixel
    centres at (i + 1/2) pixel. (..., H, W) -> (..., len(edges) - 1); NaN for an annulus with no pixel centre.
    """
    maps = np.asarray(maps, dtype=np.float64)
    ny, nx = maps.shape[-2:]
    idx = annulus_index(ny, nx, pixel, edges).ravel()
    counts = np.bincount(idx, minlength=len(edges))[:-1].astype(np.float64)
    flat = maps.reshape(-1, ny * nx)
    sums = np.stack([np.bincount(idx, weights=row, minlength=len(edges))[:-1] for row in flat])
    with np.errstate(invalid="ignore", divide="ignore"):
        prof = np.where(counts > 0, sums / counts, np.nan)
    return prof.reshape(*maps.shape[:-2], len(edges) - 1)


def sample_mean_variance(samples: np.ndarray, sample_axis: int = 1) -> np.ndarray:
    """V(N) = < s^2_N / N >_pixels for N = 2 .. n: the variance of the mean of the first N samples.

    ``samples`` has the samples along ``sample_axis`` and the pixels in the last two axes; the result has
    the sample axis replaced by N = 2..n and the pixel axes averaged: e.g. (map, sample, field, y, x) ->
    (map, n - 1, field). s^2_N is the unbiased variance (ddof = 1), computed with running sums.
    """
    s = np.moveaxis(np.asarray(samples, dtype=np.float64), sample_axis, 0)
    n = s.shape[0]
    if n < 2:
        raise ValueError("need at least 2 samples")
    mean = s[0].copy()
    m2 = np.zeros_like(mean)
    out = []
    for k in range(1, n):  # Welford: k + 1 samples seen after this step
        delta = s[k] - mean
        mean += delta / (k + 1)
        m2 += delta * (s[k] - mean)
        var = m2 / k
        out.append((var / (k + 1)).mean(axis=(-2, -1)))
    return np.moveaxis(np.stack(out), 0, sample_axis)


def variance_ratio(v: np.ndarray, sample_axis: int = 1) -> np.ndarray:
    """V(N) / V(2) with V(2) estimated from every pair of samples.

    ``v`` is :func:`sample_mean_variance`'s output (N = 2..n along ``sample_axis``). The mean over all
    pairs of samples of the 2-sample variance is the unbiased variance of all n samples, so the reference
    is V(2) = s^2_n / 2 = V(n) n / 2: far less noisy than the first two samples alone. For independent
    samples the ratio scatters about 2 / N.
    """
    v = np.moveaxis(np.asarray(v, dtype=np.float64), sample_axis, 0)
    n = v.shape[0] + 1
    ref = v[-1] * n / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.moveaxis(v / ref, 0, sample_axis)


def converged_n(v_over_v2: np.ndarray, threshold: float = 0.05) -> int | None:
    """Smallest N (from N = 2) with V(N) <= threshold V(2), for a curve indexed from N = 2; None if never."""
    hit = np.nonzero(np.asarray(v_over_v2) <= threshold)[0]
    return int(hit[0] + 2) if hit.size else None
