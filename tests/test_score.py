import json
import math

import numpy as np
import pytest
import torch
from score_models import ScoreModel

from massmaps.learning import score
from massmaps.learning.normalise import Normaliser

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

TINY = {"nf": 8, "ch_mult": (1, 2), "attention": False, "fir": False}


# ------------------------------------------------------------------- Gaussian toy with exact score
S = torch.tensor([0.03, 0.1]).view(1, 2, 1, 1)  # per-channel data std


def toy_mean(cond):
    return 0.1 + 0.6 * cond


class ExactNet(torch.nn.Module):
    """f(t, x, y) = sigma(t) * score of p_sigma(x | y) for x_0 ~ N(0.1 + 0.6 y, S^2) per pixel."""

    def __init__(self, sign=1.0, scale=1.0):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.sign, self.scale = sign, scale

    def forward(self, t, x, cond):
        sigma = score.t_to_sigma(t).view(-1, 1, 1, 1)
        exact_score = (toy_mean(cond) - x) / (S**2 + sigma**2)
        return self.sign * self.scale * sigma * exact_score


def toy_model(**kw):
    return ScoreModel(model=ExactNet(**kw), sde="ve", sigma_min=1e-3, sigma_max=1.0, device="cpu")


def test_network_output_is_sigma_times_score_under_score_models_loss():
    """score_models' DSM loss is minimised by f = +sigma * score (not -, not rescaled)."""
    torch.manual_seed(3)  # the toy data: the same draws whatever ran before
    x0_cond = torch.rand(512, 2, 4, 4)
    x0 = toy_mean(x0_cond) + S * torch.randn(512, 2, 4, 4)
    losses = {}
    for name, kw in {"exact": {}, "neg": {"sign": -1.0}, "small": {"scale": 0.9}, "big": {"scale": 1.1}}.items():
        torch.manual_seed(0)  # common random numbers (t and z) for every candidate
        losses[name] = float(toy_model(**kw).loss_fn(x0, x0_cond))
    assert losses["exact"] < min(losses["neg"], losses["small"], losses["big"]), losses


class ExactEdmNet(torch.nn.Module):
    """The network output F that the edm parametrisation needs for the toy's exact denoiser:
    F = (D - c_skip x) / c_out, evaluated on the scaled input c_in x."""

    def __init__(self, sigma_data):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.sd = sigma_data

    def forward(self, t, x_in, cond):
        sigma = score.t_to_sigma(t.double()).view(-1, 1, 1, 1)
        total = sigma**2 + self.sd**2
        x = x_in.double() * total.sqrt()
        mu = toy_mean(cond).double()
        exact = mu + S.double() ** 2 / (S.double() ** 2 + sigma**2) * (x - mu)
        return ((exact - self.sd**2 / total * x) / (sigma * self.sd / total.sqrt())).float()


def test_edm_preconditioning_gives_the_exact_denoiser_and_its_loss_prefers_it():
    sd = 0.2
    model = ScoreModel(model=ExactEdmNet(sd), sde="ve", sigma_min=1e-3, sigma_max=1.0, device="cpu")
    den = score.Denoiser(model, "edm", sd)
    cond = torch.rand(6, 2, 5, 5)
    x = torch.randn(6, 2, 5, 5, dtype=torch.float64)
    for sigma in (1e-3, 0.02, 0.3, 1.0):
        mu = toy_mean(cond).double()
        want = mu + S.double() ** 2 / (S.double() ** 2 + sigma**2) * (x - mu)
        torch.testing.assert_close(den(x, sigma, cond=cond), want, rtol=1e-4, atol=1e-5)
    c_skip, c_out, c_in = den.coefficients(torch.tensor([sd]))
    assert (float(c_skip), float(c_out), float(c_in)) == pytest.approx((0.5, sd / 2**0.5, 1 / (sd * 2**0.5)))
    # the EDM loss is smallest for the exact network
    x0_cond = torch.rand(256, 2, 4, 4)
    x0 = toy_mean(x0_cond) + S * torch.randn(256, 2, 4, 4)

    class Scaled(ExactEdmNet):
        def forward(self, t, x_in, cond):
            return 1.1 * super().forward(t, x_in, cond)

    losses = []
    for net in (ExactEdmNet(sd), Scaled(sd)):
        torch.manual_seed(0)
        wrapped = ScoreModel(model=net, sde="ve", sigma_min=1e-3, sigma_max=1.0, device="cpu")
        losses.append(float(score.training_loss(score.Denoiser(wrapped, "edm", sd), x0, x0_cond)))
    assert losses[0] < losses[1]
    with pytest.raises(ValueError, match="sigma_data"):
        score.Denoiser(model, "edm", None)


def test_training_sigmas_follow_their_distributions():
    """Log-uniform levels are score_models' t mapped to sigma; log-normal ones have the asked median and
    width of ln sigma, within [sigma_min, sigma_max], from the same uniform draws."""
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(score.training_sigmas(u, 1e-3, 10.0), score.t_to_sigma(u, 1e-3, 10.0))
    sig = score.training_sigmas(u, 1e-3, 10.0, "log_normal", 0.08, 1.2)
    assert float(sig.min()) >= 1e-3 and float(sig.max()) <= 10.0
    assert float(sig.median()) == pytest.approx(0.08, rel=0.01)
    inside = sig[(sig > 1e-3) & (sig < 10.0)].log()
    assert float(inside.std()) == pytest.approx(1.2, rel=0.02)  # clipping is rare at these settings
    assert float((sig == 1e-3).double().mean()) == pytest.approx(
        0.5 * math.erfc(math.log(0.08 / 1e-3) / 1.2 / 2**0.5), abs=2e-4
    )
    with pytest.raises(ValueError, match="log_uniform"):
        score.training_sigmas(u, 1e-3, 10.0, "uniform")
    with pytest.raises(ValueError, match="width"):
        score.training_sigmas(u, 1e-3, 10.0, "log_normal", 0.08, 0.0)


def _noise_matrix(n: int, discount: float) -> torch.Tensor:
    """The pyramid noise's linear map A on n x n images, column p = the noise of a unit impulse at pixel p."""
    basis = torch.eye(n * n, dtype=torch.float64).reshape(n * n, 1, n, n)
    return score.colour_noise(basis, "pyramid", discount).reshape(n * n, n * n).T


@pytest.mark.parametrize("n", [8, 32])
def test_pyramid_noise_keeps_unit_pixel_variance_and_raises_the_coarse_modes(n):
    """Exactly: the covariance A A^T of the pyramid noise has 1 on its diagonal (every pixel keeps the white
    noise's variance) and gives a map's mean and a central disc far more variance than white noise's 1 per
    unit-norm pattern, while a checkerboard (no coarse part) gets less; white noise is the identity."""
    A = _noise_matrix(n, 0.8)
    cov = A @ A.T
    torch.testing.assert_close(torch.diagonal(cov), torch.ones(n * n, dtype=torch.float64))
    mean = torch.full((n * n,), 1.0 / n, dtype=torch.float64)
    yy, xx = torch.meshgrid(torch.arange(n) + 0.5 - n / 2, torch.arange(n) + 0.5 - n / 2, indexing="ij")
    disc = ((yy**2 + xx**2) < (n / 4) ** 2).double().reshape(-1)
    disc = disc / disc.norm()
    checker = ((-1.0) ** (torch.arange(n).view(-1, 1) + torch.arange(n))).double().reshape(-1) / n
    assert float(mean @ cov @ mean) > 10 and float(disc @ cov @ disc) > 3 and float(checker @ cov @ checker) < 1
    z = torch.randn(2, 3, n, n)
    assert torch.equal(score.colour_noise(z, "white"), z)
    with pytest.raises(ValueError, match="pyramid"):
        score.colour_noise(z, "pink", 0.8)
    with pytest.raises(ValueError, match="edm"):
        score.Denoiser(ScoreModel(model=ExactEdmNet(0.2), sde="ve", sigma_min=1e-3, sigma_max=1.0, device="cpu"),
                       "score_models", noise=("pyramid", 0.8))  # fmt: skip


def test_the_edm_loss_draws_the_denoisers_noise():
    """With pyramid noise the loss's noisy input is x0 + sigma A z for the same draws z as white noise's."""
    seen = []

    class Spy(ExactEdmNet):
        def forward(self, t, x_in, cond):
            seen.append((t.double(), x_in.double()))
            return super().forward(t, x_in, cond)

    sd = 0.2
    x0_cond = torch.rand(4, 2, 8, 8)
    x0 = toy_mean(x0_cond)
    inputs = {}
    for noise in (("white", 0.0), ("pyramid", 0.8)):
        seen.clear()
        torch.manual_seed(3)
        model = ScoreModel(model=Spy(sd), sde="ve", sigma_min=1e-3, sigma_max=1.0, device="cpu")
        score.training_loss(score.Denoiser(model, "edm", sd, noise=noise), x0, x0_cond)
        t, x_in = seen[-1]
        sigma = score.t_to_sigma(t).view(-1, 1, 1, 1)
        inputs[noise[0]] = (x_in * (sigma**2 + sd**2).sqrt() - x0.double()) / sigma  # the noise drawn
    torch.testing.assert_close(
        inputs["pyramid"], score.colour_noise(inputs["white"], "pyramid", 0.8), rtol=1e-4, atol=1e-4
    )


def test_log_normal_training_levels_enter_the_edm_loss():
    """With sigma_train log_normal the loss draws its levels from it (median in units of sigma_data): a
    network exact only at low noise loses nothing against the exact one when the levels concentrate there,
    and much over log-uniform levels. Only the edm preconditioning takes it."""
    sd = 0.2
    x0_cond = torch.rand(256, 2, 4, 4)
    x0 = toy_mean(x0_cond) + S * torch.randn(256, 2, 4, 4)

    class LowNoiseOnly(ExactEdmNet):  # exact below sigma = 0.05, off by 50% above
        def forward(self, t, x_in, cond):
            sigma = score.t_to_sigma(t).view(-1, 1, 1, 1)
            return super().forward(t, x_in, cond) * torch.where(sigma < 0.05, 1.0, 1.5)

    def loss(net, sigma_train):
        torch.manual_seed(0)
        model = ScoreModel(model=net, sde="ve", sigma_min=1e-3, sigma_max=1.0, device="cpu")
        return float(score.training_loss(score.Denoiser(model, "edm", sd, sigma_train), x0, x0_cond))

    uniform, narrow = ("log_uniform", 0.6, 1.2), ("log_normal", 0.02 / sd, 0.3)  # median sigma 0.02
    assert loss(LowNoiseOnly(sd), narrow) / loss(ExactEdmNet(sd), narrow) < 1.02
    assert loss(LowNoiseOnly(sd), uniform) / loss(ExactEdmNet(sd), uniform) > 1.2
    model = ScoreModel(model=ExactEdmNet(sd), sde="ve", sigma_min=1e-3, sigma_max=1.0, device="cpu")
    with pytest.raises(ValueError, match="edm"):
        score.Denoiser(model, "score_models", None, narrow)


def test_multiscale_error_counts_each_coarse_scale_of_a_smooth_error_once_more():
    """An error constant over the map counts once per scale (2x2 and 4x4 blocks of an 8x8 map: twice the
    pixel sum); a checkerboard, whose blocks average to zero, not at all; a lone pixel 1 / f^2 per scale."""
    flat = torch.full((1, 1, 8, 8), 0.5)
    assert torch.allclose(score.multiscale_error(flat), 2 * (flat**2).sum().reshape(1))
    checker = (-1.0) ** (torch.arange(8).view(-1, 1) + torch.arange(8).view(1, -1)).float().view(1, 1, 8, 8)
    assert float(score.multiscale_error(checker)) == 0.0
    spike = torch.zeros(2, 3, 8, 8)
    spike[1, 2, 3, 5] = 1.0
    torch.testing.assert_close(score.multiscale_error(spike), torch.tensor([0.0, 1 / 4 + 1 / 16]))


def _extra_term(term):
    """The extra loss term of the Denoiser keyword ``term`` as a function of the error (B, C, H, W)."""
    if term == "multiscale":
        return score.multiscale_error
    return lambda err: score.profile_error(err, score.profile_modes(*err.shape[-2:]).to(err))


@pytest.mark.parametrize("term", ["multiscale", "profile"])
def test_weighted_loss_terms_keep_the_mean_as_minimiser_and_weigh_coherent_errors(term):
    """The multiscale and the profile term are positive-definite quadratic forms of the error, so the map
    minimising the weighted loss summed over draws x_i is their mean (found by gradient descent, as a
    network would): the weight moves effort, not the target. In the edm loss each adds to an error smooth
    over the map and not to a checkerboard one; weight 0 is the plain loss, and the score_models
    parametrisation refuses a weight."""
    extra = _extra_term(term)
    torch.manual_seed(0)
    draws = torch.randn(16, 1, 8, 8, dtype=torch.float64) + torch.linspace(0, 1, 8).view(1, 1, 1, 8)
    d = torch.zeros(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([d], max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        err = d - draws
        loss = (err**2).sum() + 10.0 * extra(err).sum()
        loss.backward()
        return loss

    opt.step(closure)
    torch.testing.assert_close(d.detach(), draws.mean(0, keepdim=True), atol=1e-5, rtol=0)

    sd = 0.2
    x0_cond = torch.rand(64, 2, 8, 8)
    x0 = toy_mean(x0_cond) + S * torch.randn(64, 2, 8, 8)

    class Off(ExactEdmNet):  # the exact output plus a given error pattern
        def __init__(self, pattern):
            super().__init__(sd)
            self.pattern = pattern

        def forward(self, t, x_in, cond):
            return super().forward(t, x_in, cond) + self.pattern

    def loss(net, weight):
        torch.manual_seed(1)
        model = ScoreModel(model=net, sde="ve", sigma_min=1e-3, sigma_max=1.0, device="cpu")
        return float(score.training_loss(score.Denoiser(model, "edm", sd, **{term: weight}), x0, x0_cond))

    smooth, checker = torch.full((1, 2, 8, 8), 0.3), 0.3 * (-1.0) ** (torch.arange(8).view(-1, 1) + torch.arange(8))
    gain_exact = loss(ExactEdmNet(sd), 2.0) - loss(ExactEdmNet(sd), 0.0)
    gain_smooth = loss(Off(smooth), 2.0) - loss(Off(smooth), 0.0)
    gain_checker = loss(Off(checker), 2.0) - loss(Off(checker), 0.0)
    assert gain_exact > 0  # the exact network's own error has coherent modes too
    assert gain_smooth - gain_exact > 10 * abs(gain_checker - gain_exact)
    model = ScoreModel(model=ExactEdmNet(sd), sde="ve", sigma_min=1e-3, sigma_max=1.0, device="cpu")
    with pytest.raises(ValueError, match="edm"):
        score.Denoiser(model, "score_models", None, **{term: 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        score.Denoiser(model, "edm", sd, **{term: -1.0})


def test_profile_error_weighs_an_error_constant_over_an_annulus_and_not_one_that_averages_out():
    """An error constant over one annulus of TARP's summary counts its squares once more; one that
    alternates sign within every annulus, or lies outside the half-width disc, not at all; the modes are
    the summary's annuli, unit-norm and disjoint."""
    from massmaps.evaluation import calibration

    modes = score.profile_modes(16, 16)
    member = calibration.summary_annuli(16, 16)
    assert modes.shape == (calibration.SUMMARY_ANNULI, 16, 16)
    torch.testing.assert_close((modes**2).sum(dim=(1, 2)), torch.ones(len(modes), dtype=torch.float64))
    np.testing.assert_array_equal(modes.numpy() > 0, member)
    assert member.sum(axis=0).max() == 1
    err = torch.zeros(2, 2, 16, 16, dtype=torch.float64)
    err[1, 0][torch.as_tensor(member[2])] = 0.5  # constant over annulus 3 of channel 0, item 1
    expected = torch.tensor([0.0, float((err[1] ** 2).sum())], dtype=torch.float64)
    torch.testing.assert_close(score.profile_error(err, modes), expected)
    checker = (-1.0) ** (torch.arange(16).view(-1, 1) + torch.arange(16)).double()  # the annuli are symmetric
    assert float(score.profile_error(checker.expand(1, 2, 16, 16), modes).abs().max()) < 1e-12
    corner = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    corner[..., 0, 0] = 1.0  # outside the disc the summary averages
    assert float(score.profile_error(corner, modes)) == 0.0


def test_radial_bins_are_pixel_wide_rings_about_the_map_centre():
    bins = score.radial_bins(4, 4)
    assert bins[1:3, 1:3].eq(0).all() and int(bins[0, 0]) == 2 and int(bins[0, 1]) == 1  # r 0.71, 2.12, 1.58
    assert torch.equal(bins, bins.flip(0)) and torch.equal(bins, bins.T)
    assert int(score.radial_bins(32, 32).max()) == 21  # the corner pixel's centre is 15.5 sqrt(2) = 21.9 away


def test_mean_correction_measures_a_networks_mean_error_and_removes_it():
    """A network exact for the Gaussian toy but for an offset ring pattern: mean_error_profile finds the
    offset (c_out(sigma) times the pattern, per ring) within its noise, at every level; the corrected
    denoiser's mean error is then nil there and interpolated in log sigma between levels; the exact
    network's is nil to begin with. A correction of the wrong shape or levels is refused."""
    sd = 0.2
    bins = score.radial_bins(8, 8)
    pattern = torch.stack([0.5 * (bins == 1).double(), -0.3 * (bins >= 4).double()])[None]  # (1, 2, 8, 8)

    class Offset(ExactEdmNet):
        def forward(self, t, x_in, cond):
            return super().forward(t, x_in, cond) + pattern.float()

    gen = torch.Generator().manual_seed(4)
    cond = torch.rand(256, 2, 8, 8, generator=gen)
    x0 = toy_mean(cond) + S * torch.randn(256, 2, 8, 8, generator=gen)
    sigmas = np.array([0.01, 0.1, 1.0])
    model = ScoreModel(model=Offset(sd), sde="ve", sigma_min=1e-3, sigma_max=1.0, device="cpu")
    den = score.Denoiser(model, "edm", sd)
    err = score.mean_error_profile(den, x0, cond, sigmas, draws=2, seed=0, batch=100)
    assert err.shape == (3, 2, int(bins.max()) + 1)
    c_out = sigmas * sd / np.sqrt(sigmas**2 + sd**2)
    ring = np.array([[0.0, 0.5, 0, 0, 0], [0, 0, 0, 0, -0.3]])  # the corners (r 4.95) are ring 4
    # within 5 standard errors: the toy posterior's std (at most S = 0.1) over 512 draws of a ring's >= 4 pixels
    tol = 5 * np.sqrt(0.1**2 * sigmas**2 / (0.1**2 + sigmas**2) / (4 * 512))[:, None, None]
    assert (np.abs(err - c_out[:, None, None] * ring[None]) < tol).all()
    assert (tol[:, 0, 0] < 0.5 * c_out * 0.3).all()  # the smaller offset is at least twice that
    exact = score.Denoiser(
        ScoreModel(model=ExactEdmNet(sd), sde="ve", sigma_min=1e-3, sigma_max=1.0, device="cpu"), "edm", sd
    )
    assert (np.abs(score.mean_error_profile(exact, x0, cond, sigmas, draws=2, seed=0)) < tol).all()
    corrected = score.Denoiser(model, "edm", sd, mean_correction=(sigmas, err))
    again = score.mean_error_profile(corrected, x0, cond, sigmas, draws=2, seed=1)  # other noise
    assert (np.abs(again - c_out[:, None, None] * ring[None]) < tol).all()  # it measures the network alone
    x = x0[:8].double() + 0.1 * torch.randn(8, 2, 8, 8, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        for sigma, want in ((0.1, err[1]), (10**-1.5, (err[0] + err[1]) / 2), (1e-3, err[0]), (3.0, err[2])):
            diff = den(x, sigma, cond=cond[:8]) - corrected(x, sigma, cond=cond[:8])
            torch.testing.assert_close(diff, torch.as_tensor(want)[:, bins].expand(8, -1, -1, -1))
    # the table is kept on the device between calls; another table on the same object is not masked by it
    corrected.mean_correction = score._check_correction(sigmas, 2 * err)
    with torch.no_grad():
        diff = den(x, 0.1, cond=cond[:8]) - corrected(x, 0.1, cond=cond[:8])
    torch.testing.assert_close(diff, torch.as_tensor(2 * err[1])[:, bins].expand(8, -1, -1, -1))
    with pytest.raises(ValueError, match="increasing"):
        score.Denoiser(model, "edm", sd, mean_correction=(sigmas[::-1], err))
    with pytest.raises(ValueError, match="levels"):
        score.Denoiser(model, "edm", sd, mean_correction=(sigmas[:2], err))
    on_exact = score.Denoiser(exact.score_model, "edm", sd, mean_correction=(sigmas, err))
    with pytest.raises(ValueError, match="radial bins"), torch.no_grad():
        on_exact(torch.zeros(1, 2, 16, 16), 0.1, cond=torch.zeros(1, 2, 16, 16))  # 8 x 8 maps' rings


def test_resolve_precision_takes_bf16_where_it_is_native(monkeypatch):
    """auto is bf16 where native_bf16 says the device computes it, float32 elsewhere; float32 and bf16 stay
    as asked; the note says what auto chose, warns of emulated bf16 and is silent otherwise."""
    assert score.native_bf16("cpu") in (True, False)
    assert score.native_bf16("meta") is False
    assert score.resolve_precision("auto", "cpu") == ("bf16" if score.native_bf16("cpu") else "float32")
    for native in (True, False):
        monkeypatch.setattr(score, "native_bf16", lambda device, native=native: native)
        assert score.resolve_precision("auto", "cpu") == ("bf16" if native else "float32")
        assert score.resolve_precision("bf16", "cpu") == "bf16"
        assert score.resolve_precision("float32", "cpu") == "float32"
        assert score.precision_note("auto", "cpu").startswith(f"precision auto: {'bf16' if native else 'float32'}")
        assert score.precision_note("float32", "cpu") is None
        assert (score.precision_note("bf16", "cpu") is None) == native
    assert "WARNING" in score.precision_note("bf16", "cpu")
    with pytest.raises(ValueError, match="auto"):
        score.resolve_precision("fp16", "cpu")


def test_denoiser_is_tweedie_posterior_mean_on_gaussian_toy():
    model = toy_model()
    den = score.Denoiser(model)
    cond = torch.rand(6, 2, 5, 5)
    x = torch.randn(6, 2, 5, 5, dtype=torch.float64)
    for sigma in (1e-3, 0.02, 0.3, 1.0):
        mu = toy_mean(cond).double()
        s2 = S.double() ** 2
        expected = mu + s2 / (s2 + sigma**2) * (x - mu)
        got = den(x, sigma, cond=cond)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # score_models' own score agrees with the analytic score: s = f / sigma(t).
    t = torch.full((6,), 0.4)
    sigma = model.sde.sigma(t).view(-1, 1, 1, 1)
    xf = x.float()
    torch.testing.assert_close(model.score(t, xf, cond), (toy_mean(cond) - xf) / (S**2 + sigma**2))
    # Per-row sigmas.
    sig = torch.tensor([0.01, 0.1, 1.0, 0.01, 0.1, 1.0], dtype=torch.float64)
    rows = torch.cat([den(x[i : i + 1], float(sig[i]), cond=cond[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(den(x, sig, cond=cond), rows)


def test_sigma_t_round_trip_and_agreement_with_vesde():
    model = toy_model()
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    sig = score.t_to_sigma(t)
    torch.testing.assert_close(score.sigma_to_t(sig), t)
    torch.testing.assert_close(model.sde.sigma(t), sig)
    assert score.sigma_to_t(1e-3) == pytest.approx(0.0, abs=1e-15)
    assert score.sigma_to_t(1.0) == pytest.approx(1.0)
    assert score.t_to_sigma(score.sigma_to_t(0.0123, 1e-2, 50.0), 1e-2, 50.0) == pytest.approx(0.0123)
    assert score.sigma_to_t(math.sqrt(1e-3)) == pytest.approx(0.5)


def test_misspelled_network_keyword_is_rejected():
    with pytest.raises(ValueError, match=r"'ch_mul'.*ch_mult"):
        score.build_score_model({"nf": 8, "ch_mul": (1, 2)}, device="cpu")
    with pytest.raises(ValueError, match="attn"):
        score.check_ncsnpp_kwargs({"attn": True})
    score.check_ncsnpp_kwargs(TINY)


def test_build_paper_conditional_model_and_hparams():
    model = score.build_score_model(TINY, device="cpu")
    hp = model.hyperparameters
    assert hp["sde"] == "ve" and hp["sigma_min"] == 1e-3 and hp["sigma_max"] == 1.0
    assert hp["channels"] == 2 and hp["condition"] == ["input"] and hp["condition_input_channels"] == 2
    assert hp["num_res_blocks"] == 2 and hp["nf"] == 8 and tuple(hp["ch_mult"]) == (1, 2)
    out = model.model(torch.rand(3), torch.rand(3, 2, 8, 8), torch.rand(3, 2, 8, 8))
    assert out.shape == (3, 2, 8, 8)
    assert score.image_multiple(model) == 2


def test_device_selection():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert score.resolve_device("auto").type == expected
    assert score.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            score.resolve_device("cuda")


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = score.build_score_model(TINY, sigma_min=1e-3, sigma_max=1.0, device="cpu")
    with torch.no_grad():
        for p in model.model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # make the output-layer weights non-trivial
    norm = Normaliser(("gas", "dm", "tsz", "xray")).fit([np.random.default_rng(0).random((3, 4, 8, 8))])
    target = tmp_path / "models" / "m1"
    score.save_model(target, model, normaliser=norm, metadata={"note": "test"})
    score.save_model(target, model, normaliser=norm, metadata={"note": "overwrite"})  # replaces
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["m1"]  # no temporary left
    loaded = score.load_model(target, device="cpu")
    assert loaded.metadata["note"] == "overwrite"
    assert loaded.normaliser.to_dict() == norm.to_dict()
    assert json.loads((target / "model_hparams.json").read_text())["sigma_min"] == 1e-3
    x, c = torch.rand(2, 2, 8, 8), torch.rand(2, 2, 8, 8)
    d0 = score.Denoiser(model)(x.double(), 0.1, cond=c)
    d1 = loaded.denoiser(x.double(), 0.1, cond=c)
    torch.testing.assert_close(d0, d1, rtol=0, atol=0)
    # The directory is in score_models' layout as well.
    sm = ScoreModel(checkpoints_directory=str(target), device="cpu")
    t = torch.full((2,), 0.5)
    torch.testing.assert_close(sm.model(t, x, c), model.model(t, x, c))
    with pytest.raises(FileNotFoundError):
        score.load_model(tmp_path / "missing")
