"""Lattice DDPM: closed-form marginals, prior, and the reverse step against DDPM's posterior."""

import pytest
import torch
from scipy import stats

from diffcrystal.diffusion.lattice import LatticeDiffusion
from diffcrystal.diffusion.schedules import CosineBetaSchedule

L0 = torch.tensor([[4.0, 0.0, 0.0], [1.0, 5.0, 0.0], [-0.5, 0.7, 6.0]], dtype=torch.float64)


@pytest.mark.parametrize("scale", [1.0, 2.5])
@pytest.mark.parametrize("t", [1, 100, 500, 900])
def test_noised_lattice_has_closed_form_mean_and_std(scale, t):
    proc = LatticeDiffusion(CosineBetaSchedule(1000), length_scale_A=scale)
    n = 20000
    g = torch.Generator().manual_seed(t)
    x0 = L0.expand(n, 3, 3)
    lt, eps = proc.noise(x0, torch.full((n,), t), generator=g)
    ab = float(proc.schedule.alpha_bars[t])
    mean, std = ab**0.5 * L0, (1 - ab) ** 0.5 * scale
    # the target is exactly the noise that produced L_t
    torch.testing.assert_close(lt, scale * (ab**0.5 * x0 / scale + (1 - ab) ** 0.5 * eps))
    assert torch.all((lt.mean(0) - mean).abs() < 5 * std / n**0.5)
    assert torch.all((lt.std(0) / std - 1).abs() < 5 * (0.5 / n) ** 0.5)
    m, s = proc.marginal_mean_std(L0[None], torch.tensor([t]))
    torch.testing.assert_close(m[0], mean)
    assert abs(float(s) - std) < 1e-12


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_at_T_lattice_is_standard_normal_times_scale_like_the_prior(scale):
    proc = LatticeDiffusion(CosineBetaSchedule(1000), length_scale_A=scale)
    g = torch.Generator().manual_seed(0)
    n = 4000
    lt, _ = proc.noise(L0.expand(n, 3, 3), torch.full((n,), 1000), generator=g)
    prior = proc.sample_prior(n, generator=g, dtype=torch.float64)
    for sample in (lt, prior):
        assert stats.kstest((sample / scale).flatten().numpy(), "norm").pvalue > 1e-3
    # and the data is gone: the L0 signal is below 1e-4 of the noise
    assert float(proc.schedule.alpha_bars[1000]) ** 0.5 * float(L0.abs().max()) < 1e-3


@pytest.mark.parametrize("t,s", [(1, 0), (500, 499), (1000, 980), (300, 200), (50, 0)])
def test_reverse_step_equals_ddpm_posterior_of_the_respaced_chain(t, s):
    """With eps_hat = the true eps, x0_hat = x0 and the eta=1 step must sample
    q(x_s | x_t, x0) = N(mu_tilde, beta_tilde) (DDPM eq. 6-7 with beta' = 1 - ab_t / ab_s)."""
    scale = 2.0
    proc = LatticeDiffusion(CosineBetaSchedule(1000), length_scale_A=scale)
    n = 20000
    g = torch.Generator().manual_seed(7)
    x0 = L0.expand(n, 3, 3)
    lt, eps = proc.noise(x0, torch.full((n,), t), generator=g)
    ls = proc.reverse_step(lt, t, s, eps, generator=g)
    ab_t, ab_s = float(proc.schedule.alpha_bars[t]), float(proc.schedule.alpha_bars[s])
    beta = 1 - ab_t / ab_s
    mu = (ab_s**0.5 * beta / (1 - ab_t)) * x0 / scale + ((1 - beta) ** 0.5 * (1 - ab_s) / (1 - ab_t)) * lt / scale
    var = (1 - ab_s) / (1 - ab_t) * beta
    resid = ls / scale - mu
    if s == 0:
        torch.testing.assert_close(ls, x0)
        return
    z = resid / var**0.5
    assert abs(float(z.mean())) < 5 / (9 * n) ** 0.5
    assert abs(float(z.std()) - 1) < 5 * (0.5 / (9 * n)) ** 0.5


def test_ddim_eta_zero_is_deterministic_and_clip_bounds_x0():
    proc = LatticeDiffusion(CosineBetaSchedule(100), eta=0.0, clip_x0=2.0)
    x = torch.randn(5, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = torch.randn(5, 3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = proc.reverse_step(x, 60, 30, eps, generator=torch.Generator().manual_seed(3))
    b = proc.reverse_step(x, 60, 30, eps, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert float(proc.reverse_step(x, 60, 0, eps, generator=torch.Generator()).abs().max()) <= 2.0


def test_lattice_loss_and_validation():
    proc = LatticeDiffusion(CosineBetaSchedule(10))
    pred, target = torch.zeros(2, 3, 3), torch.ones(2, 3, 3)
    target[1] *= 2
    torch.testing.assert_close(proc.loss(pred, target, torch.tensor([1, 2])), torch.tensor([1.0, 4.0]))
    with pytest.raises(ValueError, match="1..10"):
        proc.noise(torch.zeros(2, 3, 3), torch.tensor([0, 3]), generator=torch.Generator())
    with pytest.raises(ValueError, match="t > s"):
        proc.reverse_step(torch.zeros(1, 3, 3), 3, 3, torch.zeros(1, 3, 3), generator=torch.Generator())
    with pytest.raises(ValueError, match="length_scale_A"):
        LatticeDiffusion(CosineBetaSchedule(10), length_scale_A=0.0)
