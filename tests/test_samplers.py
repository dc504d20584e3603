import inspect
import math

import numpy as np
import pytest
import torch
from score_models import ScoreModel

from massmaps.learning import samplers as sp
from massmaps.learning import score

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

SMIN, SMAX = 1e-3, 1.0
S = torch.tensor([0.03, 0.1], dtype=torch.float64).view(1, 2, 1, 1)  # per-channel data std


def toy_mean(cond):
    """Conditional mean of the toy: each target pixel follows its conditioning pixel."""
    return 0.1 + 0.6 * cond.double()


def exact_denoiser(std):
    """E[x_0 | x_sigma, y] for x_0 ~ N(toy_mean(y), std^2) per pixel."""

    def denoise(x, sigma, *, cond):
        sig = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
        mu = toy_mean(cond)
        return mu + std**2 / (std**2 + sig**2) * (x - mu)

    return denoise


def marginal_start(cond, std, sigma, seed):
    """A draw from the exact marginal at noise level sigma: isolates the solver's error."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(cond.shape, generator=g, dtype=torch.float64)
    return toy_mean(cond) + torch.sqrt(std**2 + sigma**2) * z


def z_stats(x, cond, std):
    z = (x - toy_mean(cond)) / std
    return z.mean(dim=(0, 2, 3)).numpy(), z.std(dim=(0, 2, 3)).numpy()


@pytest.fixture(scope="module")
def cond():
    return torch.rand(512, 2, 8, 8, generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------------ schedules
def test_schedules():
    k = sp.karras_sigmas(10, SMIN, SMAX, rho=7)
    v = sp.ve_sigmas(10, SMIN, SMAX)
    for s in (k, v):
        assert s.dtype == torch.float64 and len(s) == 11 and s[-1] == 0
        assert s[0].item() == pytest.approx(SMAX) and s[-2].item() == pytest.approx(SMIN)
        assert torch.all(s[1:] < s[:-1])
    ratios = v[1:-1] / v[:-2]
    torch.testing.assert_close(ratios, torch.full_like(ratios, SMIN ** (1 / 9)))
    # rho = 7: sigma^(1/7) is linear in the step index.
    r = k[:-1] ** (1 / 7)
    torch.testing.assert_close(r[1:] - r[:-1], torch.full((9,), (r[-1] - r[0]).item() / 9, dtype=torch.float64))
    with pytest.raises(ValueError):
        sp.karras_sigmas(1, SMIN, SMAX)
    with pytest.raises(ValueError):
        sp.ve_sigmas(10, SMAX, SMIN)


def test_solvers_share_one_signature():
    params = [list(inspect.signature(spec.solver).parameters)[:7] for spec in sp.SAMPLERS.values()]
    assert all(p == ["denoiser", "x", "sigmas", "cond", "generator", "callback", "disable"] for p in params)
    with pytest.raises(ValueError, match="valid"):
        sp.get_sampler("ddim")


@pytest.mark.parametrize(
    "name,steps",
    [
        ("heun", 6),
        ("edm_stochastic", 6),
        ("euler_maruyama", 6),
        ("dpmpp_2m", 6),
        ("dpmpp_2m_sde", 6),
        ("dpmpp_3m_sde", 6),
    ],
)
def test_nfe_and_callback(cond, name, steps):
    solver, schedule = sp.SAMPLERS[name].solver, sp.SAMPLERS[name].schedule
    calls, seen = [], []
    den = exact_denoiser(S)

    def counting(x, sigma, *, cond):
        calls.append(sigma)
        return den(x, sigma, cond=cond)

    c = cond[:4]
    sp_kwargs = {"s_churn": 10.0} if name == "edm_stochastic" else {}
    solver(
        counting,
        torch.randn(4, 2, 8, 8),
        schedule(steps, SMIN, SMAX),
        cond=c,
        generator=torch.Generator().manual_seed(0),
        callback=seen.append,
        **sp_kwargs,
    )
    assert len(calls) == sp.nfe(name, steps) == (2 * steps - 1 if name in ("heun", "edm_stochastic") else steps)
    assert [s["i"] for s in seen] == list(range(steps))
    assert seen[-1]["x"].dtype == torch.float64


# ------------------------------------------------------------- Gaussian toy with an exact denoiser
def test_heun_recovers_mean_and_variance(cond):
    x = marginal_start(cond, S, SMAX, seed=1)
    out = sp.sample_heun(exact_denoiser(S), x, sp.karras_sigmas(20, SMIN, SMAX), cond=cond, generator=None)
    mean, std = z_stats(out, cond, S)  # 39 NFE
    np.testing.assert_allclose(mean, 0.0, atol=0.02)
    np.testing.assert_allclose(std, 1.0, atol=0.03)


def test_heun_is_second_order(cond):
    errs = []
    for n in (10, 20):
        x = marginal_start(cond, S, SMAX, seed=1)
        out = sp.sample_heun(exact_denoiser(S), x, sp.karras_sigmas(n, SMIN, SMAX), cond=cond, generator=None)
        ref = sp.sample_heun(exact_denoiser(S), x, sp.karras_sigmas(400, SMIN, SMAX), cond=cond, generator=None)
        errs.append((out - ref).abs().max().item())
    assert errs[0] / errs[1] > 3.0, errs  # ~4 for a 2nd-order method, 2 for Euler


def test_euler_maruyama_recovers_mean_and_variance(cond):
    x = marginal_start(cond, S, SMAX, seed=1)
    g = torch.Generator().manual_seed(2)
    out = sp.sample_euler_maruyama(exact_denoiser(S), x, sp.ve_sigmas(300, SMIN, SMAX), cond=cond, generator=g)
    mean, std = z_stats(out, cond, S)
    np.testing.assert_allclose(mean, 0.0, atol=0.025)
    np.testing.assert_allclose(std, 1.0, atol=0.015)


def test_edm_stochastic_recovers_mean_and_variance(cond):
    x = marginal_start(cond, S, SMAX, seed=1)
    g = torch.Generator().manual_seed(2)
    out = sp.sample_edm_stochastic(
        exact_denoiser(S), x, sp.karras_sigmas(30, SMIN, SMAX), cond=cond, generator=g, s_churn=20.0
    )
    mean, std = z_stats(out, cond, S)
    np.testing.assert_allclose(mean, 0.0, atol=0.025)
    np.testing.assert_allclose(std, 1.0, atol=0.04)


@pytest.mark.parametrize(
    "name, steps, eta, std_tol",
    [
        ("dpmpp_2m", 20, None, 0.02),
        ("dpmpp_2m_sde", 20, None, 0.04),
        ("dpmpp_2m_sde", 20, 1.0, 0.05),
        ("dpmpp_2m_sde", 40, 1.0, 0.012),
        ("dpmpp_3m_sde", 20, None, 0.025),
    ],
)
def test_dpmpp_recovers_mean_and_variance(cond, name, steps, eta, std_tol):
    """On the toy, 20 evaluations give the posterior std within 2% (ODE) and 4-5% (SDE: measured 3.4% and
    2.0% too wide for the two channels at the default eta 0.5, 4.5% and 2.8% at eta 1, converging as the
    steps grow: 0.9% at 40; the 3M SDE: 1.8% and 0.6%)."""
    x = marginal_start(cond, S, SMAX, seed=1)
    kw = {} if eta is None else {"eta": eta}
    out = sp.SAMPLERS[name].solver(
        exact_denoiser(S), x, sp.karras_sigmas(steps, SMIN, SMAX), cond=cond, generator=torch.Generator().manual_seed(2),
        **kw,
    )  # fmt: skip
    mean, std = z_stats(out, cond, S)
    np.testing.assert_allclose(mean, 0.0, atol=0.01)
    np.testing.assert_allclose(std, 1.0, atol=std_tol)


def test_dpmpp_2m_is_second_order(cond):
    errs = []
    for n in (10, 20):
        x = marginal_start(cond, S, SMAX, seed=1)
        out = sp.sample_dpmpp_2m(exact_denoiser(S), x, sp.karras_sigmas(n, SMIN, SMAX), cond=cond)
        ref = sp.sample_dpmpp_2m(exact_denoiser(S), x, sp.karras_sigmas(400, SMIN, SMAX), cond=cond)
        errs.append((out - ref).abs().max().item())
    assert errs[0] / errs[1] > 3.0, errs


def test_dpmpp_3m_sde_without_noise_beats_the_2m_solver(cond):
    """With eta = 0 both SDE solvers integrate the probability-flow ODE; the 3M extrapolation is the more
    accurate (measured against 800 levels: 4.3e-4 against 5.8e-3 at 20 levels)."""
    errs = {}
    for name in ("dpmpp_2m_sde", "dpmpp_3m_sde"):
        solver = sp.SAMPLERS[name].solver
        x = marginal_start(cond, S, SMAX, seed=1)
        out = solver(exact_denoiser(S), x, sp.karras_sigmas(20, SMIN, SMAX), cond=cond, generator=None, eta=0.0)
        ref = solver(exact_denoiser(S), x, sp.karras_sigmas(800, SMIN, SMAX), cond=cond, generator=None, eta=0.0)
        errs[name] = (out - ref).abs().max().item()
    assert errs["dpmpp_3m_sde"] < errs["dpmpp_2m_sde"] / 5, errs


def test_prior_mismatch_biases_deterministic_sampler_only(cond):
    """sigma_max = 1 with a N(0, 1) prior: the ODE keeps a bias mu/sqrt(s^2+1) (in units of s);
    the SDE contracts it to about mu s (stochastic samplers hide it; docs/samplers.md)."""
    g = torch.Generator().manual_seed(1)
    x = SMAX * torch.randn(cond.shape, generator=g, dtype=torch.float64)
    ode = sp.sample_heun(exact_denoiser(S), x, sp.karras_sigmas(20, SMIN, SMAX), cond=cond, generator=None)
    sde = sp.sample_euler_maruyama(
        exact_denoiser(S), x, sp.ve_sigmas(300, SMIN, SMAX), cond=cond, generator=torch.Generator().manual_seed(2)
    )
    mu = toy_mean(cond).mean(dim=(0, 2, 3)).numpy()
    s = S.flatten().numpy()
    np.testing.assert_allclose(z_stats(ode, cond, S)[0], -mu / np.sqrt(s**2 + SMAX**2), atol=0.03)
    np.testing.assert_allclose(z_stats(sde, cond, S)[0], -mu * s, atol=0.02)


def test_faint_pixels_below_sigma_min(cond):
    """Pixels whose posterior width s is below sigma_min: the last Euler step (a Tweedie denoise
    from sigma_min) shrinks them to s^2/sqrt(s^2+sigma_min^2); a schedule reaching far below s
    recovers s (the calibration point of docs/samplers.md)."""
    faint = torch.full((1, 2, 1, 1), 2e-4, dtype=torch.float64)
    c = cond[:256]
    x = marginal_start(c, faint, SMAX, seed=3)
    short = sp.sample_heun(exact_denoiser(faint), x, sp.karras_sigmas(20, SMIN, SMAX), cond=c, generator=None)
    deep = sp.sample_heun(exact_denoiser(faint), x, sp.karras_sigmas(40, 1e-5, SMAX), cond=c, generator=None)
    s = 2e-4
    np.testing.assert_allclose(z_stats(short, c, faint)[1], s / math.hypot(s, SMIN), rtol=0.05)
    np.testing.assert_allclose(z_stats(deep, c, faint)[1], 1.0, atol=0.05)


# -------------------------------------------------------------------------- seeds and batching
class ExactNet(torch.nn.Module):
    """The toy's exact network output f = sigma * score, wrapped as a score_models network."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.hyperparameters = {"channels": 2}

    def forward(self, t, x, cond):
        sigma = score.t_to_sigma(t.double(), SMIN, SMAX).view(-1, 1, 1, 1)
        mu = toy_mean(cond)
        return (sigma * (mu - x) / (S**2 + sigma**2)).float()


@pytest.fixture(scope="module")
def toy_score_model():
    return ScoreModel(model=ExactNet(), sde="ve", sigma_min=SMIN, sigma_max=SMAX, device="cpu")


@pytest.mark.parametrize("sampler", ["heun", "euler_maruyama", "edm_stochastic"])
def test_same_seed_same_samples_any_batch_size(toy_score_model, sampler):
    inputs = np.random.default_rng(0).random((5, 2, 4, 4), dtype=np.float32)
    kw = dict(sampler=sampler, steps=8, seed=3)
    if sampler == "edm_stochastic":
        kw["sampler_kwargs"] = {"s_churn": 10.0}
    a = sp.draw_posterior_samples(toy_score_model, inputs, 3, batch_size=4, **kw)
    torch.manual_seed(123)  # the global RNG plays no part
    b = sp.draw_posterior_samples(toy_score_model, inputs, 3, batch_size=4, **kw)
    c = sp.draw_posterior_samples(toy_score_model, inputs, 3, batch_size=1, **kw)
    d = sp.draw_posterior_samples(toy_score_model, inputs, 3, batch_size=64, **kw)
    e = sp.draw_posterior_samples(toy_score_model, inputs[2:4], 3, batch_size=5, sightline_ids=[2, 3], **kw)
    f = sp.draw_posterior_samples(toy_score_model, inputs, 3, batch_size=4, **{**kw, "seed": 4})
    assert a.shape == (5, 3, 2, 4, 4) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, c, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a, d, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a[2:4], e, rtol=0, atol=1e-6)
    assert np.abs(a - f).max() > 1e-3
    assert np.abs(a[:, 0] - a[:, 1]).max() > 1e-3  # samples of one sightline differ


def test_posterior_samples_follow_inputs(toy_score_model):
    inputs = np.stack([np.full((2, 4, 4), 0.1), np.full((2, 4, 4), 0.9)]).astype(np.float32)
    out = sp.draw_posterior_samples(
        toy_score_model, inputs, 64, sampler="euler_maruyama", steps=200, batch_size=128, seed=0
    )
    means = out.mean(axis=(1, 3, 4))  # (2 inputs, 2 channels)
    expected = 0.1 + 0.6 * inputs[:, :, 0, 0]
    s = S.flatten().numpy()
    noise = 4 * s / np.sqrt(64 * 16)  # 4 standard errors of a mean over 64 samples x 16 pixels
    prior_bias = expected * s**2  # N(0, 1) prior instead of N(mu, 1 + s^2), see above
    assert np.all(np.abs(means - expected) < noise + prior_bias), (means, expected)


def test_network_samples_independent_of_batch_size():
    torch.manual_seed(0)
    model = score.build_score_model({"nf": 8, "ch_mult": (1, 2), "attention": False, "fir": False}, device="cpu")
    inputs = np.random.default_rng(1).random((3, 2, 8, 8), dtype=np.float32)
    a = sp.draw_posterior_samples(model, inputs, 2, steps=4, batch_size=6, seed=9)
    b = sp.draw_posterior_samples(model, inputs, 2, steps=4, batch_size=1, seed=9)
    assert np.isfinite(a).all()  # assert_allclose takes NaN as equal to NaN
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_prior_mean_removes_the_prior_mismatch(toy_score_model):
    """A prior N(0, 1) leaves the deterministic sampler biased by -mu/sqrt(s^2 + 1) (in units of s); a prior
    centred on the data's mean, per channel or per pixel, removes that bias."""
    inputs = np.full((1, 2, 4, 4), 0.9, dtype=np.float32)
    expected = 0.1 + 0.6 * 0.9  # the toy's conditional mean, every pixel
    s = S.flatten().numpy()
    kw = dict(sampler="heun", steps=20, batch_size=256, seed=0)
    zero = sp.draw_posterior_samples(toy_score_model, inputs, 128, **kw)
    chan = sp.draw_posterior_samples(toy_score_model, inputs, 128, prior_mean=np.full(2, expected), **kw)
    pix = sp.draw_posterior_samples(toy_score_model, inputs, 128, prior_mean=np.full((2, 4, 4), expected), **kw)
    bias = lambda out: (out.mean(axis=(0, 1, 3, 4)) - expected) / s  # noqa: E731
    np.testing.assert_allclose(bias(zero), -expected / np.sqrt(s**2 + 1), atol=0.05)
    np.testing.assert_allclose(bias(chan), 0.0, atol=0.05)
    np.testing.assert_allclose(bias(pix), 0.0, atol=0.05)
    # the spread is the posterior's either way
    np.testing.assert_allclose(pix.std(axis=(0, 1, 3, 4)) / s, 1.0, atol=0.1)


# ------------------------------------------------------------------- precision and compile (sampling)
def _tiny_ncsnpp():
    torch.manual_seed(0)
    return score.build_score_model({"nf": 8, "ch_mult": (1, 2), "attention": False, "fir": False}, device="cpu")


@pytest.mark.parametrize("sampler", ["dpmpp_2m_sde", "edm_stochastic"])
def test_compiled_network_gives_the_eager_samples(sampler):
    """sampling.compile: the network through torch.compile, here with the aot_eager backend (the same graph
    capture as inductor, without its C++ compilation): the eager samples bit for bit."""
    model, inputs = _tiny_ncsnpp(), np.random.default_rng(1).random((3, 2, 8, 8), dtype=np.float32)
    kw = dict(sampler=sampler, steps=6, batch_size=6, seed=9)
    eager = sp.draw_posterior_samples(model, inputs, 4, **kw)
    compiled = sp.draw_posterior_samples(model, inputs, 4, compile="aot_eager", **kw)
    np.testing.assert_array_equal(compiled, eager)


def test_bf16_samples_close_to_float32():
    """sampling.precision bf16: the network's convolutions in bfloat16 (8-bit mantissa), the solver's state
    in float64. The samples differ from float32 by at most 2% of the posterior spread (measured 0.5%, rms
    0.1%, on a random tiny NCSN++ with 6 DPM-Solver++(2M) SDE steps); the denoiser asked for bf16 is a
    configured copy: the model's own stays float32 and its weights are shared, not cast."""
    model, inputs = _tiny_ncsnpp(), np.random.default_rng(1).random((3, 2, 8, 8), dtype=np.float32)
    kw = dict(steps=6, batch_size=6, seed=9)
    f32 = sp.draw_posterior_samples(model, inputs, 4, **kw)
    bf16 = sp.draw_posterior_samples(model, inputs, 4, precision="bf16", **kw)
    spread = float(f32.std(axis=1).mean())
    diff = float(np.abs(bf16 - f32).max())
    print(f"bf16 vs float32 samples: max |d| {diff:.3g} = {diff / spread:.2%} of the spread")
    assert bf16.dtype == np.float32 and np.isfinite(bf16).all()
    assert 0 < diff < 0.02 * spread  # > 0: the bf16 path really ran
    denoiser = score.Denoiser(model)
    other = denoiser.configured("bf16")
    assert denoiser.precision == "float32" and other.precision == "bf16" and other.net is denoiser.net
    assert all(p.dtype == torch.float32 for p in model.model.parameters())
    with pytest.raises(ValueError, match="precision"):
        denoiser.configured("fp16")
    with pytest.raises(ValueError, match="compile"):
        denoiser.configured(compile=3)


class CorrelatedExact:
    """E[x0 | x_sigma, y] for x0 = toy_mean(y) + S_PIX w + S_OFF o (w white per pixel, o one offset per map and
    channel) under the diffusion noise sigma A z, A the pyramid noise's linear map (score.colour_noise):
    exact through the n^2 x n^2 covariances. ``.colour`` is what the samplers draw their noise through."""

    S_PIX, S_OFF = 0.03, 0.1

    def __init__(self, n, noise=("pyramid", 0.8)):
        basis = torch.eye(n * n, dtype=torch.float64).reshape(n * n, 1, n, n)
        A = score.colour_noise(basis, *noise).reshape(n * n, n * n).T
        self.noise, self.n = noise, n
        self.sigma_cov = A @ A.T
        self.cov = self.S_PIX**2 * torch.eye(n * n, dtype=torch.float64) + self.S_OFF**2

    def colour(self, z):
        return score.colour_noise(z, *self.noise)

    def __call__(self, x, sigma, *, cond):
        mu = toy_mean(cond)
        gain = self.cov @ torch.linalg.inv(self.cov + float(sigma) ** 2 * self.sigma_cov)
        d = (x - mu).reshape(-1, self.n * self.n) @ gain.T
        return mu + d.reshape(x.shape)

    def marginal(self, cond, sigma, seed):
        L = torch.linalg.cholesky(self.cov + sigma**2 * self.sigma_cov)
        z = torch.randn(cond.shape[0] * cond.shape[1], self.n * self.n, generator=torch.Generator().manual_seed(seed))
        return toy_mean(cond) + (z.double() @ L.T).reshape(cond.shape)


def _pixel_and_mean_std(x, cond):
    r = x - toy_mean(cond)
    return float(r.std()), float(r.mean(dim=(2, 3)).std())


@pytest.mark.parametrize("name, eta", [("dpmpp_2m_sde", 0.5), ("dpmpp_2m_sde", 1.0), ("euler_maruyama", None)])
def test_solvers_sample_the_posterior_of_a_model_trained_on_pyramid_noise(cond, name, eta):
    """With the diffusion's noise coloured (pyramid), the solvers draw their fresh noise through the
    denoiser's ``colour`` and recover a strongly correlated toy posterior: the pixel std and the std of each
    map's mean (the coherent mode); the same denoiser handed white fresh noise (no ``colour``) does not."""
    den = CorrelatedExact(8)
    want = (math.hypot(den.S_PIX, den.S_OFF), math.hypot(den.S_OFF, den.S_PIX / 8))
    steps = 200 if name == "euler_maruyama" else 40
    sigmas = sp.karras_sigmas(steps, SMIN, SMAX) if name != "euler_maruyama" else sp.ve_sigmas(steps, SMIN, SMAX)
    kw = {} if eta is None else {"eta": eta}
    x = den.marginal(cond, SMAX, seed=1)
    out = sp.SAMPLERS[name].solver(den, x, sigmas, cond=cond, generator=torch.Generator().manual_seed(2), **kw)
    np.testing.assert_allclose(_pixel_and_mean_std(out, cond), want, rtol=0.04)
    white = sp.SAMPLERS[name].solver(
        lambda x, s, *, cond: den(x, s, cond=cond), x, sigmas, cond=cond, generator=torch.Generator().manual_seed(2), **kw
    )  # fmt: skip
    assert _pixel_and_mean_std(white, cond)[1] < 0.85 * want[1]


def test_start_noise_draws_the_denoisers_noise():
    """The sampler's start is sigma_max times the denoiser's noise: coloured for a pyramid-noise model, white
    for a denoiser without ``colour`` (the same generators, so the same white draws underneath)."""
    den = CorrelatedExact(8)
    pairs = [(s, k) for s in range(3) for k in range(4)]
    x_col, _ = sp.start_noise(pairs, (2, 8, 8), seed=5, sigma_max=2.0, denoiser=den)
    x_white, _ = sp.start_noise(pairs, (2, 8, 8), seed=5, sigma_max=2.0)
    torch.testing.assert_close(x_col, score.colour_noise(x_white, "pyramid", 0.8))
    assert not torch.allclose(x_col, x_white)
