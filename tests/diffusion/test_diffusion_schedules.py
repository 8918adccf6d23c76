import math

import pytest
import torch

from diffcrystal.diffusion.schedules import CosineBetaSchedule, ExponentialSigmaSchedule, MaskSchedule


def test_cosine_alpha_bar_matches_closed_form_where_unclipped():
    T, s = 1000, 0.008
    sched = CosineBetaSchedule(T, s=s)
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    closed = f / f[0]
    unclipped = int((sched.betas < sched.max_beta).nonzero().max())  # last step before clipping
    torch.testing.assert_close(sched.alpha_bars[: unclipped + 1], closed[: unclipped + 1], rtol=1e-10, atol=1e-14)
    assert sched.betas[0] == 0 and sched.alpha_bars[0] == 1
    assert float(sched.betas.max()) <= 0.999
    assert torch.all(sched.alpha_bars[1:] < sched.alpha_bars[:-1])
    assert float(sched.alpha_bars[-1]) < 1e-6
    torch.testing.assert_close(sched.alpha_bars, torch.cumprod(1 - sched.betas, 0))


def test_sigma_schedule_is_geometric_between_end_points():
    sched = ExponentialSigmaSchedule(1000, 0.005, 0.5)
    sig = sched.sigmas
    assert sig[0] == 0
    assert math.isclose(float(sig[1]), 0.005, rel_tol=1e-12) and math.isclose(float(sig[-1]), 0.5, rel_tol=1e-12)
    ratios = sig[2:] / sig[1:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 100 ** (1 / 999)), rtol=1e-12, atol=0)
    assert float(ExponentialSigmaSchedule(1, 0.005, 0.5).sigmas[1]) == 0.5


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_mask_schedule_end_points_and_monotone(kind):
    sched = MaskSchedule(100, kind)
    m = sched.mask_probs
    assert m[0] == 0 and m[-1] == 1
    assert torch.all(m[1:] > m[:-1])
    if kind == "linear":
        torch.testing.assert_close(m, torch.arange(101, dtype=torch.float64) / 100)


def test_schedule_validation_messages():
    with pytest.raises(ValueError, match="valid: \\['linear', 'cosine'\\]"):
        MaskSchedule(10, "quadratic")
    with pytest.raises(ValueError, match="positive int"):
        CosineBetaSchedule(0)
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        ExponentialSigmaSchedule(10, 0.5, 0.1)
