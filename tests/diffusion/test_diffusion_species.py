"""Absorbing-state D3PM over species: marginals, loss weights, exact posterior step."""

import pytest
import torch
import torch.nn.functional as F

from diffcrystal import MASK_SPECIES
from diffcrystal.diffusion.schedules import MaskSchedule
from diffcrystal.diffusion.species import SpeciesDiffusion


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_masked_fraction_matches_schedule_and_all_masked_at_T(kind):
    proc = SpeciesDiffusion(MaskSchedule(100, kind))
    g = torch.Generator().manual_seed(0)
    n = 20000
    x0 = torch.randint(1, 101, (n,), generator=g)
    for t in (1, 30, 70, 100):
        xt, target = proc.noise(x0, torch.full((n,), t), generator=g)
        masked = xt == MASK_SPECIES
        m = float(proc.schedule.mask_probs[t])
        assert abs(float(masked.double().mean()) - m) < 5 * (m * (1 - m) / n) ** 0.5 + 1e-12
        assert torch.equal(xt[~masked], x0[~masked])
        assert torch.equal(target[masked], x0[masked]) and torch.all(target[~masked] == MASK_SPECIES)
    xt, _ = proc.noise(x0, torch.full((n,), 100), generator=g)
    assert torch.all(xt == MASK_SPECIES)


def test_elbo_weight_gives_exact_nelbo_for_constant_cross_entropy():
    """sum_t P(masked at t) * (m_t - m_{t-1}) / m_t = 1: a model with cross entropy c on every
    token has NELBO c per token; E_t[w_t m_t] must reproduce that."""
    for kind in ("linear", "cosine"):
        proc = SpeciesDiffusion(MaskSchedule(50, kind))
        m, w = proc.schedule.mask_probs, proc.loss_weights
        assert abs(float((w[1:] * m[1:]).mean()) - 1) < 1e-12
    lin = SpeciesDiffusion(MaskSchedule(50, "linear"))
    t = torch.arange(1, 51, dtype=torch.float64)
    torch.testing.assert_close(lin.loss_weights[1:], 50 / t)  # = 1 / m_t (MDLM weight)


def test_loss_is_weighted_cross_entropy_on_masked_atoms_only():
    proc = SpeciesDiffusion(MaskSchedule(10))
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 100, generator=g)
    target = torch.tensor([0, 8, 0, 26, 1, 100])
    t = torch.tensor([1, 2, 3, 4, 5, 10])
    loss = proc.loss(logits, target, t)
    ce = -F.log_softmax(logits, -1)[torch.arange(6), (target - 1).clamp(min=0)]
    expected = torch.where(target > 0, ce * 10 / t, torch.zeros(6))
    torch.testing.assert_close(loss, expected)
    uniform = SpeciesDiffusion(MaskSchedule(10), loss_weighting="uniform").loss(logits, target, t)
    torch.testing.assert_close(uniform, torch.where(target > 0, ce, torch.zeros(6)))


@pytest.mark.parametrize("t,s", [(100, 90), (50, 10), (20, 0)])
def test_reverse_step_unmasks_with_posterior_probability(t, s):
    proc = SpeciesDiffusion(MaskSchedule(100, "cosine"))
    g = torch.Generator().manual_seed(2)
    n = 20000
    xt = torch.where(torch.rand(n, generator=g) < 0.5, torch.tensor(MASK_SPECIES), torch.tensor(14))
    probs = torch.zeros(100)
    probs[[0, 7, 25]] = torch.tensor([0.5, 0.3, 0.2])  # H, O, Fe
    xs = proc.reverse_step(xt, t, s, probs.log().expand(n, -1), generator=g)
    was_masked = xt == MASK_SPECIES
    assert torch.equal(xs[~was_masked], xt[~was_masked])
    m_t, m_s = float(proc.schedule.mask_probs[t]), float(proc.schedule.mask_probs[s])
    p = (m_t - m_s) / m_t
    unmasked = was_masked & (xs != MASK_SPECIES)
    k = int(was_masked.sum())
    assert abs(int(unmasked.sum()) / k - p) < 5 * (p * (1 - p) / k) ** 0.5 + 1e-12
    assert set(xs[unmasked].unique().tolist()) <= {1, 8, 26}


def test_allowed_species_restricts_sampling_and_validates():
    proc = SpeciesDiffusion(MaskSchedule(10)).restrict([8, 26])
    g = torch.Generator().manual_seed(3)
    xs = proc.reverse_step(torch.zeros(500, dtype=torch.long), 5, 0, torch.zeros(500, 100), generator=g)
    assert set(xs.unique().tolist()) == {8, 26}
    with pytest.raises(ValueError, match="1..100"):
        SpeciesDiffusion(MaskSchedule(10), allowed_species=[0, 8])
    with pytest.raises(ValueError, match="valid: \\['elbo', 'uniform'\\]"):
        SpeciesDiffusion(MaskSchedule(10), loss_weighting="focal")
