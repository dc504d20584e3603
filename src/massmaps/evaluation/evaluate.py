"""The paper's evaluation (Sec. 4) of a posterior sample store against the dataset's truth.

:func:`evaluate` reduces the samples to per-map metric arrays (an xarray Dataset: power spectra, b(k),
r(k) and the linear baselines, radial profiles, total-mass errors, the sample-variance convergence curve,
the pooled standardized-error histogram, the calibration primitives); :mod:`massmaps.evaluation.tables`
reduces that Dataset to tables. :func:`linear_baselines` gives the linear baselines of the data alone, per
map and per mass bin. Definitions are in :mod:`massmaps.evaluation.metrics` and docs/physics.md section 9; nothing here plots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from .. import __version__
from ..configkeys import reject_unknown_keys
from ..store import INPUTS, TARGETS
from . import calibration, metrics


@dataclass(frozen=True)
class EvalConfig:
    """Choices of the evaluation (docs/physics.md section 9; UNSURE ones marked there)."""

    #: mass bins of M200m in Msun, [lo, hi) except the last, which includes hi (the paper's low and high)
    mass_bins: Mapping[str, Sequence[float]] = field(
        default_factory=lambda: {"low": [2e14, 6e14], "high": [6e14, 1e15]}
    )
    profile_bin_Mpc: float | None = None  # annulus width; None = one pixel (the paper: 0.1 Mpc)
    profile_r_max_Mpc: float | None = None  # None = half the field of view
    k_length_unit: str = "Mpc"  # what the pixel size is measured in: Mpc (k / h in h/Mpc) or Mpc/h
    k_two_pi: bool = True  # k = 2 pi n / L
    k_split_h_per_Mpc: float = 2.0  # large scales k < split, small scales k >= split
    convergence_threshold: float = 0.05  # converged when V(N) <= threshold V(2)
    z_range: float = 5.0  # standardized-error histogram over [-z_range, z_range]
    z_bins: int = 100
    chunk_sightlines: int = 16

    @classmethod
    def from_mapping(cls, d: Mapping | None) -> EvalConfig:
        d = dict(d or {})
        reject_unknown_keys(cls, d, "evaluation")
        return cls(**d)


def mass_bin_labels(mass_msun: np.ndarray, bins: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Name of the mass bin of each mass ('' outside every bin); bins are [lo, hi), the highest [lo, hi]."""
    mass = np.asarray(mass_msun, dtype=np.float64)
    out = np.full(mass.shape, "", dtype=object)
    top = max(hi for _, hi in bins.values())
    for name, (lo, hi) in bins.items():
        sel = (mass >= lo) & ((mass < hi) | ((hi == top) & (mass <= hi)))
        if np.any(out[sel] != ""):
            raise ValueError(f"mass bins overlap: {dict(bins)}")
        out[sel] = name
    return out


def require_finite(values: np.ndarray, what: str, sightline_ids: np.ndarray, source: str = "") -> None:
    """Raise ValueError naming ``source``, ``what`` and the first sightline_id (axis 0) holding a non-finite value."""
    bad = ~np.isfinite(np.asarray(values)).reshape(len(sightline_ids), -1).all(axis=1)
    if bad.any():
        ids = np.asarray(sightline_ids)[bad]
        raise ValueError(
            f"{source + ': ' if source else ''}{what}: non-finite values in {ids.size} sightline(s), "
            f"first sightline_id {ids[0]}" + (f" (also {ids[1:6].tolist()})" if ids.size > 1 else "")
        )


def evaluate(
    samples: xr.Dataset,
    dataset: xr.Dataset,
    cfg: EvalConfig | Mapping | None = None,
    *,
    h: float = 0.7,
    progress: bool = False,
    sources: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """Per-map metrics of a posterior sample store against the dataset it was drawn from.

    ``samples`` holds ``samples`` (sightline, sample, field, y, x), ``mean`` and ``std`` in physical units
    (:func:`massmaps.learning.reconstruct.sample_from_store`); ``dataset`` the maps (sightline, field, y, x). Reads
    ``cfg.chunk_sightlines`` sightlines at a time, so the paper-scale sample store need not fit in memory.
    A non-finite map, sample or per-map metric raises ValueError naming the sightline (and the store
    path from ``sources``, keys ``samples`` and ``dataset``).
    """
    sources = dict(sources or {})
    from tqdm.auto import tqdm

    cfg = cfg if isinstance(cfg, EvalConfig) else EvalConfig.from_mapping(cfg)
    pos = pd.Index(dataset["sightline_id"].values).get_indexer(samples["sightline_id"].values)
    if (pos < 0).any():
        raise ValueError("the sample store holds sightlines that the dataset lacks")
    n_map, n_samp = samples.sizes["sightline"], samples.sizes["sample"]
    if n_samp < 2:
        raise ValueError(f"the evaluation needs at least 2 posterior samples per sightline, got {n_samp}")
    bins = _Bins.of(dataset, cfg, h)
    totals = _Totals.empty(n_map, n_samp, bins, cfg.z_bins)
    step = max(1, cfg.chunk_sightlines)
    fields = [str(f) for f in dataset["field"].values]
    target_pos, input_pos = [fields.index(f) for f in TARGETS], [fields.index(f) for f in INPUTS]
    ids = samples["sightline_id"].values
    for start in tqdm(range(0, n_map, step), desc="evaluate", unit="chunk", disable=not progress):
        sl = slice(start, min(start + step, n_map))
        truth_all = dataset["maps"].isel(sightline=pos[sl]).values.astype(np.float64)
        require_finite(truth_all, "dataset maps", ids[sl], sources.get("dataset", ""))
        truth = truth_all[:, target_pos]
        inputs = truth_all[:, input_pos]
        chunk = samples.isel(sightline=sl).sel(field=list(TARGETS))
        for name in ("samples", "mean", "std"):
            require_finite(chunk[name].values, f"posterior {name}", ids[sl], sources.get("samples", ""))
        _add_chunk(totals, bins, sl, truth, inputs, chunk)

    for name in ("P_sim", "P_gen", "b", "r", "r_input", "profile_sim", "profile_gen", "mass_error", "V"):
        require_finite(totals.arrays[name], f"metric {name}", ids, "evaluation")
    return xr.Dataset(
        {**_metric_variables(totals, bins, n_samp, cfg.k_length_unit), **_calibration_variables(totals.cal)},
        coords=_metric_coords(samples, bins, cfg, n_samp),
        attrs=_metric_attrs(samples, dataset, bins, cfg, h, n_samp),
    )


@dataclass(frozen=True)
class _Bins:
    """The bins of :func:`evaluate`: k for the power spectra, radius for the profiles, z for the errors."""

    pixel: float  # pixel size [Mpc]
    kb: metrics.KBins
    edges: np.ndarray  # radial bin edges [Mpc]
    z_edges: np.ndarray  # standardized-error histogram edges

    @classmethod
    def of(cls, dataset: xr.Dataset, cfg: EvalConfig, h: float) -> _Bins:
        pixel = float(dataset.attrs["pixel_Mpc"])
        npix = int(dataset.sizes["x"])
        kb = metrics.KBins(npix, pixel, h=h, length_unit=cfg.k_length_unit, two_pi=cfg.k_two_pi)
        width = cfg.profile_bin_Mpc or pixel
        edges = metrics.radial_bin_edges(cfg.profile_r_max_Mpc or npix * pixel / 2, width)
        z_edges = np.linspace(-cfg.z_range, cfg.z_range, cfg.z_bins + 1)
        return cls(pixel=pixel, kb=kb, edges=edges, z_edges=z_edges)


@dataclass
class _Totals:
    """What :func:`evaluate` fills chunk by chunk: per-map metrics, calibration primitives, pooled z counts."""

    arrays: dict[str, np.ndarray]  # per-map metrics, by variable name
    cal: dict[str, np.ndarray]  # per-map calibration primitives (_calibration_arrays)
    z_sum: np.ndarray  # (field, z bin): histogram of the standardized errors of every map
    z_in: np.ndarray  # (field, 3): pixels, inside 1 sigma, inside 2 sigma

    @classmethod
    def empty(cls, n_map: int, n_samp: int, bins: _Bins, z_bins: int) -> _Totals:
        nk, nr, nf, ni = len(bins.kb.centres), len(bins.edges) - 1, len(TARGETS), len(INPUTS)
        arrays = {
            "P_sim": np.empty((n_map, nf, nk)),
            "P_gen": np.empty((n_map, nf, nk)),
            "b": np.empty((n_map, nf, nk)),
            "r": np.empty((n_map, nf, nk)),
            "r_input": np.empty((n_map, ni, nf, nk)),
            "profile_sim": np.empty((n_map, nf, nr)),
            "profile_gen": np.empty((n_map, nf, nr)),
            "mass_error": np.empty((n_map, nf)),
            "V": np.empty((n_map, n_samp - 1, nf)),
        }
        cal = _calibration_arrays(n_map, n_samp, nf)
        return cls(arrays=arrays, cal=cal, z_sum=np.zeros((nf, z_bins)), z_in=np.zeros((nf, 3)))


def _add_chunk(
    totals: _Totals, bins: _Bins, sl: slice, truth: np.ndarray, inputs: np.ndarray, chunk: xr.Dataset
) -> None:
    """The metrics of the maps ``sl``: ``truth`` and ``inputs`` from the dataset, ``chunk`` of the sample store."""
    arrays, kb, pixel = totals.arrays, bins.kb, bins.pixel
    mean = chunk["mean"].values.astype(np.float64)
    std = chunk["std"].values.astype(np.float64)
    arrays["P_sim"][sl] = metrics.power_spectrum(truth, kb)
    arrays["P_gen"][sl] = metrics.power_spectrum(mean, kb)
    arrays["b"][sl], arrays["r"][sl] = metrics.bias_and_correlation(mean, truth, kb)
    for j in range(len(INPUTS)):
        _, arrays["r_input"][sl, j] = metrics.bias_and_correlation(inputs[:, j : j + 1], truth, kb)
    arrays["profile_sim"][sl] = metrics.radial_profiles(truth, pixel, bins.edges)
    arrays["profile_gen"][sl] = metrics.radial_profiles(mean, pixel, bins.edges)
    arrays["mass_error"][sl] = metrics.total_mass_error(mean, truth)
    draws = chunk["samples"].values
    arrays["V"][sl] = metrics.sample_mean_variance(draws, sample_axis=1)
    _fill_calibration(totals.cal, sl, draws, truth, pixel)
    z = metrics.standardized_errors(mean, std, truth)
    for i in range(len(TARGETS)):
        zf = z[:, i][np.isfinite(z[:, i])]
        totals.z_sum[i] += np.histogram(zf, bins=bins.z_edges)[0]
        totals.z_in[i] += (zf.size, np.sum(np.abs(zf) < 1), np.sum(np.abs(zf) < 2))


def _metric_variables(totals: _Totals, bins: _Bins, n_samp: int, k_length_unit: str) -> dict:
    """The evaluation store's per-map metric variables and the pooled standardized-error statistics."""
    arrays, z_sum, z_in, z_edges = totals.arrays, totals.z_sum, totals.z_in, bins.z_edges
    n_z = z_in[:, :1]
    p_units = "[S]^2 Mpc^2" if k_length_unit == "Mpc" else "[S]^2 (Mpc/h)^2"  # [S]: the field's unit
    s, f, k, r = "sightline", "field", "k", "radius"
    return {
        "P_sim": (
            (s, f, k),
            arrays["P_sim"],
            {"long_name": "power spectrum of the simulated map", "units": p_units},
        ),
        "P_gen": (
            (s, f, k),
            arrays["P_gen"],
            {"long_name": f"power spectrum of the {n_samp}-sample mean", "units": p_units},
        ),
        "b": ((s, f, k), arrays["b"], {"long_name": "b(k) = sqrt(P_gen / P_sim)", "units": "1"}),
        "r": ((s, f, k), arrays["r"], {"long_name": "r(k) = P_sim,gen / sqrt(P_sim P_gen)", "units": "1"}),
        "r_input": (
            ("sightline", "input", f, k),
            arrays["r_input"],
            {"long_name": "linear baseline: r(k) between an input map and the simulated map", "units": "1"},
        ),
        "profile_sim": (
            (s, f, r),
            arrays["profile_sim"],
            {"long_name": "mean of the simulated map in annuli", "units": "1"},
        ),
        "profile_gen": (
            (s, f, r),
            arrays["profile_gen"],
            {"long_name": f"mean of the {n_samp}-sample mean in annuli", "units": "1"},
        ),
        "mass_error": (
            (s, f),
            arrays["mass_error"],
            {"long_name": "(sum S_gen - sum S_sim) / sum S_sim", "units": "1"},
        ),
        "V": (
            (s, "n_samples", f),
            arrays["V"],
            {"long_name": "variance of the mean of the first N samples, averaged over pixels", "units": "1"},
        ),
        "V_ratio": (
            (s, "n_samples", f),
            metrics.variance_ratio(arrays["V"]),
            {"long_name": "V(N) / V(2), V(2) from every pair of samples (s^2 of all samples / 2)", "units": "1"},
        ),
        "z_density": (
            (f, "z"),
            z_sum / np.maximum(n_z, 1) / np.diff(z_edges)[None, :],
            {"long_name": "density of the standardized pixel errors (S_gen - S_sim) / sigma_gen, all test maps"},
        ),
        "z_fraction": (
            (f, "within"),
            z_in[:, 1:] / np.maximum(n_z, 1),
            {"long_name": "fraction of pixels with |z| below 1 and 2"},
        ),
        "z_pixels": ((f,), z_in[:, 0].astype(np.int64), {"long_name": "pixels with sigma_gen > 0"}),
    }


def _metric_coords(samples: xr.Dataset, bins: _Bins, cfg: EvalConfig, n_samp: int) -> dict:
    """The evaluation store's coordinates: the sample store's sightlines with their mass bin, and the bins."""
    kb, edges, z_edges = bins.kb, bins.edges, bins.z_edges
    mass = samples["M200m_Msun"].values
    s, f, k, r = "sightline", "field", "k", "radius"
    return {
        s: samples[s].values,
        "sightline_id": (s, samples["sightline_id"].values),
        "halo_id": (s, samples["halo_id"].values),
        "M200m_Msun": (s, mass, {"units": "Msun"}),
        "mass_bin": (s, mass_bin_labels(mass, cfg.mass_bins).astype(object)),
        f: np.array(TARGETS, dtype=object),
        "input": np.array(INPUTS, dtype=object),
        k: (k, kb.centres, {"units": "h/Mpc", "long_name": "bin centre"}),
        "k_mean": (k, kb.k_mean, {"units": "h/Mpc", "long_name": "mean |k| of the modes in the bin"}),
        "n_modes": (k, kb.n_modes),
        r: (r, 0.5 * (edges[1:] + edges[:-1]), {"units": "Mpc"}),
        "radius_lo": (r, edges[:-1], {"units": "Mpc"}),
        "radius_hi": (r, edges[1:], {"units": "Mpc"}),
        "n_samples": np.arange(2, n_samp + 1),
        "z": 0.5 * (z_edges[1:] + z_edges[:-1]),
        "within": [1, 2],
    }


def _metric_attrs(
    samples: xr.Dataset, dataset: xr.Dataset, bins: _Bins, cfg: EvalConfig, h: float, n_samp: int
) -> dict:
    """The evaluation store's attributes: the choices that the tables and figures read back."""
    kb = bins.kb
    return {
        "massmaps_version": __version__,
        "k_unit": kb.unit,
        "k_fundamental": kb.k_fundamental,
        "k_split": cfg.k_split_h_per_Mpc,
        "k_length_unit": cfg.k_length_unit,
        "k_two_pi": int(cfg.k_two_pi),
        "h": h,
        "pixel_Mpc": bins.pixel,
        "convergence_threshold": cfg.convergence_threshold,
        "mass_bins": repr({k_: list(v) for k_, v in cfg.mass_bins.items()}),
        "n_posterior_samples": n_samp,
        "sampler": str(samples.attrs.get("sampler", "")),
        "config_hash": str(dataset.attrs.get("config_hash", "")),
    }


def _calibration_arrays(n_map: int, n_samp: int, nf: int) -> dict[str, np.ndarray]:
    annuli = calibration.SUMMARY_ANNULI
    return {
        "rank_counts": np.zeros((n_map, nf, n_samp + 1), np.int64),
        "mass_rank": np.zeros((n_map, nf), np.int64),
        "z_sum": np.zeros((n_map, nf)),
        "z_sq": np.zeros((n_map, nf)),
        "z_n": np.zeros((n_map, nf), np.int64),
        "summary_gen": np.zeros((n_map, n_samp, nf, annuli)),
        "summary_sim": np.zeros((n_map, nf, annuli)),
    }


def _fill_calibration(cal: dict, sl: slice, draws: np.ndarray, truth: np.ndarray, pixel: float) -> None:
    """The per-map calibration primitives (:func:`massmaps.evaluation.calibration.map_statistics`) of a chunk
    of maps."""
    for j, m in enumerate(range(sl.start, sl.stop)):
        for i in range(truth.shape[1]):
            stats = calibration.map_statistics(draws[j, :, i], truth[j, i])
            for key in ("rank_counts", "mass_rank", "z_sum", "z_sq", "z_n"):
                cal[key][m, i] = stats[key]
    cal["summary_gen"][sl] = calibration.summary_vector(draws, pixel)
    cal["summary_sim"][sl] = calibration.summary_vector(truth, pixel)


def _calibration_variables(cal: dict) -> dict:
    s, f = "sightline", "field"
    return {
        "rank_counts": (
            (s, f, "rank"),
            cal["rank_counts"],
            {"long_name": "pixels of the map whose truth has each rank among the posterior samples"},
        ),
        "mass_rank": ((s, f), cal["mass_rank"], {"long_name": "rank of the true total mass among the samples' totals"}),
        "z_sum": ((s, f), cal["z_sum"], {"long_name": "sum over the map's pixels of z = (truth - mean) / std"}),
        "z_sq": ((s, f), cal["z_sq"], {"long_name": "sum over the map's pixels of z^2"}),
        "z_n": ((s, f), cal["z_n"], {"long_name": "pixels with std > 0"}),
        "summary_gen": (
            (s, "sample", f, "annulus"),
            cal["summary_gen"],
            {"long_name": "log10 radial profile of each sample in annuli (TARP's summary)"},
        ),
        "summary_sim": (
            (s, f, "annulus"),
            cal["summary_sim"],
            {"long_name": "log10 radial profile of the simulated map in annuli (TARP's summary)"},
        ),
    }


def linear_baselines(
    dataset: xr.Dataset, cfg: EvalConfig | Mapping | None = None, *, h: float = 0.7, source: str = ""
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The linear baselines of the data before any learning: r(k) between each input (SZ, X-ray) and each
    target (gas, DM) map, over every map of ``dataset`` (all splits), per mass bin of ``cfg``.

    Returns ``(per_k, per_scale)``: per (mass bin, input, target, k) the mean over maps with 16/84
    percentile offsets; and the same for the per-map mean over the large (k < k_split) and small scales.
    """
    cfg = cfg if isinstance(cfg, EvalConfig) else EvalConfig.from_mapping(cfg)
    fields = [str(f) for f in dataset["field"].values]
    missing = [f for f in (*INPUTS, *TARGETS) if f not in fields]
    if missing:
        raise ValueError(f"the dataset has no {missing} maps (fields: {fields}); the baselines need {INPUTS + TARGETS}")
    kb = metrics.KBins(
        int(dataset.sizes["x"]),
        float(dataset.attrs["pixel_Mpc"]),
        h=h,
        length_unit=cfg.k_length_unit,
        two_pi=cfg.k_two_pi,
    )
    maps = dataset["maps"].values.astype(np.float64)
    require_finite(maps, "dataset maps", dataset["sightline_id"].values, source)
    labels = mass_bin_labels(dataset["M200m_Msun"].values, cfg.mass_bins)
    r = np.empty((len(INPUTS), len(TARGETS), maps.shape[0], len(kb.centres)))
    for i, inp in enumerate(INPUTS):
        for t, tgt in enumerate(TARGETS):
            _, r[i, t] = metrics.bias_and_correlation(maps[:, fields.index(inp)], maps[:, fields.index(tgt)], kb)
            require_finite(r[i, t], f"baseline r(k) of {inp} against {tgt}", dataset["sightline_id"].values, source)
    bins = [b for b in cfg.mass_bins if (labels == b).any()] + ["all"]
    per_k, per_scale = [], []
    for mb in bins:
        sel = np.ones(labels.size, bool) if mb == "all" else labels == mb
        for i, inp in enumerate(INPUTS):
            for t, tgt in enumerate(TARGETS):
                key = {"mass_bin": mb, "input": inp, "target": tgt, "n_maps": int(sel.sum())}
                for j, kc in enumerate(kb.centres):
                    per_k.append({**key, "k": float(kc), **metrics.mean_with_offsets(r[i, t, sel, j])})
                for scale in ("large", "small"):
                    avg = metrics.scale_average(r[i, t, sel], kb, cfg.k_split_h_per_Mpc, scale)
                    per_scale.append({**key, "scale": scale, **metrics.mean_with_offsets(avg)})
    return pd.DataFrame(per_k), pd.DataFrame(per_scale)
