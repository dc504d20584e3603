"""Posterior samplers over a denoiser D(x; sigma, y), in the style of k-diffusion.

Schedules are functions returning a decreasing float64 tensor of noise levels with a trailing zero;
solvers share one signature ``(denoiser, x, sigmas, *, cond, generator, callback=None,
disable=True)``, so any schedule goes with any solver. ``x`` is the starting noise, already scaled
to ``sigmas[0]``; ``cond`` is handed to the denoiser untouched; ``generator`` (a torch.Generator, or
one per batch row) is the only source of randomness; ``callback`` receives a dict with ``x``, ``i``,
``sigma``, ``sigma_hat`` and ``denoised`` after every step; ``disable`` turns the progress bar off.
The state is accumulated in float64; the denoiser evaluates the network in float32.

Number of network evaluations (NFE) for N noise levels (``len(sigmas) == N + 1``):
Euler-Maruyama N (N - 1 SDE steps plus the final denoising), Heun and the stochastic EDM sampler
2N - 1, DPM-Solver++(2M), its SDE form and DPM-Solver++(3M) SDE N.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

GeneratorLike = torch.Generator | Sequence[torch.Generator]


# ------------------------------------------------------------------------------------ schedules
def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """EDM's schedule (Karras et al. 2022, Eq. 5): n levels from sigma_max to sigma_min, then 0."""
    _check_schedule_args(n, sigma_min, sigma_max)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    inv_rho_min, inv_rho_max = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (inv_rho_max + ramp * (inv_rho_min - inv_rho_max)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def ve_sigmas(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Geometric schedule (uniform steps in t of the VE SDE, Song et al. 2021), then 0."""
    _check_schedule_args(n, sigma_min, sigma_max)
    sigmas = torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64))
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def _check_schedule_args(n, sigma_min, sigma_max):
    if int(n) != n or n < 2:
        raise ValueError(f"need at least 2 noise levels, got n={n!r}")
    if not (0 < sigma_min < sigma_max < math.inf):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")


# -------------------------------------------------------------------------------------- helpers
def shift_to_prior(x: torch.Tensor, prior_mean) -> torch.Tensor:
    """Centre draws of N(0, sigma_max^2) on ``prior_mean``: None, per channel (C,) or per pixel (C, H, W)."""
    if prior_mean is None:
        return x
    mu = torch.as_tensor(np.asarray(prior_mean, dtype=np.float64), device=x.device)
    return x + (mu[:, None, None] if mu.ndim == 1 else mu)


def randn_like(x: torch.Tensor, generator: GeneratorLike) -> torch.Tensor:
    """Standard normal noise shaped like ``x``; with one generator per row, row b uses generator[b]."""
    if isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if len(generator) != x.shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {x.shape[0]}")
    return torch.stack([torch.randn(x.shape[1:], generator=g, device=x.device, dtype=x.dtype) for g in generator])


def fresh_noise(denoiser, x: torch.Tensor, generator: GeneratorLike) -> torch.Tensor:
    """The diffusion's noise for a step of a solver: white, or coloured as ``denoiser.colour`` says (the noise
    the model was trained on, :func:`massmaps.learning.score.colour_noise`)."""
    z = randn_like(x, generator)
    colour = getattr(denoiser, "colour", None)
    return z if colour is None else colour(z)


def _report(callback, x, i, sigma, sigma_hat, denoised):
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})


# -------------------------------------------------------------------------------------- solvers
@torch.no_grad()
def sample_euler_maruyama(denoiser, x, sigmas, *, cond, generator, callback=None, disable=True):
    """Euler-Maruyama on the reverse VE SDE (Song et al. 2021, the paper's sampler), then Tweedie.

    With sigma(t) = sigma_min (sigma_max/sigma_min)^t, g(t)^2 dt = 2 sigma^2 d(ln sigma), so an
    Euler-Maruyama step from sigma_i to sigma_{i+1} (drift and diffusion at sigma_i) is
    x += 2 ln(sigma_i/sigma_{i+1}) sigma_i^2 score + sigma_i sqrt(2 ln(sigma_i/sigma_{i+1})) z,
    with sigma_i^2 score = D(x; sigma_i) - x. On the geometric schedule ``ve_sigmas`` this is the
    uniform-t discretisation of score_models' ``sample()``. The last step, to sigma = 0, is the
    denoising step x = D(x; sigma_min), which score_models omits.
    """
    x = x.to(torch.float64)
    for i in tqdm(range(len(sigmas) - 1), disable=disable, desc="euler-maruyama"):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, sigma, cond=cond)
        if sigma_next == 0:
            # Final step: Tweedie denoising, E[x_0 | x_sigma].
            x = denoised
        else:
            # Drift: g^2 dt * score, with dt the step in t (in ln sigma).
            two_dlog = 2.0 * math.log(sigma / sigma_next)
            x = x + two_dlog * (denoised - x)
            # Diffusion: g sqrt(dt) z from the passed generator.
            x = x + sigma * math.sqrt(two_dlog) * fresh_noise(denoiser, x, generator)
        _report(callback, x, i, sigma, sigma, denoised)
    return x


@torch.no_grad()
def sample_heun(denoiser, x, sigmas, *, cond, generator=None, callback=None, disable=True):
    """Heun's 2nd-order method on the probability-flow ODE, Algorithm 1 of Karras et al. (2022).

    Deterministic (``generator`` is unused); Euler on the last step to sigma = 0. NFE = 2N - 1.
    """
    x = x.to(torch.float64)
    for i in tqdm(range(len(sigmas) - 1), disable=disable, desc="heun"):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        # Euler step: dx/dsigma = (x - D(x; sigma)) / sigma.
        denoised = denoiser(x, sigma, cond=cond)
        d = (x - denoised) / sigma
        x_next = x + (sigma_next - sigma) * d
        # Apply 2nd order correction (not on the last step, where sigma_next = 0).
        if sigma_next != 0:
            d_next = (x_next - denoiser(x_next, sigma_next, cond=cond)) / sigma_next
            x_next = x + (sigma_next - sigma) * 0.5 * (d + d_next)
        x = x_next
        _report(callback, x, i, sigma, sigma, denoised)
    return x


@torch.no_grad()
def sample_edm_stochastic(
    denoiser,
    x,
    sigmas,
    *,
    cond,
    generator,
    callback=None,
    disable=True,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
):
    """Stochastic sampler, Algorithm 2 of Karras et al. (2022); ``s_churn = 0`` is ``sample_heun``.

    Churn is applied where s_tmin <= sigma_i <= s_tmax; it raises sigma_i by the factor
    1 + min(s_churn / N, sqrt(2) - 1), which may step above the network's sigma_max: set s_tmax
    accordingly (``draw_posterior_samples`` does).
    """
    x = x.to(torch.float64)
    n_steps = len(sigmas) - 1
    for i in tqdm(range(n_steps), disable=disable, desc="edm-stochastic"):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        # Increase noise temporarily: sigma_hat = (1 + gamma) sigma.
        gamma = min(s_churn / n_steps, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:
            eps = fresh_noise(denoiser, x, generator) * s_noise
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * eps
        # Euler step from sigma_hat to sigma_next.
        denoised = denoiser(x, sigma_hat, cond=cond)
        d = (x - denoised) / sigma_hat
        x_next = x + (sigma_next - sigma_hat) * d
        # Apply 2nd order correction (not on the last step).
        if sigma_next != 0:
            d_next = (x_next - denoiser(x_next, sigma_next, cond=cond)) / sigma_next
            x_next = x + (sigma_next - sigma_hat) * 0.5 * (d + d_next)
        x = x_next
        _report(callback, x, i, sigma, sigma_hat, denoised)
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser, x, sigmas, *, cond, generator=None, callback=None, disable=True):
    """DPM-Solver++(2M) on the probability-flow ODE (Lu et al. 2022, multistep second order in the data
    prediction): one network evaluation per noise level, NFE = N. Deterministic (``generator`` is unused).

    In lambda = -ln sigma, the step from sigma_i to sigma_{i+1} (h = lambda_{i+1} - lambda_i) is
    x <- (sigma_{i+1}/sigma_i) x + (1 - e^{-h}) D_i, with D_i extrapolated linearly in lambda from the
    previous step's denoised output (ratio r = h_{i-1}/h_i); the first step is first order and the last,
    to sigma = 0, returns D.
    """
    x = x.to(torch.float64)
    old, h_last = None, None
    for i in tqdm(range(len(sigmas) - 1), disable=disable, desc="dpm++2m"):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, sigma, cond=cond)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma / sigma_next)
            d = denoised if old is None else denoised + (denoised - old) * h / (2 * h_last)
            x = (sigma_next / sigma) * x - math.expm1(-h) * d
            h_last = h
        old = denoised
        _report(callback, x, i, sigma, sigma, denoised)
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(
    denoiser, x, sigmas, *, cond, generator, callback=None, disable=True, eta: float = 0.5, s_noise: float = 1.0
):
    """DPM-Solver++(2M) SDE (Lu et al. 2022; k-diffusion's midpoint form): the reverse SDE integrated
    exactly in its linear part, the data prediction D extrapolated as in :func:`sample_dpmpp_2m`, and
    fresh noise of variance sigma_{i+1}^2 (1 - e^{-2 eta h}) each step; ``eta`` = 0 is the ODE solver,
    ``eta`` = 1 the reverse SDE itself (k-diffusion's default). Every eta in [0, 1] samples the same
    distribution when the denoiser is exact; with a learned one, less fresh noise left the laptop model's
    posteriors better calibrated (dark-matter z-score std 1.14 at eta 0.5, 1.15 at 1, benchmarks/README.md),
    hence the default 0.5. NFE = N (one per noise level; the last step, to sigma = 0, returns D).
    """
    x = x.to(torch.float64)
    old, h_last = None, None
    for i in tqdm(range(len(sigmas) - 1), disable=disable, desc="dpm++2m-sde"):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, sigma, cond=cond)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma / sigma_next)
            eta_h = eta * h
            keep = -math.expm1(-h - eta_h)  # 1 - e^{-(1 + eta) h}
            x = (sigma_next / sigma) * math.exp(-eta_h) * x + keep * denoised
            if old is not None:
                x = x + 0.5 * keep * (h / h_last) * (denoised - old)
            if eta:
                x = x + fresh_noise(denoiser, x, generator) * (
                    sigma_next * math.sqrt(-math.expm1(-2 * eta_h)) * s_noise
                )
            h_last = h
        old = denoised
        _report(callback, x, i, sigma, sigma, denoised)
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde(
    denoiser, x, sigmas, *, cond, generator, callback=None, disable=True, eta: float = 1.0, s_noise: float = 1.0
):
    """DPM-Solver++(3M) SDE (k-diffusion's form): :func:`sample_dpmpp_2m_sde` with the data prediction
    extrapolated to second order from the last three denoised outputs (first and second divided
    differences in lambda = -ln sigma, weighted by the exponential integrator's phi_2 and phi_3). The
    first step is first order, the second second order. NFE = N, as for the 2M solvers.
    """
    x = x.to(torch.float64)
    d_1 = d_2 = None  # the previous two denoised outputs
    h_1 = h_2 = None  # and their step sizes
    for i in tqdm(range(len(sigmas) - 1), disable=disable, desc="dpm++3m-sde"):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, sigma, cond=cond)
        h = None
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma / sigma_next)
            h_eta = h * (eta + 1)
            x = math.exp(-h_eta) * x - math.expm1(-h_eta) * denoised
            phi_2 = math.expm1(-h_eta) / h_eta + 1
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - d_1) / r0
                d1_1 = (d_1 - d_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x + phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
            elif h_1 is not None:
                x = x + phi_2 * (denoised - d_1) / (h_1 / h)
            if eta:
                x = x + fresh_noise(denoiser, x, generator) * (
                    sigma_next * math.sqrt(-math.expm1(-2 * eta * h)) * s_noise
                )
        d_1, d_2 = denoised, d_1
        h_1, h_2 = h, h_1
        _report(callback, x, i, sigma, sigma, denoised)
    return x


# -------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class SamplerSpec:
    """A sampler: its solver (the shared signature ``solver(denoiser, x, sigmas, *, cond, generator,
    callback, disable, **kwargs)``), its noise schedule, its default number of noise levels N, and how
    many network evaluations it spends per level (second-order EDM solvers: 2, but 1 at the last level)."""

    name: str
    solver: Callable
    schedule: Callable
    default_steps: int
    evals_per_level: int = 1
    #: (kwargs, steps, denoiser) -> kwargs: defaults that depend on the schedule or the network
    prepare: Callable | None = None

    def nfe(self, steps: int) -> int:
        """Network evaluations per sample with ``steps`` noise levels."""
        return self.evals_per_level * steps - (self.evals_per_level - 1)

    def sigmas(self, steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
        if self.schedule is karras_sigmas:
            return karras_sigmas(steps, sigma_min, sigma_max, rho=rho)
        return self.schedule(steps, sigma_min, sigma_max)


def _churn_inside_training_range(kwargs: dict, steps: int, denoiser) -> dict:
    """edm_stochastic without an explicit ``s_tmax``: churn stops where the churned sigma_hat would leave
    the range the network was trained on."""
    if "s_tmax" not in kwargs:
        gamma = min(kwargs.get("s_churn", 0.0) / steps, math.sqrt(2) - 1)
        kwargs = {**kwargs, "s_tmax": denoiser.sigma_max / (1 + gamma)}
    return kwargs


SAMPLERS: dict[str, SamplerSpec] = {
    s.name: s
    for s in (
        SamplerSpec("euler_maruyama", sample_euler_maruyama, ve_sigmas, 1000),  # the paper's
        SamplerSpec("heun", sample_heun, karras_sigmas, 18, evals_per_level=2),  # 35 NFE, EDM's CIFAR-10 setting
        SamplerSpec(
            "edm_stochastic",
            sample_edm_stochastic,
            karras_sigmas,
            40,
            evals_per_level=2,
            prepare=_churn_inside_training_range,
        ),
        SamplerSpec("dpmpp_2m", sample_dpmpp_2m, karras_sigmas, 20),
        SamplerSpec("dpmpp_2m_sde", sample_dpmpp_2m_sde, karras_sigmas, 20),
        SamplerSpec("dpmpp_3m_sde", sample_dpmpp_3m_sde, karras_sigmas, 20),
    )
}


def get_sampler(name: str) -> SamplerSpec:
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; valid: {sorted(SAMPLERS)}") from None


def nfe(sampler: str, steps: int) -> int:
    """Network evaluations per sample of ``sampler`` with ``steps`` noise levels."""
    return get_sampler(sampler).nfe(steps)


def sample_seed(seed: int, sightline: int, sample: int) -> int:
    """Seed of sample ``sample`` of sightline ``sightline``: independent of batching."""
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(int(sightline), int(sample)))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def solver_setup(
    sampler: str,
    denoiser,
    steps: int | None = None,
    sampler_kwargs: dict | None = None,
    *,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
):
    """The solver, its noise levels and its keywords for ``denoiser``.

    ``steps`` defaults per sampler (see ``SAMPLERS``), the sigma range to the network's. For
    ``edm_stochastic`` without an explicit ``s_tmax``, churn stops where the churned sigma_hat would
    leave the range the network was trained on.
    """
    spec = get_sampler(sampler)
    steps = spec.default_steps if steps is None else int(steps)
    smin = denoiser.sigma_min if sigma_min is None else float(sigma_min)
    smax = denoiser.sigma_max if sigma_max is None else float(sigma_max)
    sigmas = spec.sigmas(steps, smin, smax, rho=rho)
    kwargs = dict(sampler_kwargs or {})
    if spec.prepare is not None:
        kwargs = spec.prepare(kwargs, steps, denoiser)
    return spec.solver, sigmas, kwargs


def _as_denoiser(model, device):
    from .score import Denoiser, TrainedModel, load_model

    if isinstance(model, Denoiser):
        return model
    if isinstance(model, TrainedModel):
        return model.denoiser
    if hasattr(model, "sde") and hasattr(model, "model"):  # a score_models ScoreModel
        return Denoiser(model)
    return load_model(model, device=device).denoiser


def draw_posterior_samples(
    model,
    inputs,
    n_samples: int,
    *,
    sampler: str = "dpmpp_2m_sde",
    steps: int | None = None,
    batch_size: int = 50,
    seed: int = 0,
    sightline_ids: Sequence[int] | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    sampler_kwargs: dict | None = None,
    device: str = "auto",
    disable: bool = True,
    prior_mean=None,
    precision: str = "float32",
    compile: bool | str = False,
) -> np.ndarray:
    """Posterior samples of the normalised targets for each conditioning input.

    Parameters
    ----------
    model : a model directory (loaded onto ``device``), a loaded ``TrainedModel``, a ``ScoreModel``
        or a ``Denoiser`` (these are used on the device they are on).
    inputs : (B, C_in, H, W) float32 normalised conditioning maps (tSZ, X-ray).
    n_samples : samples per input.
    sampler : a name of ``SAMPLERS``: "dpmpp_2m_sde" (the default), "dpmpp_3m_sde", "dpmpp_2m", "heun", "edm_stochastic"
        or "euler_maruyama" (the paper's).
    steps : number of noise levels N (default per sampler, see ``SAMPLERS``).
    batch_size : (sightline, sample) pairs per network call.
    seed, sightline_ids : sample k of sightline ``sightline_ids[b]`` (default b) starts from
        ``sample_seed(seed, sightline_ids[b], k)``, so results do not depend on batch_size or on how
        sightlines are grouped into calls.
    sigma_min, sigma_max : schedule range (default: the model's).
    sampler_kwargs : extra solver keywords (e.g. s_churn for "edm_stochastic").
    prior_mean : None (the prior N(0, sigma_max^2) of score_models and the paper) or the mean of the
        normalised targets, per channel (C_out,) or per pixel (C_out, H, W): the prior becomes
        N(prior_mean, sigma_max^2). With sigma_max = 1 the data are not negligible against the prior
        noise, and a prior centred on zero leaves the samples biased low where the data's mean is not
        small next to sigma_max (e.g. after an asinh stretch).
    precision, compile : the network's forward pass in bfloat16 ("bf16", under torch.autocast; the
        sampler's state stays float64) and through torch.compile (True: inductor, or a backend name), see
        :meth:`massmaps.learning.score.Denoiser.configured`. A caller that samples many inputs configures
        the denoiser once and passes it instead.

    Returns
    -------
    float32 array (B, n_samples, C_out, H, W), normalised units.
    """
    get_sampler(sampler)  # an unknown name fails before a model is loaded
    if n_samples < 1 or batch_size < 1:
        raise ValueError(f"n_samples and batch_size must be positive, got {n_samples}, {batch_size}")
    denoiser = _as_denoiser(model, device)
    if precision != "float32" or compile:
        denoiser = denoiser.configured(precision, compile)
    inputs = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be (B, C, H, W), got shape {tuple(inputs.shape)}")
    n_in = inputs.shape[0]
    ids = list(range(n_in)) if sightline_ids is None else [int(s) for s in sightline_ids]
    if len(ids) != n_in:
        raise ValueError(f"{len(ids)} sightline_ids for {n_in} inputs")

    solver, sigmas, kwargs = solver_setup(
        sampler, denoiser, steps, sampler_kwargs, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho
    )

    channels = int(denoiser.net.hyperparameters["channels"]) if hasattr(denoiser.net, "hyperparameters") else None
    pairs = [(b, k) for b in range(n_in) for k in range(n_samples)]
    out = None
    was_training = denoiser.net.training
    denoiser.net.eval()
    try:
        for start in tqdm(range(0, len(pairs), batch_size), disable=disable, desc="posterior batches"):
            out = _sample_chunk(
                denoiser,
                solver,
                sigmas,
                kwargs,
                inputs,
                pairs[start : start + batch_size],
                ids,
                seed,
                channels,
                n_in,
                n_samples,
                out,
                prior_mean,
            )
    finally:
        denoiser.net.train(was_training)
    return out


def start_noise(pairs, shape, seed: int, sigma_max: float, prior_mean=None, device="cpu", denoiser=None):
    """The sampler's start: a draw of the prior N(prior_mean, sigma_max^2) (float64; the noise coloured as
    ``denoiser`` says, :func:`fresh_noise`) for each (sightline id, sample index) pair, and the per-row
    generators that the solver then draws its noise from. Row j is seeded by ``sample_seed(seed, *pairs[j])``
    alone, so a sample is the same in any batch."""
    generators = [torch.Generator(device=device).manual_seed(sample_seed(seed, sid, k)) for sid, k in pairs]
    x = torch.empty((len(pairs), *shape), dtype=torch.float64, device=device)
    # score_models (and the paper) centre the prior on zero: prior_mean None
    return shift_to_prior(fresh_noise(denoiser, x, generators) * sigma_max, prior_mean), generators


def _sample_chunk(
    denoiser, solver, sigmas, kwargs, inputs, chunk, ids, seed, channels, n_in, n_samples, out, prior_mean=None
):
    """Sample the (sightline, sample) pairs of ``chunk`` in one batch; write them into ``out``."""
    dev = denoiser.device
    rows = torch.tensor([b for b, _ in chunk])
    cond = inputs[rows].to(dev)
    x, generators = start_noise(
        [(ids[b], k) for b, k in chunk],
        (channels or cond.shape[1], *inputs.shape[2:]),
        seed,
        float(sigmas[0]),
        prior_mean,
        dev,
        denoiser,
    )
    x = solver(denoiser, x, sigmas, cond=cond, generator=generators, **kwargs)
    x = x.to(torch.float32).cpu().numpy()
    if out is None:
        out = np.empty((n_in, n_samples, *x.shape[1:]), dtype=np.float32)
    for j, (b, k) in enumerate(chunk):
        out[b, k] = x[j]
    return out
