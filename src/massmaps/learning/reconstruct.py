"""Store-level drivers: train on the dataset store, and draw posterior samples into a store.

These glue :mod:`massmaps.learning.split`, :mod:`massmaps.learning.normalise`, :mod:`massmaps.learning.training` and
:mod:`massmaps.learning.samplers` to the assembled zarr dataset; the workflow's rules call them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import __version__, store
from ..files import atomic_path, write_text_atomic
from ..store import INPUTS, TARGETS
from . import distributed, normalise, samplers, score
from .normalise import Normaliser
from .training import TrainConfig, train
from .training_data import ZarrMapsDataset

log = logging.getLogger(__name__)


PRIOR_MEANS = ("none", "field", "pixel")


def prior_mean_for(prior_mean: str, ds: xr.Dataset, splits: pd.DataFrame | None, norm: Normaliser) -> np.ndarray | None:
    """The sampler's prior centre for ``prior_mean`` (``PRIOR_MEANS``): None for ``none``, else the
    training mean of the normalised targets, per field (C,) or per pixel (C, H, W)."""
    if prior_mean not in PRIOR_MEANS:
        raise ValueError(f"prior_mean must be one of {PRIOR_MEANS}, got {prior_mean!r}")
    if prior_mean == "none":
        return None
    if splits is None:
        raise ValueError(f"prior_mean={prior_mean!r} needs the splits table (the training sightlines)")
    train = splits.loc[splits["split"] == "train", "index"].to_numpy()
    return normalise.training_mean(ds, train, norm, TARGETS, per_pixel=prior_mean == "pixel")


def normalised_pairs(maps: xr.DataArray, norm: Normaliser) -> tuple[np.ndarray, np.ndarray]:
    """The (target, input) maps of a store's ``maps`` (sightline, field, y, x) in the model's normalised
    units: float32 (sightline, len(TARGETS), y, x) and (sightline, len(INPUTS), y, x)."""
    targets = norm.apply(maps.sel(field=list(TARGETS)).values, TARGETS, field_axis=1)
    inputs = norm.apply(maps.sel(field=list(INPUTS)).values, INPUTS, field_axis=1)
    return targets, inputs


def normalisation_kwargs(block: Mapping | None) -> dict:
    """The keyword arguments of :func:`massmaps.learning.normalise.fit_normaliser` from a config's
    ``normalisation`` block (its keys, with the schema's defaults where one is left out)."""
    block = dict(block or {})
    bad = set(block) - {"stretch", "log_decades", "asinh_scale_factor"}
    if bad:
        raise ValueError(f"unknown normalisation key(s) {sorted(bad)}; valid: stretch, log_decades, asinh_scale_factor")
    return {
        "stretch": block.get("stretch", "none"),
        "log_decades": block.get("log_decades", 6.0),
        "asinh_scale_factor": block.get("asinh_scale_factor", 1.0),
    }


def train_from_store(
    store_path: str | os.PathLike,
    splits: pd.DataFrame,
    model_dir: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    *,
    training: Mapping,
    normalisation: Mapping | None = None,
    progress: bool = True,
    budget_start: float | None = None,
    provenance: Mapping | None = None,
):
    """Fit the normalisation on the training split, then train (or resume) the score model.

    ``normalisation``: the config's block (``stretch``, ``log_decades``, ``asinh_scale_factor``; a key left out
    takes the schema's default; ``None``: the paper's linear min-max).
    ``training["time_budget_s"]`` counts from ``budget_start`` (``time.monotonic()``; default: when
    training starts, after the normalisation). ``provenance`` (the run's cosmology, observe block and
    training hash) joins the model's data record (:func:`data_record`), which ``massmaps predict`` reads.
    """
    ds = store.open_store(store_path)
    train_idx = splits.loc[splits["split"] == "train", "index"].to_numpy()
    val_idx = splits.loc[splits["split"] == "val", "index"].to_numpy()
    if train_idx.size == 0:
        raise ValueError(f"{store_path}: the training split is empty; use more sightlines or other split fractions")
    try:
        normaliser = normalise.fit_normaliser(ds, train_idx, **normalisation_kwargs(normalisation))
    except ValueError as err:
        raise ValueError(f"{store_path}: {err}{_first_nonfinite(ds, train_idx)}") from err
    log.info("normalisation (training split, %d sightlines): %s", train_idx.size, normaliser.to_dict())
    training = dict(training)
    if training.get("preconditioning") == "edm" and training.get("sigma_data") is None:
        training["sigma_data"] = normalise.training_std(ds, train_idx, normaliser)
        log.info("sigma_data (std of the normalised training targets): %.4g", training["sigma_data"])
    config = TrainConfig.from_dict({**training, "progress": progress})
    train_ds = ZarrMapsDataset(store_path, train_idx, normaliser, inputs=INPUTS, targets=TARGETS)
    val_ds = ZarrMapsDataset(store_path, val_idx, normaliser, inputs=INPUTS, targets=TARGETS) if val_idx.size else None
    result = train(
        model_dir,
        train_ds,
        val_ds,
        config=config,
        checkpoint_dir=checkpoint_dir,
        normaliser=normaliser,
        log=log.info,
        budget_start=budget_start,
    )
    if distributed.current().main:  # rank 0 alone writes (one process: always)
        score.update_metadata(model_dir, {"data": data_record(ds, provenance or {})})
    return result


def data_record(ds: xr.Dataset, provenance: Mapping) -> dict:
    """What applying a model to new images needs: the grid, the input units, the cosmology, the observe
    block (and the exposure counts were made with) and the hashes of the data and the model."""
    from ..observe.instruments import from_config

    units = dict(zip((str(f) for f in ds["field"].values), (str(u) for u in ds["units"].values)))
    observe = dict(provenance.get("observe") or {})
    xray = from_config(observe)[1] if observe else None
    return {
        "npix": int(ds.attrs["npix"]),
        "pixel_Mpc": float(ds.attrs["pixel_Mpc"]),
        "config_hash": str(ds.attrs.get("config_hash", "")),
        "inputs": {f: units[f] for f in INPUTS},
        "targets": {f: units[f] for f in TARGETS},
        "cosmology": dict(provenance.get("cosmology") or {}),
        "observe": observe,
        "observe_exposure_s": xray.exposure_s if xray is not None and xray.output == "counts" else None,
        "training_hash": provenance.get("training_hash"),
    }


def _first_nonfinite(ds: xr.Dataset, index: np.ndarray, chunk_size: int = 256) -> str:
    """' (first non-finite map: sightline_id N)' among the sightlines ``index`` of ``ds``, or ''."""
    index = np.sort(np.asarray(index))
    for start in range(0, index.size, chunk_size):
        part = index[start : start + chunk_size]
        finite = np.isfinite(ds["maps"].isel(sightline=part).values).reshape(part.size, -1).all(axis=1)
        if not finite.all():
            return f" (first non-finite map: sightline_id {int(ds['sightline_id'].values[part[~finite][0]])})"
    return ""


def sample_from_store(
    model_dir: str | os.PathLike,
    store_path: str | os.PathLike,
    splits: pd.DataFrame,
    *,
    which: str = "test",
    eval_range_only: bool = True,
    n_samples: int = 50,
    sampler: str = "dpmpp_2m_sde",
    steps: int | None = None,
    batch_size: int = 50,
    seed: int = 0,
    device: str = "auto",
    sampler_kwargs: Mapping | None = None,
    prior_mean: str = "none",
    progress: bool = True,
    resume_dir: str | os.PathLike | None = None,
    groups: int = 1,
    group: int = 0,
    precision: str = "float32",
    compile: bool | str = False,
) -> xr.Dataset:
    """Posterior samples of (gas, dm) for the sightlines of one split, in physical units.

    ``groups`` > 1: only group ``group`` of the split's sightlines (:func:`sampling_group`), for one of
    several jobs; the stores of groups 0 .. groups-1, opened together (``store.open_store([...])``), hold
    the same bytes as the store of one job, and each says which group it holds (``store.GROUP_ATTR``).

    ``prior_mean`` centres the sampler's prior N(., sigma_max^2): ``none`` on zero (score_models, the
    paper), ``field`` on each target's mean over the training split, ``pixel`` on its mean map (all in
    normalised units; see :func:`massmaps.learning.samplers.draw_posterior_samples`).

    ``resume_dir``: each sightline's samples are also written there, atomically, as soon as they are
    drawn, in a folder keyed by the model's bytes and every argument that shapes the samples; a run that
    was killed picks up the sightlines already written (the samples of a sightline depend only on the
    seed and its sightline_id, so the result is the same bytes as an uninterrupted run). The caller
    removes the folder once the result is safely stored (:func:`clear_resume`).

    ``precision`` ("float32" or "bf16") and ``compile`` (false, true or a torch.compile backend): how the
    network is evaluated (:meth:`massmaps.learning.score.Denoiser.configured`), set up once for all
    sightlines.

    Returns a Dataset with ``samples`` (sightline, sample, field, y, x) and the per-pixel ``mean`` and
    ``std`` (ddof=1) over samples, with the dataset's sightline coordinates. Non-finite samples raise
    ValueError naming the model and the sightline.
    """
    rows = sampling_group(_split_rows(splits, which, eval_range_only), group, groups)
    ds = store.open_store(store_path)
    trained = score.load_model(model_dir, device=device)
    denoiser = trained.denoiser.configured(precision, compile)
    norm = trained.normaliser
    steps = samplers.get_sampler(sampler).default_steps if steps is None else int(steps)
    parts = None
    if resume_dir is not None:
        # the network's evaluation enters the key only when it is not the default (older folders keep theirs)
        evaluation = {"precision": precision, "compile": compile} if precision != "float32" or compile else {}
        parts = Path(resume_dir) / resume_key(
            model_dir,
            ds,
            split=which,
            n_samples=n_samples,
            sampler=sampler,
            steps=steps,
            seed=seed,
            sampler_kwargs=sampler_kwargs,
            prior_mean=prior_mean,
            **evaluation,
        )
        parts.mkdir(parents=True, exist_ok=True)
    mu = prior_mean_for(prior_mean, ds, splits, norm)
    index = rows["index"].to_numpy()
    ids = rows["sightline_id"].to_numpy()
    inputs = ds["maps"].isel(sightline=index).sel(field=list(INPUTS)).values
    cond = norm.apply(inputs, INPUTS, field_axis=1)
    out = np.empty((index.size, n_samples, len(TARGETS), *inputs.shape[-2:]), dtype=np.float32)
    resumed = _draw_sightlines(
        out,
        denoiser,
        norm,
        cond,
        ids,
        parts,
        progress=progress,
        model_dir=model_dir,
        store_path=store_path,
        n_samples=n_samples,
        sampler=sampler,
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        sampler_kwargs=sampler_kwargs,
        prior_mean=mu,
    )
    if resumed:
        log.info("%d of %d sightlines taken from %s (an earlier, interrupted run)", resumed, index.size, parts)
    attrs = {
        "massmaps_version": __version__,
        "split": which,
        "sampler": sampler,
        "steps": steps,
        "nfe_per_sample": samplers.nfe(sampler, steps),
        "sampler_kwargs": json.dumps(dict(sampler_kwargs or {}), sort_keys=True),  # beyond the solver's defaults
        "prior_mean": prior_mean,
        "precision": precision,
        "compile": compile,
        "seed": int(seed),
        "config_hash": ds.attrs.get("config_hash", ""),
    }
    if groups > 1:
        attrs[store.GROUP_ATTR] = f"{group} of {groups}"
    return _samples_dataset(ds.isel(sightline=index), out, attrs)


def sampling_group(rows: pd.DataFrame, group: int, groups: int) -> pd.DataFrame:
    """Group ``group`` of ``groups`` contiguous, near-equal runs of ``rows`` (in their order, that of the
    splits table): concatenated in group order they are ``rows`` again. Each group must hold a sightline."""
    if not (isinstance(groups, (int, np.integer)) and groups >= 1 and 0 <= group < groups):
        raise ValueError(
            f"sampling.groups must be an integer >= 1 and the group in [0, groups), got {group} of {groups}"
        )
    if groups > len(rows):
        raise ValueError(
            f"sampling.groups is {groups} but there are only {len(rows)} sightlines to sample; "
            f"expected at most {len(rows)} groups"
        )
    return rows.iloc[np.array_split(np.arange(len(rows)), groups)[group]] if groups > 1 else rows


def _split_rows(splits: pd.DataFrame, which: str, eval_range_only: bool) -> pd.DataFrame:
    """The rows of the splits table to sample: split ``which``, within the evaluation mass range if asked."""
    rows = splits[splits["split"] == which]
    if eval_range_only:
        rows = rows[rows["in_eval_range"]]
    if rows.empty:
        raise ValueError(
            f"no sightlines in split {which!r}" + (" within the evaluation mass range" if eval_range_only else "")
        )
    return rows


def _draw_sightlines(
    out: np.ndarray,
    denoiser: score.Denoiser,
    norm,
    cond: np.ndarray,
    ids: np.ndarray,
    parts: Path | None,
    *,
    progress: bool,
    model_dir: str | os.PathLike,
    store_path: str | os.PathLike,
    n_samples: int,
    sampler: str,
    steps: int,
    batch_size: int,
    seed: int,
    sampler_kwargs: Mapping | None,
    prior_mean: np.ndarray | None,
) -> int:
    """Fill ``out`` (sightline, sample, field, y, x) with each sightline's samples in physical units, taken
    from ``parts`` where an earlier run wrote them, else drawn (and written there); returns how many were
    taken. Non-finite samples raise ValueError naming ``model_dir``, the sightline and ``store_path``."""
    from tqdm.auto import tqdm

    resumed = 0
    # one sightline at a time keeps memory flat and shows progress; seeds depend only on (seed, sightline_id)
    for k in tqdm(range(len(ids)), desc="posterior", unit="sightline", disable=not progress):
        part = parts / f"sightline_{int(ids[k])}.npy" if parts is not None else None
        if part is not None and _load_part(part, out[k]):
            resumed += 1
            continue
        u = samplers.draw_posterior_samples(
            denoiser,
            cond[k : k + 1],
            n_samples,
            sampler=sampler,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            sightline_ids=[int(ids[k])],
            sampler_kwargs=dict(sampler_kwargs or {}),
            prior_mean=prior_mean,
        )
        out[k] = norm.invert(u[0], TARGETS, field_axis=1)
        if not np.isfinite(out[k]).all():
            raise ValueError(
                f"{model_dir}: non-finite posterior samples for sightline_id {int(ids[k])} of {store_path}"
            )
        if part is not None:
            _save_part(part, out[k])
    return resumed


def _samples_dataset(sub: xr.Dataset, out: np.ndarray, attrs: dict) -> xr.Dataset:
    """The sample store: ``out`` (sightline, sample, field, y, x) with its mean and std over samples, and the
    sightline coordinates of ``sub``, the dataset's sampled sightlines."""
    n_samples = out.shape[1]
    coords = {name: ("sightline", sub[name].values) for name in sub.coords if sub[name].dims == ("sightline",)}
    coords.update(
        sample=np.arange(n_samples),
        field=("field", np.array(TARGETS, dtype=object)),
        units=("field", np.array([str(sub["units"].sel(field=f).values) for f in TARGETS], dtype=object)),
        y=sub["y"],
        x=sub["x"],
    )
    dims = ("sightline", "sample", "field", "y", "x")
    return xr.Dataset(
        {
            "samples": (dims, out, {"long_name": "posterior samples, physical units per field"}),
            "mean": (dims[:1] + dims[2:], out.mean(axis=1), {"long_name": f"mean of {n_samples} samples"}),
            "std": (
                dims[:1] + dims[2:],
                out.std(axis=1, ddof=1) if n_samples > 1 else np.zeros_like(out[:, 0]),
                {"long_name": f"per-pixel standard deviation of {n_samples} samples (ddof=1)"},
            ),
        },
        coords=coords,
        attrs=attrs,
    )


def resume_key(model_dir: str | os.PathLike, ds: xr.Dataset, **sampling) -> str:
    """Name of the folder of resumable per-sightline samples: a hash of the model's files, the dataset's
    config hash and the sampling arguments."""
    import hashlib

    digest = hashlib.sha256()
    for f in sorted(p for p in Path(model_dir).rglob("*") if p.is_file() and p.name != ".snakemake_timestamp"):
        digest.update(f.relative_to(model_dir).as_posix().encode())
        digest.update(f.read_bytes())
    return store.config_hash(
        {"model": digest.hexdigest(), "data": ds.attrs.get("config_hash", ""), "version": __version__, **sampling}
    )


def _save_part(path: Path, samples: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, samples)


def _load_part(path: Path, out: np.ndarray) -> bool:
    """Fill ``out`` from a sightline written by an earlier run; False when there is none (or it is unusable)."""
    if not path.is_file():
        return False
    try:
        part = np.load(path)
    except (OSError, ValueError) as err:
        log.warning("%s: unreadable (%s); sampling that sightline again", path, err)
        return False
    if part.shape != out.shape or part.dtype != out.dtype or not np.isfinite(part).all():
        log.warning("%s: shape %s %s or non-finite values; sampling that sightline again", path, part.shape, part.dtype)
        return False
    out[...] = part
    return True


def clear_resume(resume_dir: str | os.PathLike) -> None:
    """Remove the resumable per-sightline samples once the sample store is written."""
    import shutil

    shutil.rmtree(resume_dir, ignore_errors=True)


def evaluate_samples(samples: xr.Dataset, dataset: xr.Dataset) -> dict:
    """Posterior-mean quality of a sample store against the dataset's truth and inputs."""
    pos = pd.Index(dataset["sightline_id"].values).get_indexer(samples["sightline_id"].values)
    if (pos < 0).any():
        raise ValueError("the sample store holds sightlines that the dataset lacks")
    maps = dataset["maps"].isel(sightline=pos)
    truth = {f: maps.sel(field=f).values for f in TARGETS}
    inputs = {f: maps.sel(field=f).values for f in INPUTS}
    mean = {f: samples["mean"].sel(field=f).values for f in TARGETS}
    std = {f: samples["std"].sel(field=f).values for f in TARGETS}
    from ..evaluation.metrics import posterior_summary

    summary = posterior_summary(mean, std, truth, inputs)
    summary["n_sightlines"] = int(samples.sizes["sightline"])
    summary["n_samples"] = int(samples.sizes["sample"])
    summary["sampler"] = {k: samples.attrs.get(k) for k in ("sampler", "steps", "nfe_per_sample", "seed")}
    return summary


def write_json_atomic(obj, path: str | os.PathLike) -> None:
    """JSON to ``path`` via a temporary file and a rename."""
    import json

    write_text_atomic(json.dumps(obj, indent=2, sort_keys=True, default=score.to_jsonable) + "\n", path)


def diffusion_trajectory(
    model_dir: str | os.PathLike,
    store_path: str | os.PathLike,
    samples_path: str | os.PathLike,
    *,
    levels: Sequence[float] = (0.0, 0.01, 0.05, 0.2, 1.0),
    sampler: str = "dpmpp_2m_sde",
    steps: int | None = None,
    sampler_kwargs: Mapping | None = None,
    seed: int = 0,
    device: str = "auto",
    prior_mean: str = "none",
    splits: pd.DataFrame | None = None,
) -> xr.Dataset:
    """The trained model's forward and reverse SDE on one test sightline, for the paper's Fig. 3.

    ``prior_mean`` as in :func:`sample_from_store` (``field`` and ``pixel`` need the ``splits`` table).

    The sightline is the median-mass one of the sample store. Forward: x_sigma = x_0 + sigma z in
    normalised units (one z, seeded). Reverse: one posterior draw with the configured sampler, its state
    recorded where the schedule first reaches each level (sigma = 0: the final sample).
    """
    import torch

    smp = store.open_store(samples_path)
    k = int(np.argsort(smp["M200m_Msun"].values)[smp.sizes["sightline"] // 2])
    sid = int(smp["sightline_id"].values[k])
    ds = store.open_store(store_path)
    pos = int(pd.Index(ds["sightline_id"].values).get_loc(sid))
    trained = score.load_model(model_dir, device=device)
    norm = trained.normaliser
    targets, cond = normalised_pairs(ds["maps"].isel(sightline=[pos]), norm)
    x0 = targets[0]
    levels = np.sort(np.asarray(levels, dtype=np.float64))
    gen = torch.Generator().manual_seed(samplers.sample_seed(seed, sid, 0))
    denoiser = trained.denoiser
    z = denoiser.colour(torch.randn(x0.shape, generator=gen, dtype=torch.float64)).numpy()
    forward = np.stack([x0 + s * z for s in levels]).astype(np.float32)

    solver, sigmas, kwargs = samplers.solver_setup(sampler, denoiser, steps, sampler_kwargs)
    states: list[tuple[float, np.ndarray]] = []
    dev = denoiser.device
    # the sampler's own start for sample 1 of this sightline (sample 0's seed drew the forward noise)
    x, generators = samplers.start_noise(
        [(sid, 1)],
        (len(TARGETS), *x0.shape[-2:]),
        seed,
        float(sigmas[0]),
        prior_mean_for(prior_mean, ds, splits, norm),
        dev,
        denoiser,
    )
    states.append((float(sigmas[0]), x[0].cpu().numpy()))
    cb = lambda st: states.append((float(sigmas[st["i"] + 1]), st["x"][0].cpu().numpy()))  # noqa: E731
    denoiser.net.eval()
    with torch.no_grad():
        solver(
            denoiser,
            x,
            sigmas,
            cond=torch.as_tensor(cond, dtype=torch.float32, device=dev),
            generator=generators,
            callback=cb,
            **kwargs,
        )
    state_sigmas = np.array([s for s, _ in states])
    # the first recorded state at or below each level (the start for a level at or above sigma_max)
    reverse = np.stack([states[int(np.nonzero(state_sigmas <= lv + 1e-12)[0][0])][1] for lv in levels]).astype(
        np.float32
    )
    reached = np.array([state_sigmas[int(np.nonzero(state_sigmas <= lv + 1e-12)[0][0])] for lv in levels])
    return xr.Dataset(
        {
            "forward": (("level", "field", "y", "x"), forward, {"long_name": "x0 + sigma z, normalised units"}),
            "reverse": (("level", "field", "y", "x"), reverse, {"long_name": "sampler state, normalised units"}),
        },
        coords={
            "level": np.arange(len(levels)),
            "sigma": ("level", levels),
            "sigma_reached": ("level", reached),
            "field": list(TARGETS),
            "y": ds["y"].values,
            "x": ds["x"].values,
        },
        attrs={
            "sightline_id": sid,
            "M200m_Msun": float(smp["M200m_Msun"].values[k]),
            "sampler": sampler,
            "steps": len(sigmas) - 1,
            "seed": int(seed),
            "prior_mean": prior_mean,
        },
    )
