"""Wrapped normal on the torus: score, normalisation, marginals, prior."""

import math

import pytest
import torch
from scipy import stats

from diffcrystal.diffusion.coords import (
    CoordDiffusion,
    wrap_difference,
    wrap_unit,
    wrapped_normal_fisher,
    wrapped_normal_score,
)
from diffcrystal.diffusion.schedules import ExponentialSigmaSchedule


def log_density_image_sum(x: torch.Tensor, mu: torch.Tensor, sigma: float, n_images: int) -> torch.Tensor:
    """Independent reference: log of the explicit wrapped-normal density
    sum_k N(x + k; mu, sigma^2), summed term by term (no softmax, no wrapping)."""
    total = torch.zeros_like(x)
    for k in range(-n_images, n_images + 1):
        total = total + torch.exp(-((x - mu + k) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    return torch.log(total)


@pytest.mark.parametrize("sigma", [0.02, 0.1, 0.3, 0.5, 0.9])
def test_score_equals_autograd_and_finite_difference_of_image_sum(sigma):
    g = torch.Generator().manual_seed(0)
    mu = torch.rand(200, generator=g, dtype=torch.float64)
    x = torch.rand(200, generator=g, dtype=torch.float64)
    x = torch.cat([x, mu + 0.4999, mu - 0.4999, mu])  # near the antipode and at the mode
    mu = torch.cat([mu[:200]] * 4)
    x.requires_grad_(True)
    logp = log_density_image_sum(x, mu, sigma, n_images=10)
    (grad,) = torch.autograd.grad(logp.sum(), x)
    score = wrapped_normal_score(wrap_difference(x.detach() - mu), torch.tensor(sigma, dtype=torch.float64), 10)
    torch.testing.assert_close(score, grad, rtol=1e-9, atol=1e-9 / sigma**2)
    h = 1e-5 * sigma
    fd = (log_density_image_sum(x.detach() + h, mu, sigma, 10) - log_density_image_sum(x.detach() - h, mu, sigma, 10)) / (2 * h)
    torch.testing.assert_close(score, fd, rtol=1e-5, atol=1e-5 / sigma)


def test_small_sigma_score_is_gaussian():
    d = torch.linspace(-0.02, 0.02, 11, dtype=torch.float64)
    torch.testing.assert_close(wrapped_normal_score(d, torch.tensor(0.005, dtype=torch.float64)), -d / 0.005**2)


@pytest.mark.parametrize("sigma", [0.005, 0.05, 0.2, 0.35, 0.5])
def test_normalisation_matches_monte_carlo_and_fine_periodic_quadrature(sigma):
    lam = float(wrapped_normal_fisher(torch.tensor([sigma], dtype=torch.float64)))
    # Monte Carlo with a fixed seed: d = w(sigma * eps) has the wrapped-normal law
    g = torch.Generator().manual_seed(1234)
    n = 200_000
    d = wrap_difference(sigma * torch.randn(n, generator=g, dtype=torch.float64))
    sq = wrapped_normal_score(d, torch.tensor(sigma, dtype=torch.float64)) ** 2
    mc, se = float(sq.mean()), float(sq.std()) / n**0.5
    assert abs(mc - lam) < 5 * se, (mc, lam, se)
    # independent deterministic check: periodic trapezoid on [-0.5, 0.5), 4096 points
    grid = -0.5 + torch.arange(4096, dtype=torch.float64) / 4096
    dens = torch.exp(log_density_image_sum(grid, torch.zeros(()), sigma, 10))
    ref = float((dens * wrapped_normal_score(grid, torch.tensor(sigma, dtype=torch.float64)) ** 2).mean())
    assert math.isclose(lam, ref, rel_tol=1e-9)
    if sigma <= 0.05:
        assert math.isclose(lam, 1 / sigma**2, rel_tol=1e-6)  # Gaussian Fisher information


def test_normalised_target_has_unit_second_moment_at_every_level():
    proc = CoordDiffusion(ExponentialSigmaSchedule(1000))
    g = torch.Generator().manual_seed(3)
    n = 20000
    for t in (1, 300, 700, 1000):
        _, target = proc.noise(torch.rand(n, 3, generator=g, dtype=torch.float64), torch.full((n,), t), generator=g)
        assert abs(float((target**2).mean()) - 1) < 0.05, t


def test_noise_target_is_normalised_score_of_the_wrapped_difference():
    proc = CoordDiffusion(ExponentialSigmaSchedule(100))
    g = torch.Generator().manual_seed(4)
    x0 = torch.rand(500, 3, generator=g, dtype=torch.float64)
    t = torch.randint(1, 101, (500,), generator=g)
    xt, target = proc.noise(x0, t, generator=g)
    assert float(xt.min()) >= 0 and float(xt.max()) < 1
    sigma = proc.schedule.sigmas[t][:, None]
    expected = wrapped_normal_score(wrap_difference(xt - x0), sigma, proc.n_images)
    torch.testing.assert_close(proc.score(target, 0) * proc.score_norms[t][:, None], expected, rtol=1e-8, atol=1e-6)


@pytest.mark.parametrize("t", [1, 400, 800, 1000])
def test_noised_coordinates_have_the_wrapped_normal_characteristic_function(t):
    """E[exp(2 pi i (F_t - F_0))] = exp(-2 pi^2 sigma_t^2) for the wrapped normal."""
    proc = CoordDiffusion(ExponentialSigmaSchedule(1000))
    g = torch.Generator().manual_seed(t)
    n = 20000
    x0 = torch.rand(n, 3, generator=g, dtype=torch.float64)
    xt, _ = proc.noise(x0, torch.full((n,), t), generator=g)
    phase = torch.exp(2j * math.pi * (xt - x0)).mean(0)
    expected = math.exp(-2 * math.pi**2 * float(proc.schedule.sigmas[t]) ** 2)
    assert torch.all((phase - expected).abs() < 5 / (2 * n) ** 0.5)


def test_at_T_coordinates_are_close_to_uniform_like_the_prior():
    """WN(., 0.5^2) deviates from uniform by a CDF error <= 2 exp(-2 pi^2/4) / (2 pi) ~ 0.0023,
    far below the KS resolution at n = 30000 (~0.01)."""
    proc = CoordDiffusion(ExponentialSigmaSchedule(1000))
    g = torch.Generator().manual_seed(5)
    n = 10000
    xt, _ = proc.noise(torch.full((n, 3), 0.3, dtype=torch.float64), torch.full((n,), 1000), generator=g)
    prior = proc.sample_prior(n, generator=g, dtype=torch.float64)
    for sample in (xt, prior):
        assert stats.kstest(sample.flatten().numpy(), "uniform").pvalue > 1e-3


def test_reverse_step_to_zero_is_tweedie_and_corrector_step_size():
    proc = CoordDiffusion(ExponentialSigmaSchedule(1000), corrector_step_lr=1e-5)
    x = torch.full((4, 3), 0.5, dtype=torch.float64)
    pred = torch.ones(4, 3, dtype=torch.float64)
    out = proc.reverse_step(x, 1, 0, pred, generator=torch.Generator())
    expected = 0.5 + 0.005**2 * float(proc.score_norms[1])
    torch.testing.assert_close(out, torch.full_like(x, expected))
    assert math.isclose(proc.corrector_step_size(1000), 1e-5 * (0.5 / 0.005) ** 2)


@pytest.mark.parametrize("scale", [0.0, 0.5, 1.7])
def test_noise_scale_multiplies_the_noise_of_both_steps_and_nothing_else(scale):
    """Same generator seed: the step at scale λ minus its drift is λ times the step at 1 minus
    the same drift (wrapped differences), for the reverse and the corrector step alike."""
    schedule = ExponentialSigmaSchedule(1000)
    plain, scaled = CoordDiffusion(schedule), CoordDiffusion(schedule, noise_scale=scale)
    x = torch.rand(50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pred = torch.randn(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    drift_only = CoordDiffusion(schedule, noise_scale=0.0)
    for step in (lambda proc, g: proc.reverse_step(x, 400, 390, pred, generator=g),
                 lambda proc, g: proc.corrector_step(x, 400, pred, generator=g)):
        drift = step(drift_only, torch.Generator().manual_seed(2))
        noise_1 = wrap_difference(step(plain, torch.Generator().manual_seed(2)) - drift)
        noise_scaled = wrap_difference(step(scaled, torch.Generator().manual_seed(2)) - drift)
        assert float(noise_1.abs().max()) > 1e-3
        torch.testing.assert_close(noise_scaled, scale * noise_1)


@pytest.mark.parametrize("scale", [-0.1, float("nan"), float("inf")])
def test_noise_scale_must_be_finite_and_non_negative(scale):
    with pytest.raises(ValueError, match="noise_scale"):
        CoordDiffusion(ExponentialSigmaSchedule(1000), noise_scale=scale)


def test_noise_scale_applies_only_at_and_below_its_largest_timestep():
    schedule = ExponentialSigmaSchedule(1000)
    plain = CoordDiffusion(schedule)
    windowed = CoordDiffusion(schedule, noise_scale=0.5, noise_scale_max_t=500)
    everywhere = CoordDiffusion(schedule, noise_scale=0.5)
    assert [windowed.noise_factor(t) for t in (1, 500, 501, 1000)] == [0.5, 0.5, 1.0, 1.0]
    x = torch.rand(20, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pred = torch.randn(20, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for t, s, same_as in ((800, 790, plain), (501, 491, plain), (500, 490, everywhere), (100, 90, everywhere)):
        for step in (lambda proc: proc.reverse_step(x, t, s, pred, generator=torch.Generator().manual_seed(3)),
                     lambda proc: proc.corrector_step(x, t, pred, generator=torch.Generator().manual_seed(3))):
            torch.testing.assert_close(step(windowed), step(same_as), rtol=0, atol=0)


@pytest.mark.parametrize("max_t", [0, 1001, 2.5, True])
def test_noise_scale_max_t_must_be_a_timestep(max_t):
    with pytest.raises(ValueError, match="noise_scale_max_t"):
        CoordDiffusion(ExponentialSigmaSchedule(1000), noise_scale=0.5, noise_scale_max_t=max_t)


def test_wrap_helpers_stay_in_range():
    x = torch.tensor([-1e-9, -1e-20, 1.0, 2.5, -0.5], dtype=torch.float32)
    w = wrap_unit(x)
    assert float(w.min()) >= 0 and float(w.max()) < 1
    d = wrap_difference(torch.tensor([0.5, -0.5, 0.75, -0.75]))
    torch.testing.assert_close(d, torch.tensor([-0.5, -0.5, -0.25, 0.25]))


def test_coord_validation():
    with pytest.raises(ValueError, match="n_images"):
        CoordDiffusion(ExponentialSigmaSchedule(10), n_images=0)
    with pytest.raises(ValueError, match="quadrature_points"):
        CoordDiffusion(ExponentialSigmaSchedule(10), quadrature_points=10)
