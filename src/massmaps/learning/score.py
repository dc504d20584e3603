"""The one module between score_models (0.5.11) and the workflow.

It owns what score_models leaves to its caller or gets wrong (see docs/samplers.md):

- building the conditional NCSN++ of the paper (section 3.2: 2 target channels gas/dm conditioned by
  concatenation on 2 input channels tSZ/X-ray, 2 residual blocks per resolution) with every keyword
  checked against ``NCSNpp.__init__`` (NCSNpp swallows misspelled keywords in ``**kwargs``);
- the VE SDE with sigma_min = 1e-3 and sigma_max = 1 passed as keywords, so that they are part of
  ``model_hparams.json``;
- the device (``"auto"`` means CUDA when ``torch.cuda.is_available()``; never read from environment
  variables or from score_models' global ``DEVICE``);
- the sigma-to-t adapter and the denoiser ``D(x; sigma, y)`` that the samplers use;
- saving and loading a trained model (weights, hyper-parameters, normalisation) in one directory,
  written atomically.

Convention (read from score_models' ``dsm.py`` and ``score_model.py``): the VE SDE has
sigma(t) = sigma_min (sigma_max / sigma_min)^t, the loss is ||z + f(t, x + sigma z, y)||^2, so the
network output is f = -E[z | x_t] = sigma * score and ``ScoreModel.score = f / sigma``. Tweedie's
formula E[x_0 | x_t] = x_t + sigma^2 score then gives D(x; sigma, y) = x + sigma f(t(sigma), x, y).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import json
import math
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from score_models import NCSNpp, ScoreModel

from .normalise import Normaliser

SIGMA_MIN = 1e-3  # paper section 3.2
SIGMA_MAX = 1.0  # "the largest intensity of our images"

# The paper's model; the remaining NCSNpp keywords keep score_models' defaults unless configured.
PAPER_NCSNPP = {
    "channels": 2,  # gas, dm
    "condition": ["input"],
    "condition_input_channels": 2,  # tsz, xray
    "num_res_blocks": 2,
    "dimensions": 2,
}

HPARAMS_FILE = "model_hparams.json"  # score_models' name: ScoreModel(checkpoints_directory=...) loads it
WEIGHTS_FILE = "checkpoint_001.pt"  # score_models' pattern "checkpoint*.pt"
NORMALISATION_FILE = "normalisation.json"
META_FILE = "massmaps_model.json"
MODEL_FORMAT = "massmaps-score-model"
MODEL_FORMAT_VERSION = 1

# Keys score_models adds to the hyper-parameters next to the network's own.
_SDE_KEYS = {"sde", "sigma_min", "sigma_max", "T", "epsilon", "model_architecture"}


# ------------------------------------------------------------------------------------ building
def ncsnpp_keywords() -> tuple[str, ...]:
    """The keyword names NCSNpp.__init__ really takes (not its catch-all ``**kwargs``)."""
    params = inspect.signature(NCSNpp.__init__).parameters.values()
    return tuple(p.name for p in params if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))


def check_ncsnpp_kwargs(kwargs: Mapping[str, Any]) -> None:
    """Raise ValueError naming every keyword NCSNpp would silently ignore."""
    valid = ncsnpp_keywords()
    bad = sorted(set(kwargs) - set(valid))
    if bad:
        raise ValueError(f"unknown NCSNpp keyword(s) {bad}; valid keywords: {sorted(valid)}")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" -> cuda if torch.cuda.is_available() else cpu; anything else is passed to torch."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def build_score_model(
    network: Mapping[str, Any] | None = None,
    *,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    device: str | torch.device = "auto",
) -> ScoreModel:
    """The conditional NCSN++ with the VE SDE, on ``device``.

    ``network`` holds NCSNpp keywords (e.g. nf, ch_mult, attention, fir); they override
    ``PAPER_NCSNPP`` and are checked against NCSNpp's signature.
    """
    kwargs = dict(PAPER_NCSNPP)
    kwargs.update(network or {})
    check_ncsnpp_kwargs(kwargs)
    if "ch_mult" in kwargs:
        kwargs["ch_mult"] = tuple(int(c) for c in kwargs["ch_mult"])
    if not (0 < sigma_min < sigma_max and math.isfinite(sigma_max)):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    dev = resolve_device(device)
    net = NCSNpp(**kwargs)
    return ScoreModel(model=net, sde="ve", sigma_min=float(sigma_min), sigma_max=float(sigma_max), device=dev)


def network_kwargs(hyperparameters: Mapping[str, Any]) -> dict:
    """The NCSNpp part of a ScoreModel's hyper-parameters (as saved in model_hparams.json)."""
    valid = set(ncsnpp_keywords())
    return {k: v for k, v in hyperparameters.items() if k in valid}


def image_multiple(model: ScoreModel) -> int:
    """Map sides must be multiples of this (one halving per extra level of ch_mult)."""
    return 2 ** (len(model.model.hyperparameters["ch_mult"]) - 1)


# ---------------------------------------------------------------------------- sigma <-> t, D(x)
def sigma_to_t(sigma, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX):
    """t(sigma) = ln(sigma / sigma_min) / ln(sigma_max / sigma_min), the inverse of VESDE.sigma."""
    if isinstance(sigma, torch.Tensor):
        return torch.log(sigma / sigma_min) / math.log(sigma_max / sigma_min)
    return math.log(sigma / sigma_min) / math.log(sigma_max / sigma_min)


def t_to_sigma(t, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX):
    """sigma(t) = sigma_min (sigma_max / sigma_min)^t, as score_models' VESDE (T = 1)."""
    if isinstance(t, torch.Tensor):
        return sigma_min * torch.exp(t * math.log(sigma_max / sigma_min))
    return sigma_min * math.exp(t * math.log(sigma_max / sigma_min))


PRECONDITIONINGS = ("score_models", "edm")
#: Distributions of the training noise levels of the edm loss: log_uniform on [sigma_min, sigma_max] (what
#: score_models' uniform t gives), or log_normal (EDM's p_train: ln sigma ~ N(ln(median sigma_data), width^2)).
SIGMA_TRAIN = ("log_uniform", "log_normal")


def training_sigmas(
    u: torch.Tensor,
    sigma_min: float,
    sigma_max: float,
    kind: str = "log_uniform",
    median: float | None = None,
    width: float | None = None,
) -> torch.Tensor:
    """Training noise levels from uniform draws ``u`` in (0, 1): log-uniform on [sigma_min, sigma_max], or
    log-normal with the given ``median`` and ``width`` (std of ln sigma) through the inverse normal CDF, so
    that both consume the same random draws; log-normal levels are clipped to [sigma_min, sigma_max], the
    range the network's noise embedding covers."""
    if kind == "log_uniform":
        return t_to_sigma(u, sigma_min, sigma_max)
    if kind != "log_normal":
        raise ValueError(f"the training noise distribution must be one of {SIGMA_TRAIN}, got {kind!r}")
    if not (median and median > 0 and width and width > 0):
        raise ValueError(
            f"a log_normal training noise distribution needs median > 0 and width > 0, got {median!r}, {width!r}"
        )
    u = u.clamp(1e-12, 1 - 1e-12)
    return (math.log(median) + width * torch.special.ndtri(u)).exp().clamp(sigma_min, sigma_max)


#: The noise of the diffusion, as a linear map of white noise z (a draw of N(0, 1) per pixel): white (the
#: identity; score_models', EDM's and the paper's) or pyramid: z plus block means of z over 2x2, 4x4, ...
#: pixels, the level of blocks of side 2^i weighted discount^i, scaled so that every pixel keeps variance 1.
NOISES = ("white", "pyramid")


def pyramid_weights(levels: int, discount: float) -> tuple[list[float], float]:
    """The pyramid noise's weights c_i = discount^i of the terms 2^i x (2^i-block mean of z), i = 0 ..
    ``levels``, and the per-pixel std they give: the terms' covariance is 2^min / 2^max for nested blocks."""
    c = [discount**i for i in range(levels + 1)]
    var = sum(c[i] * c[j] * 2.0 ** -abs(i - j) for i in range(levels + 1) for j in range(levels + 1))
    return c, math.sqrt(var)


def colour_noise(z: torch.Tensor, kind: str = "white", discount: float = 0.0) -> torch.Tensor:
    """The diffusion's noise from white noise ``z`` (..., H, W) (see :data:`NOISES`).

    ``pyramid`` adds to z its means over blocks of 2^i x 2^i pixels (i = 1, 2, ... while 2^i divides H and
    W), each times 2^i (a unit-variance value per block) and discount^i, the whole divided by the per-pixel
    std of the sum (:func:`pyramid_weights`): the variance of a pixel stays 1 and the noise's coarse modes
    grow: on 32 x 32 maps at discount 0.8 the variance of a unit-norm pattern (1 with white noise) is about
    12 for the annulus 1.1-2.1 Mpc of the laptop maps and 126 for the map's mean.

    A linear map A of one white draw, so it consumes the random state as white noise does. The forward
    process x0 + sigma A z is a Gaussian diffusion whose probability-flow ODE in terms of the denoiser is
    the white one's, dx/dsigma = (x - D) / sigma, and whose reverse SDE draws A z where the white one draws
    z: the samplers draw their fresh and starting noise through this map and are otherwise unchanged. (The
    multi-resolution or pyramid noise of image diffusion models, there a heuristic of training alone.)
    """
    if kind == "white":
        return z
    if kind != "pyramid":
        raise ValueError(f"the diffusion noise must be one of {NOISES}, got {kind!r}")
    H, W = z.shape[-2:]
    levels = 0
    while H % 2 ** (levels + 1) == 0 and W % 2 ** (levels + 1) == 0 and 2 ** (levels + 1) <= min(H, W):
        levels += 1
    c, std = pyramid_weights(levels, float(discount))
    flat = z.reshape(-1, 1, H, W)
    out = flat.clone()
    for i in range(1, levels + 1):
        b = 2**i
        block = torch.nn.functional.avg_pool2d(flat, b) * b
        out = out + c[i] * torch.repeat_interleave(torch.repeat_interleave(block, b, dim=-2), b, dim=-1)
    return (out / std).reshape(z.shape)


#: Precisions of the network's forward pass: float32, or bfloat16 under torch.autocast (weights and the
#: sampler's or optimiser's state stay float32 / float64).
PRECISIONS = ("float32", "bf16")


#: What ``training.precision`` may say: a precision, or ``auto``: bf16 where the device computes bfloat16
#: natively (:func:`native_bf16`), float32 elsewhere (:func:`resolve_precision`).
PRECISION_CHOICES = (*PRECISIONS, "auto")


@functools.cache
def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 products natively: a CUDA GPU that supports it, or a CPU on which
    oneDNN has bfloat16 instructions (AVX-512 BF16 or AMX). Elsewhere (AVX2-only x86 CPUs, e.g. AMD Zen 3
    and older Intel) torch emulates them, and a bf16 training step ran 7 times slower than float32 on such
    a CPU (benchmarks/README.md, "throughput.py"). Asked once per device (the training step asks each time)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision a forward pass runs in: ``precision`` itself, or for ``auto`` bf16 where
    :func:`native_bf16` and float32 elsewhere."""
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "float32"


def precision_note(precision: str, device: torch.device | str) -> str | None:
    """A log line on what ``precision`` becomes on ``device``: what ``auto`` chose, or a warning that bf16
    is emulated there (slower than float32, never faster); None for float32 or native bf16."""
    native = native_bf16(device)
    kind = torch.device(device).type
    if precision == "auto":
        chosen = "bf16" if native else "float32"
        why = "computes bfloat16 natively" if native else "has no native bfloat16 arithmetic"
        return f"precision auto: {chosen} (this {kind} {why})"
    if precision == "bf16" and not native:
        lacking = " (no AVX-512 BF16 or AMX)" if kind == "cpu" else ""
        return (
            f"WARNING: precision bf16 on a {kind} without native bfloat16 arithmetic{lacking}: "
            "torch emulates it, several times slower than float32; set precision: auto or float32"
        )
    return None


def autocast(precision: str, device: torch.device | str):
    """The forward pass's precision: nothing changed for float32, bfloat16 autocast for bf16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def compiled(module: torch.nn.Module, backend: bool | str):
    """``module`` itself (``backend`` false), or through torch.compile: inductor (True) or a named backend
    (e.g. "aot_eager": the same graph capture without code generation)."""
    if not isinstance(backend, (bool, str)):
        raise ValueError(f"compile must be true, false or a torch.compile backend name, got {backend!r}")
    if not backend:
        return module
    return torch.compile(module, **({} if backend is True else {"backend": backend}))


class Denoiser:
    """D(x; sigma, y) over a score_models VE ScoreModel, in one of two parametrisations of the network F:

    * ``score_models`` (the paper's): D = x + sigma F(t(sigma), x, y), F = sigma * score;
    * ``edm`` (Karras et al. 2022, section 5 and table 1): D = c_skip x + c_out F(t(sigma), c_in x, y),
      c_skip = s^2 / (sigma^2 + s^2), c_out = sigma s / sqrt(sigma^2 + s^2), c_in = 1 / sqrt(sigma^2 + s^2)
      with s = ``sigma_data``: the network sees inputs and predicts targets of unit variance at every
      noise level, and at large sigma D no longer has to cancel x. The noise level enters NCSN++'s
      Fourier embedding as t(sigma) (EDM's c_noise, normalised to [0, 1] for that embedding).

    ``x`` may be float64 (the samplers accumulate in float64): the network is evaluated in its own
    dtype (float32) and the result is returned in the dtype of ``x``. ``sigma`` is a float, a
    0-d tensor or one value per batch row. Noise levels outside [sigma_min, sigma_max] are
    evaluated at t outside [0, 1], where the network was never trained: keep schedules inside.

    ``sigma_train = (kind, median, width)`` sets the noise levels of :meth:`loss` (:func:`training_sigmas`):
    kind ``log_uniform`` (the default; median and width unused) or, with edm only, ``log_normal`` with the
    median in units of ``sigma_data``. ``multiscale`` (edm only) adds the coarse scales' term of
    :func:`multiscale_error` to :meth:`loss`, with that weight (0: none). ``noise = (kind, discount)``
    (edm only) is the diffusion's noise (:func:`colour_noise`): :meth:`loss` trains on it and the samplers
    draw it through :meth:`colour`; a model must be sampled with the noise it was trained on. ``profile``
    (edm only) adds :func:`profile_error` over the annuli of TARP's summary (:func:`profile_modes`), with
    that weight (0: none).

    ``mean_correction = (sigmas, error)``: the network's mean error E[D(x0 + sigma n) - x0] on its training
    maps, per noise level in ``sigmas`` (increasing), field and pixel-wide radial bin about the map centre
    (``error`` (levels, C, bins), :func:`mean_error_profile`); D subtracts it, interpolated linearly in
    log sigma (clamped at the ends). A Bayes-optimal denoiser has no such error on the distribution it was
    trained on; a trained network keeps some (its weights' step-to-step noise moves the mean of coherent
    modes, and the EMA averages it out only in part), and the samplers carry it into every sample.
    """

    def __init__(
        self,
        score_model: ScoreModel,
        preconditioning: str = "score_models",
        sigma_data: float | None = None,
        sigma_train: tuple[str, float, float] = ("log_uniform", 0.6, 1.2),
        multiscale: float = 0.0,
        noise: tuple[str, float] = ("white", 0.0),
        profile: float = 0.0,
        mean_correction: tuple | None = None,
    ):
        sde = score_model.sde
        if type(sde).__name__ != "VESDE" or getattr(sde, "T", 1.0) != 1.0:
            raise ValueError(f"Denoiser needs a VE SDE with T = 1, got {type(sde).__name__}")
        if preconditioning not in PRECONDITIONINGS:
            raise ValueError(f"preconditioning must be one of {PRECONDITIONINGS}, got {preconditioning!r}")
        if preconditioning == "edm" and not (sigma_data and sigma_data > 0):
            raise ValueError(f"the edm preconditioning needs sigma_data > 0, got {sigma_data!r}")
        self.score_model = score_model
        self.net = score_model.model
        self.sigma_min = float(sde.sigma_min)
        self.sigma_max = float(sde.sigma_max)
        self.preconditioning = preconditioning
        self.sigma_data = float(sigma_data) if sigma_data else None
        self.precision = "float32"
        self.sigma_train = tuple(sigma_train)
        if self.sigma_train[0] != "log_uniform" and preconditioning != "edm":
            raise ValueError(f"a {self.sigma_train[0]} training noise distribution needs the edm preconditioning")
        self.multiscale = float(multiscale)
        self.noise = (str(noise[0]), float(noise[1]))
        if self.noise[0] not in NOISES:
            raise ValueError(f"the diffusion noise must be one of {NOISES}, got {self.noise[0]!r}")
        if self.noise[0] != "white" and preconditioning != "edm":
            raise ValueError(f"{self.noise[0]} noise needs the edm preconditioning")
        self.profile = float(profile)
        for name, given, weight in (("multiscale", multiscale, self.multiscale), ("profile", profile, self.profile)):
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"the {name} loss weight must be a number >= 0, got {given!r}")
            if weight and preconditioning != "edm":
                raise ValueError(f"a {name} loss needs the edm preconditioning (score_models' loss is its own)")
        self.mean_correction = None if mean_correction is None else _check_correction(*mean_correction)

    def configured(self, precision: str = "float32", compile: bool | str = False) -> Denoiser:
        """This denoiser with its network evaluated at ``precision`` (:data:`PRECISIONS`) and, with
        ``compile``, through torch.compile (:func:`compiled`); the same weights, shared, not copied."""
        autocast(precision, "cpu")  # checks the name
        other = copy.copy(self)
        other.precision = precision
        other.net = compiled(self.net, compile)
        return other

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def colour(self, z: torch.Tensor) -> torch.Tensor:
        """The diffusion's noise from white noise ``z`` (:func:`colour_noise`): what training and the samplers draw."""
        return colour_noise(z, *self.noise)

    def network_output(self, x: torch.Tensor, sigma, cond) -> torch.Tensor:
        """F(t(sigma), x, y) in float32: the raw network output on the (already scaled) input ``x``."""
        B = x.shape[0]
        net_dtype = next(self.net.parameters()).dtype
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1).expand(B)
        t = sigma_to_t(sigma, self.sigma_min, self.sigma_max).to(net_dtype)
        conds = [cond] if isinstance(cond, torch.Tensor) else list(cond or [])
        conds = [c.to(device=x.device, dtype=net_dtype) for c in conds]
        with autocast(self.precision, x.device):
            out = self.net(t, x.to(net_dtype), *conds)
        return out if out.dtype == net_dtype else out.to(net_dtype)

    def coefficients(self, sig: torch.Tensor) -> tuple:
        """(c_skip, c_out, c_in) at noise levels ``sig`` (broadcastable against x)."""
        if self.preconditioning == "score_models":
            return torch.ones_like(sig), sig, torch.ones_like(sig)
        s2, total = self.sigma_data**2, sig**2 + self.sigma_data**2
        return s2 / total, sig * self.sigma_data / total.sqrt(), 1 / total.sqrt()

    def __call__(self, x: torch.Tensor, sigma, *, cond) -> torch.Tensor:
        sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        sig = sig.expand(x.shape[0]).reshape(-1, *[1] * (x.ndim - 1))
        c_skip, c_out, c_in = self.coefficients(sig)
        out = c_skip * x + c_out * self.network_output(c_in * x, sigma, cond).to(x.dtype)
        return out if self.mean_correction is None else out - self.correction(sig.reshape(-1), x)

    def uncorrected(self) -> Denoiser:
        """This denoiser without its ``mean_correction`` (the same network, shared)."""
        other = copy.copy(self)
        other.mean_correction = None
        return other

    def correction(self, sig: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The ``mean_correction`` at noise levels ``sig`` (one per item of ``x``), as maps shaped like ``x``."""
        logs, error = self._correction_on(x.device)
        need = int(_radial_bins(x.shape[-2], x.shape[-1]).max()) + 1  # on the CPU: no device sync
        if error.shape[1] != x.shape[1] or error.shape[2] < need:
            raise ValueError(
                f"the mean correction has {error.shape[1]} fields x {error.shape[2]} radial bins; "
                f"maps of {x.shape[1]} x {tuple(x.shape[-2:])} need {x.shape[1]} x {need}"
            )
        bins = _radial_bins(x.shape[-2], x.shape[-1], str(x.device))
        at = sig.to(torch.float64).log().clamp(logs[0], logs[-1])
        if len(logs) == 1:
            profile = error[0].expand(len(at), -1, -1)
        else:
            hi = torch.searchsorted(logs, at, right=True).clamp(1, len(logs) - 1)
            w = ((at - logs[hi - 1]) / (logs[hi] - logs[hi - 1])).reshape(-1, 1, 1)
            profile = (1 - w) * error[hi - 1] + w * error[hi]
        return profile[:, :, bins].to(x.dtype)

    def _correction_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(log sigmas, error) of the ``mean_correction`` on ``device``: moved once per device, not per call."""
        cached = self.__dict__.get("_correction_cache")
        if cached is None or cached[0] is not self.mean_correction or cached[1] != device:
            sigmas, error = self.mean_correction
            cached = (self.mean_correction, device, sigmas.to(device).log(), error.to(device))
            self._correction_cache = cached
        return cached[2], cached[3]

    def loss(self, x0: torch.Tensor, cond, shard: tuple[int, int] | None = None) -> torch.Tensor:
        """The training loss of the EDM parametrisation: sigma log-uniform on [sigma_min, sigma_max] (as
        score_models draws t) or as ``sigma_train`` says, weight lambda(sigma) = 1 / c_out^2 on ||D - x0||^2, i.e.
        ||F - (x0 - c_skip x) / c_out||^2, summed over pixels and averaged over the batch (score_models'
        reduction). Draws from torch's global random state, as score_models' loss does; ``shard``: see
        :func:`training_loss`."""
        B = x0.shape[0]
        first, total = shard or (0, B)
        u = torch.rand(total, device=x0.device, dtype=torch.float64)[first : first + B]
        kind, median, width = self.sigma_train
        sig = training_sigmas(u, self.sigma_min, self.sigma_max, kind, median * self.sigma_data, width)
        sig = sig.reshape(-1, *[1] * (x0.ndim - 1))
        noise = self.colour(torch.randn_like(x0) if shard is None else _global_noise(x0, first, total))
        x = x0 + sig.to(x0.dtype) * noise
        c_skip, c_out, c_in = (c.to(x0.dtype) for c in self.coefficients(sig))
        target = (x0 - c_skip * x) / c_out
        out = self.network_output(c_in * x, sig.reshape(-1), cond)
        err = out - target
        total = (err**2).reshape(B, -1).sum(dim=1)
        if self.multiscale:
            total = total + self.multiscale * multiscale_error(err)
        if self.profile:
            total = total + self.profile * profile_error(err, profile_modes(*err.shape[-2:]).to(err))
        return total.mean()


def multiscale_error(err: torch.Tensor) -> torch.Tensor:
    """Per item of ``err`` (B, C, H, W): sum over f = 2, 4, ... (while H / f >= 2 and W / f >= 2) of
    f^2 x the sum of squares of ``err`` averaged over f x f blocks.

    An error that is constant over f x f blocks counts once more at every such f (white pixel noise
    about 1 / f^2 of that), so the coarse modes of the error weigh more in the loss. The loss stays a
    positive-definite quadratic form of D - x0 for each noise level, so its minimiser is still the
    posterior mean E[x0 | x, y]: the weight moves the network's effort, not its target (the multiscale
    loss of Hoogeboom, Heek & Salimans 2023, "simple diffusion", section 3.3, there for high resolution).
    """
    B, H, W = err.shape[0], err.shape[-2], err.shape[-1]
    total = torch.zeros(B, dtype=err.dtype, device=err.device)
    f = 2
    while H // f >= 2 and W // f >= 2:
        pooled = torch.nn.functional.avg_pool2d(err, f)
        total = total + f * f * (pooled**2).reshape(B, -1).sum(dim=1)
        f *= 2
    return total


@functools.lru_cache(maxsize=8)
def profile_modes(height: int, width: int) -> torch.Tensor:
    """Unit-norm indicators (n, H, W) of the annuli of TARP's profile summary on an H x W map
    (:func:`massmaps.evaluation.calibration.summary_annuli`; an annulus without a pixel left out)."""
    from ..evaluation.calibration import summary_annuli

    member = torch.as_tensor(summary_annuli(height, width), dtype=torch.float64)
    member = member[member.sum(dim=(1, 2)) > 0]
    return member / member.sum(dim=(1, 2), keepdim=True).sqrt()


def radial_bins(height: int, width: int) -> torch.Tensor:
    """(H, W) integers: floor of each pixel centre's distance from the map centre, in pixels (bin 0 is the
    four central pixels of an even map)."""
    y = torch.arange(height, dtype=torch.float64) + 0.5 - height / 2
    x = torch.arange(width, dtype=torch.float64) + 0.5 - width / 2
    return torch.sqrt(y[:, None] ** 2 + x[None, :] ** 2).floor().long()


@functools.lru_cache(maxsize=8)
def _radial_bins(height: int, width: int, device: str = "cpu") -> torch.Tensor:
    return radial_bins(height, width).to(device)


def _check_correction(sigmas, error) -> tuple[torch.Tensor, torch.Tensor]:
    sigmas = torch.from_numpy(np.array(sigmas, dtype=np.float64))  # a copy: any strides, lists too
    error = torch.from_numpy(np.array(error, dtype=np.float64))
    if sigmas.ndim != 1 or not len(sigmas) or not bool((sigmas > 0).all()) or not bool((sigmas.diff() > 0).all()):
        raise ValueError(f"the mean correction's noise levels must be positive and increasing, got {sigmas.tolist()}")
    if error.ndim != 3 or error.shape[0] != len(sigmas) or not bool(error.isfinite().all()):
        raise ValueError(
            f"the mean correction must be finite, (levels, fields, radial bins) with {len(sigmas)} levels; "
            f"got shape {tuple(error.shape)}"
        )
    return sigmas, error


def correction_levels(sigma_min: float, sigma_max: float, per_decade: int) -> np.ndarray:
    """Noise levels spaced evenly in log sigma from ``sigma_min`` to ``sigma_max``, ``per_decade`` to a decade."""
    n = max(2, int(math.ceil(per_decade * math.log10(sigma_max / sigma_min))) + 1)
    return np.geomspace(sigma_min, sigma_max, n)


def mean_error_profile(
    denoiser: Denoiser,
    x0: torch.Tensor,
    cond: torch.Tensor,
    sigmas,
    *,
    draws: int = 2,
    seed: int = 0,
    batch: int = 128,
    progress: bool = False,
) -> np.ndarray:
    """The mean error of ``denoiser`` (without any correction of its own) on the maps ``x0`` (N, C, H, W)
    with inputs ``cond``: E[D(x0 + sigma n; sigma, cond) - x0] over the maps, ``draws`` noise draws each
    (the denoiser's own noise, :meth:`Denoiser.colour`, seeded by ``seed``) and the pixels of each radial
    bin (:func:`radial_bins`), at each of ``sigmas``: (levels, C, bins), float64. Pooling the pixels of a
    ring is exact in expectation for maps centred on their halo and seen along random axes, and leaves
    far less noise than a value per pixel."""
    from tqdm.auto import tqdm

    den = denoiser.uncorrected()
    bins = radial_bins(x0.shape[-2], x0.shape[-1]).reshape(-1)
    n_bins = int(bins.max()) + 1
    counts = torch.bincount(bins, minlength=n_bins).to(torch.float64)
    g = torch.Generator().manual_seed(int(seed))
    out = np.zeros((len(sigmas), x0.shape[1], n_bins))
    dev = den.device
    with torch.no_grad():
        for k, sigma in enumerate(tqdm(list(sigmas), desc="mean error", disable=not progress)):
            total = torch.zeros(x0.shape[1], n_bins, dtype=torch.float64)
            for _ in range(draws):
                for start in range(0, len(x0), batch):
                    xb = x0[start : start + batch].to(torch.float64)
                    noise = den.colour(torch.randn(xb.shape, generator=g, dtype=torch.float64))
                    cb = cond[start : start + batch].to(dev)
                    err = (den((xb + float(sigma) * noise).to(dev), float(sigma), cond=cb).cpu() - xb).sum(dim=0)
                    total.index_add_(1, bins, err.reshape(x0.shape[1], -1))
            out[k] = (total / (counts * draws * len(x0))).numpy()
    return out


def profile_error(err: torch.Tensor, modes: torch.Tensor) -> torch.Tensor:
    """Per item of ``err`` (B, C, H, W): the sum over channels and ``modes`` (n, H, W; unit-norm, e.g.
    :func:`profile_modes`) of the squared projection of ``err`` on each: with annuli, the error's mean over
    each annulus squared times its pixel count.

    Added to the pixel loss with weight w, an error constant over an annulus counts 1 + w times as much as
    one of the same size that averages out over it. Like :func:`multiscale_error` it leaves the loss a
    positive-definite quadratic form of D - x0, so the minimiser is still the posterior mean; it puts the
    network's effort on the few coherent modes (the radial profile) that TARP and the annulus z-scores test
    and that the plain loss, summed over every pixel, weighs as one mode among H x W. Measured on the laptop
    default it did not help: the denoiser's error grew at every noise level, along the annuli too (along
    them the error is mostly the posterior's own spread, so the term adds gradient noise more than signal).
    """
    proj = torch.einsum("bchw,nhw->bcn", err, modes)
    return (proj**2).sum(dim=(1, 2))


def _global_noise(x0: torch.Tensor, first: int, total: int) -> torch.Tensor:
    """Rows ``first .. first + len(x0) - 1`` of a standard normal draw of ``total`` items shaped like ``x0``'s."""
    return torch.randn((total, *x0.shape[1:]), dtype=x0.dtype, device=x0.device)[first : first + x0.shape[0]]


def training_loss(denoiser: Denoiser, x0: torch.Tensor, cond, shard: tuple[int, int] | None = None) -> torch.Tensor:
    """The loss a model is trained with: score_models' own DSM loss, unchanged, or the EDM loss.

    ``shard = (first, total)``, in data-parallel training: ``x0`` holds items ``first ..`` of a global
    batch of ``total`` items. The noise levels and the noise are drawn for the whole global batch, as one
    process would draw them, and this shard's rows are used; the loss is averaged over the shard, so that
    the mean over equal shards is the global batch's loss. The network is ``denoiser.net`` (which may be a
    DistributedDataParallel wrapper). ``shard=(0, len(x0))`` draws and computes what ``shard=None`` does.
    """
    if shard is None:
        if denoiser.preconditioning == "score_models":
            return denoiser.score_model.loss_fn(x0, cond)
        return denoiser.loss(x0, cond)
    if denoiser.preconditioning != "score_models":
        return denoiser.loss(x0, cond, shard)
    # score_models.dsm.denoising_score_matching, with the draws of the global batch
    first, total = shard
    B, sde = x0.shape[0], denoiser.score_model.sde
    z = _global_noise(x0, first, total)
    t = (torch.rand(total).to(x0.device) * (sde.T - sde.epsilon) + sde.epsilon)[first : first + B]
    mean, sigma = sde.marginal_prob(t, x0)
    return torch.sum((z + denoiser.net(t, mean + sigma * z, cond)) ** 2) / B


# ------------------------------------------------------------------------------- save and load
@dataclass
class TrainedModel:
    """A loaded model directory."""

    score_model: ScoreModel
    normaliser: Normaliser | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def denoiser(self) -> Denoiser:
        pre = self.metadata.get("preconditioning") or {}
        noise = tuple(pre.get("noise") or ("white", 0.0))
        corr = self.metadata.get("mean_correction")
        return Denoiser(
            self.score_model,
            pre.get("kind", "score_models"),
            pre.get("sigma_data"),
            noise=noise,
            mean_correction=(corr["sigmas"], corr["error"]) if corr else None,
        )

    @property
    def device(self) -> torch.device:
        return next(self.score_model.model.parameters()).device


def to_jsonable(obj):
    """Tuples to lists, devices to strings: what json.dumps and the checkpoint comparison need."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.device):
        return str(obj)
    return obj


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished ``tmp`` directory onto ``final`` (same filesystem)."""
    if final.exists():
        trash = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


def save_model(
    model_dir: str | os.PathLike,
    score_model: ScoreModel,
    *,
    normaliser: Normaliser | Mapping | None = None,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write weights, hyper-parameters and normalisation into ``model_dir`` atomically.

    ``state_dict`` (default: the network's current weights, e.g. EMA weights) is saved in
    score_models' layout, so ``ScoreModel(checkpoints_directory=model_dir)`` loads the directory
    too. The directory is assembled under a temporary name beside it and renamed at the end.
    """
    final = Path(model_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        weights = state_dict if state_dict is not None else score_model.model.state_dict()
        torch.save({k: v.detach().cpu() for k, v in weights.items()}, tmp / WEIGHTS_FILE)
        (tmp / HPARAMS_FILE).write_text(json.dumps(to_jsonable(score_model.hyperparameters), indent=2))
        if normaliser is not None:
            norm = normaliser.to_dict() if isinstance(normaliser, Normaliser) else dict(normaliser)
            (tmp / NORMALISATION_FILE).write_text(json.dumps(norm, indent=2))
        meta = {
            "format": MODEL_FORMAT,
            "version": MODEL_FORMAT_VERSION,
            "weights": WEIGHTS_FILE,
            "sigma_min": float(score_model.sde.sigma_min),
            "sigma_max": float(score_model.sde.sigma_max),
            **to_jsonable(dict(metadata or {})),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def update_metadata(model_dir: str | os.PathLike, extra: Mapping[str, Any]) -> None:
    """Add ``extra`` to a model directory's metadata file (rewritten atomically)."""
    path = Path(model_dir) / META_FILE
    meta = {**json.loads(path.read_text()), **to_jsonable(dict(extra))}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path)


def load_model(model_dir: str | os.PathLike, *, device: str | torch.device = "auto") -> TrainedModel:
    """Load a directory written by :func:`save_model` onto ``device``, in eval mode."""
    model_dir = Path(model_dir)
    meta_path = model_dir / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{model_dir} is not a massmaps model directory (no {META_FILE})")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != MODEL_FORMAT or meta.get("version") != MODEL_FORMAT_VERSION:
        raise ValueError(f"{meta_path}: unsupported format {meta.get('format')!r} v{meta.get('version')!r}")
    hparams = json.loads((model_dir / HPARAMS_FILE).read_text())
    if hparams.get("sde") != "ve":
        raise ValueError(f"{model_dir}: expected a VE SDE model, got sde={hparams.get('sde')!r}")
    dev = resolve_device(device)
    model = build_score_model(
        network_kwargs(hparams), sigma_min=hparams["sigma_min"], sigma_max=hparams["sigma_max"], device=dev
    )
    weights = torch.load(model_dir / meta.get("weights", WEIGHTS_FILE), map_location=dev, weights_only=True)
    model.model.load_state_dict(weights)
    model.model.eval()
    norm_path = model_dir / NORMALISATION_FILE
    normaliser = Normaliser.from_dict(json.loads(norm_path.read_text())) if norm_path.is_file() else None
    return TrainedModel(score_model=model, normaliser=normaliser, metadata=meta)
