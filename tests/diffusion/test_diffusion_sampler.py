"""The predictor-corrector sampler, driven by exact scores of toy distributions."""

import math

import pytest
import torch

from diffcrystal import MASK_SPECIES
from diffcrystal.data import keys
from diffcrystal.diffusion import (
    CoordDiffusion,
    CosineBetaSchedule,
    DiffusionConfig,
    ExponentialSigmaSchedule,
    JointDiffusion,
    LatticeDiffusion,
    MaskSchedule,
    SpeciesDiffusion,
    build_joint_diffusion,
    make_template,
    sample,
    timestep_grid,
)
from tests.diffusion.exact_toy_denoiser import ExactToyDenoiser

MEAN_A, STD_A = 3.0, 0.5


def lattice_only_run(num_steps, scale=1.0, n=4000, seed=0, spacing=1.0):
    joint = JointDiffusion({"lattice": LatticeDiffusion(CosineBetaSchedule(1000), length_scale_A=scale)})
    den = ExactToyDenoiser(joint, lattice_mean_A=MEAN_A, lattice_std_A=STD_A)
    template = make_template([1] * n, torch.ones(n, dtype=torch.long))
    out = sample(joint, den, template, num_steps=num_steps, generator=torch.Generator().manual_seed(seed),
                 dtype=torch.float64, spacing=spacing)
    return joint, out[keys.LATTICE]


def predicted_sampler_moments(joint, num_steps, scale, start=1000, m=0.0, v=1.0, grid=None):
    """Independent derivation: with the exact eps of Gaussian data, each ancestral step is
    affine-Gaussian, x_s = a x_t + b + sqrt(beta_tilde) z, with the DDPM posterior (eq. 7) of
    the respaced chain; propagate mean ``m`` and variance ``v`` (of the N(0, 1) prior by
    default) from timestep ``start``."""
    ab = joint.fields["lattice"].schedule.alpha_bars.tolist()
    mu, var = MEAN_A / scale, (STD_A / scale) ** 2
    grid = grid or timestep_grid(start, num_steps)
    for t, s in zip(grid[:-1], grid[1:]):
        c = math.sqrt(1 - ab[t]) / (ab[t] * var + 1 - ab[t])  # eps_hat = c (x - sqrt(ab_t) mu)
        x0_a = (1 - math.sqrt(1 - ab[t]) * c) / math.sqrt(ab[t])  # x0_hat = x0_a x + x0_b
        x0_b = math.sqrt(1 - ab[t]) * c * mu
        beta = 1 - ab[t] / ab[s]
        coef0 = math.sqrt(ab[s]) * beta / (1 - ab[t])
        coeft = math.sqrt(1 - beta) * (1 - ab[s]) / (1 - ab[t])
        a, b = coef0 * x0_a + coeft, coef0 * x0_b
        m, v = a * m + b, a * a * v + (1 - ab[s]) / (1 - ab[t]) * beta
    return m * scale, math.sqrt(v) * scale


def test_lattice_sampler_recovers_gaussian_moments_with_1000_steps():
    joint, L = lattice_only_run(1000)
    assert abs(float(L.mean()) - MEAN_A) < 0.01
    assert abs(float(L.std()) / STD_A - 1) < 0.015
    m, s = predicted_sampler_moments(joint, 1000, 1.0)
    assert abs(s / STD_A - 1) < 0.005  # 1000 steps: the ancestral bias is negligible


@pytest.mark.parametrize("num_steps,scale", [(100, 1.0), (100, 2.5), (50, 1.0)])
def test_strided_lattice_sampler_matches_its_exact_affine_gaussian_prediction(num_steps, scale):
    """With fewer steps the ancestral variance beta_tilde omits Var[x0 | x_t], so the
    sample std falls short of the data's (measured: -4 % at 100 steps, -6.5 % at 50, raw Å);
    the sampler must match the exact prediction of its own update tightly."""
    joint, L = lattice_only_run(num_steps, scale)
    m, s = predicted_sampler_moments(joint, num_steps, scale)
    n = L.numel()
    assert abs(float(L.mean()) - m) < 5 * s / n**0.5
    assert abs(float(L.std()) / s - 1) < 5 / (2 * n) ** 0.5
    assert abs(m - MEAN_A) < 0.01 and abs(s / STD_A - 1) < 0.08


@pytest.mark.parametrize("spacing", [0.7, 1.5, 2.0])
def test_lattice_sampler_on_a_power_grid_matches_its_exact_affine_gaussian_prediction(spacing):
    """The same exact propagation, walked on the uneven grid written out here by hand."""
    num_steps = 40
    grid = [round(1000 * (1 - k / num_steps) ** spacing) for k in range(num_steps + 1)]
    assert len(set(grid)) == num_steps + 1  # no rounding collisions at these settings
    assert timestep_grid(1000, num_steps, spacing) == grid
    joint, L = lattice_only_run(num_steps, spacing=spacing)
    m, s = predicted_sampler_moments(joint, num_steps, 1.0, grid=grid)
    n = L.numel()
    assert abs(float(L.mean()) - m) < 5 * s / n**0.5
    assert abs(float(L.std()) / s - 1) < 5 / (2 * n) ** 0.5


def coord_run(num_steps, corrector_steps, n=1000, std=0.03, center=(0.2, 0.7, 0.97)):
    joint = JointDiffusion({"coords": CoordDiffusion(ExponentialSigmaSchedule(1000))})
    den = ExactToyDenoiser(joint, coord_center=center, coord_std=std)
    template = make_template([1] * n, torch.ones(n, dtype=torch.long))
    out = sample(
        joint, den, template, num_steps=num_steps, corrector_steps=corrector_steps,
        generator=torch.Generator().manual_seed(1), dtype=torch.float64,
    )
    F = out[keys.FRAC_COORDS]
    assert float(F.min()) >= 0 and float(F.max()) < 1
    phase = torch.exp(2j * math.pi * (F - torch.tensor(center, dtype=torch.float64))).mean(0)  # (3,)
    return phase, math.exp(-2 * math.pi**2 * std**2), den.calls


def circular_std(phase: torch.Tensor) -> float:
    """Std of a wrapped normal from its mean resultant length R = exp(-2 pi^2 std^2)."""
    return math.sqrt(-math.log(float(phase.abs().mean())) / (2 * math.pi**2))


@pytest.mark.parametrize(
    "num_steps,corrector_steps,std_tolerance",
    # 100 steps + corrector: within 3.5 % (a 10 % error of the score moves it by 5-7 %);
    # 50 plain ancestral steps: measured 7 % too narrow (the last step is a noiseless
    # Tweedie denoising from sigma ~ 0.0055), so a loose band.
    [(100, 1, 0.035), (50, 0, 0.10)],
)
def test_coordinate_sampler_returns_to_wrapped_normal_around_known_point(num_steps, corrector_steps, std_tolerance):
    """Uniform start; the exact marginal score must bring samples back to WN(c, 0.03^2):
    circular mean at c (including across the periodic boundary at 0.97) and circular std 0.03
    (sampling error of the std here ~1.3 %)."""
    phase, expected, calls = coord_run(num_steps, corrector_steps)
    assert torch.all(phase.angle().abs() / (2 * math.pi) < 0.003)
    assert abs(circular_std(phase) / 0.03 - 1) < std_tolerance
    assert calls == num_steps * (1 + corrector_steps)


@pytest.mark.slow
def test_coordinate_sampler_1000_steps_with_corrector():
    phase, expected, _ = coord_run(1000, 1, n=2000)
    assert torch.all(phase.angle().abs() / (2 * math.pi) < 0.003)
    assert abs(circular_std(phase) / 0.03 - 1) < 0.03


def test_species_sampler_reproduces_predicted_distribution_and_respects_allowed():
    probs = torch.zeros(100, dtype=torch.float64)
    probs[[0, 7, 25]] = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)  # H, O, Fe
    joint = JointDiffusion({"species": SpeciesDiffusion(MaskSchedule(1000))})
    n = 6000
    template = make_template([1] * n)
    out = sample(joint, ExactToyDenoiser(joint, species_probs=probs), template, num_steps=50, generator=torch.Generator().manual_seed(2))
    z = out[keys.ATOMIC_NUMBERS]
    assert not torch.any(z == MASK_SPECIES)
    for number, p in ((1, 0.5), (8, 0.3), (26, 0.2)):
        assert abs(float((z == number).double().mean()) - p) < 5 * (p * (1 - p) / n) ** 0.5
    restricted = joint.with_field("species", joint.fields["species"].restrict([8, 26]))
    z = sample(restricted, ExactToyDenoiser(restricted, species_probs=probs), template, num_steps=10, generator=torch.Generator().manual_seed(3))[keys.ATOMIC_NUMBERS]
    assert abs(float((z == 8).double().mean()) - 0.6) < 5 * (0.24 / n) ** 0.5 and set(z.unique().tolist()) == {8, 26}


@pytest.mark.parametrize("num_steps", [1000, 200, 100, 50])
def test_denovo_sampler_runs_for_every_step_count(num_steps):
    joint = build_joint_diffusion(DiffusionConfig(mode="denovo"))
    den = ExactToyDenoiser(joint)
    template = make_template([3, 1, 5])
    seen = []
    out = sample(joint, den, template, num_steps=num_steps, generator=torch.Generator().manual_seed(4), progress=seen.append)
    assert seen == list(range(num_steps))
    assert den.calls == 2 * num_steps  # predictor + one corrector call per step
    assert out[keys.LATTICE].shape == (3, 3, 3) and out[keys.LATTICE].dtype == torch.get_default_dtype()
    f = out[keys.FRAC_COORDS]
    assert f.shape == (9, 3) and float(f.min()) >= 0 and float(f.max()) < 1
    assert out[keys.ATOMIC_NUMBERS].shape == (9,) and int(out[keys.ATOMIC_NUMBERS].min()) >= 1
    assert keys.TIME not in out


def test_csp_sampling_keeps_species_is_deterministic_and_ignores_global_rng():
    joint = build_joint_diffusion(DiffusionConfig(mode="csp", num_timesteps=100))
    species = torch.tensor([8, 8, 22, 38, 8])
    template = make_template([2, 3], species)
    torch.manual_seed(0)
    a = sample(joint, ExactToyDenoiser(joint), template, num_steps=20, corrector_steps=0, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(123)
    torch.rand(7)
    b = sample(joint, ExactToyDenoiser(joint), template, num_steps=20, corrector_steps=0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[keys.ATOMIC_NUMBERS], species)
    assert torch.equal(a[keys.LATTICE], b[keys.LATTICE]) and torch.equal(a[keys.FRAC_COORDS], b[keys.FRAC_COORDS])
    with pytest.raises(ValueError, match="needs 'atomic_numbers'"):
        sample(joint, ExactToyDenoiser(joint), make_template([2]), num_steps=5, generator=torch.Generator())
    with pytest.raises(ValueError, match="num_steps must be an int in 1..100"):
        sample(joint, ExactToyDenoiser(joint), template, num_steps=101, generator=torch.Generator())


@pytest.mark.parametrize("spacing", [0.3, 0.5, 1.0, 1.5, 2.0, 3.0, 7.0])
def test_timestep_grid_is_strictly_decreasing_for_all_step_counts(spacing):
    for k in (1, 7, 50, 100, 200, 333, 999, 1000):
        grid = timestep_grid(1000, k, spacing)
        assert grid[0] == 1000 and grid[-1] == 0 and len(grid) == k + 1
        assert all(a > b for a, b in zip(grid, grid[1:]))
        # a point off the rounded power law was moved only to make room: it sits one step
        # above the next point, or one step below the previous one
        target = [round(1000 * (1 - i / k) ** spacing) for i in range(k + 1)]
        moved = [i for i in range(k + 1) if grid[i] != target[i]]
        assert all(grid[i] == grid[i + 1] + 1 or grid[i] == grid[i - 1] - 1 for i in moved)


def test_a_wider_spacing_puts_more_steps_at_low_noise():
    counts = [sum(t <= 100 for t in timestep_grid(1000, 100, rho)[1:]) for rho in (0.5, 1.0, 2.0, 3.0)]
    assert counts == sorted(counts) and counts[1] == 11 and counts[3] > 40 and counts[0] < 3


@pytest.mark.parametrize("spacing", [0.0, -1.0, float("nan"), float("inf")])
def test_timestep_grid_refuses_a_spacing_below_one_or_not_finite(spacing):
    with pytest.raises(ValueError, match="step spacing"):
        timestep_grid(1000, 100, spacing)


def test_a_walk_started_from_a_noised_template_follows_the_affine_gaussian_propagation():
    # SDEdit start: L_t0 = sqrt(ab) L_template + sqrt(1 - ab) eps, then the usual steps
    n, t0, steps, value = 4000, 300, 30, 5.0
    joint = JointDiffusion({"lattice": LatticeDiffusion(CosineBetaSchedule(1000))})
    den = ExactToyDenoiser(joint, lattice_mean_A=MEAN_A, lattice_std_A=STD_A)
    template = make_template([1] * n, torch.ones(n, dtype=torch.long))
    template[keys.LATTICE] = torch.full((n, 3, 3), value, dtype=torch.float64)
    out = sample(joint, den, template, num_steps=steps, generator=torch.Generator().manual_seed(0),
                 dtype=torch.float64, start=t0)[keys.LATTICE]
    ab = float(joint.fields["lattice"].schedule.alpha_bars[t0])
    mean, std = predicted_sampler_moments(joint, steps, 1.0, start=t0, m=math.sqrt(ab) * value, v=1 - ab)
    assert abs(mean - MEAN_A) > 0.3  # the start still shows: not the data mean
    assert abs(float(out.mean()) - mean) < 0.01
    assert abs(float(out.std()) / std - 1) < 0.02


def test_a_started_coordinate_walk_without_a_score_keeps_the_forward_noise():
    # zero score, no corrector, one step t0 -> 0: F = F_template + sigma_t0 eps (mod 1)
    n, t0 = 3000, 200
    coords = CoordDiffusion(ExponentialSigmaSchedule(1000))
    joint = JointDiffusion({"coords": coords})
    template = make_template([1] * n, torch.ones(n, dtype=torch.long))
    start = torch.rand(n, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    template[keys.FRAC_COORDS] = start

    def no_score(batch):
        return {keys.COORD_SCORE: torch.zeros_like(batch[keys.FRAC_COORDS])}

    out = sample(joint, no_score, template, num_steps=1, corrector_steps=0,
                 generator=torch.Generator().manual_seed(2), dtype=torch.float64, start=t0)[keys.FRAC_COORDS]
    shift = torch.remainder(out - start + 0.5, 1.0) - 0.5
    sigma = float(coords.schedule.sigmas[t0])
    assert abs(float(shift.std()) / sigma - 1) < 0.03 and abs(float(shift.mean())) < 3 * sigma / math.sqrt(3 * n)


@pytest.mark.parametrize("start, message", [(0, "start must be an int timestep"), (1001, "start must be"),
                                            (True, "start must be")])
def test_a_start_outside_the_time_axis_is_refused(start, message):
    joint = JointDiffusion({"lattice": LatticeDiffusion(CosineBetaSchedule(1000))})
    template = make_template([1], torch.ones(1, dtype=torch.long))
    template[keys.LATTICE] = torch.eye(3)[None]
    with pytest.raises(ValueError, match=message):
        sample(joint, ExactToyDenoiser(joint), template, num_steps=1, generator=torch.Generator(), start=start)


def test_a_start_needs_the_fields_in_the_template():
    joint = JointDiffusion({"lattice": LatticeDiffusion(CosineBetaSchedule(1000))})
    template = make_template([1], torch.ones(1, dtype=torch.long))
    with pytest.raises(ValueError, match="needs 'lattice' in the template"):
        sample(joint, ExactToyDenoiser(joint), template, num_steps=1, generator=torch.Generator(), start=10)


class TimeRecordingDenoiser(ExactToyDenoiser):
    """The exact toy denoiser, recording the timestep of every call."""

    def __init__(self, joint):
        super().__init__(joint)
        self.timesteps = []

    def __call__(self, batch):
        self.timesteps.append(round(float(batch[keys.TIME][0]) * self.joint.num_timesteps))
        return super().__call__(batch)


def test_corrector_runs_only_above_corrector_min_t():
    joint = build_joint_diffusion(DiffusionConfig(mode="csp"))
    template = make_template([2, 3], torch.tensor([8, 8, 22, 38, 8]))
    den = TimeRecordingDenoiser(joint)
    sample(joint, den, template, num_steps=4, corrector_steps=2, corrector_min_t=500,
           generator=torch.Generator().manual_seed(0))
    # grid 1000, 750, 500, 250 -> 0: two corrector calls and the predictor's at t > 500, the predictor's alone below
    assert den.timesteps == [1000, 1000, 1000, 750, 750, 750, 500, 250]


def test_corrector_min_t_at_or_above_the_start_is_plain_ancestral_sampling():
    joint = build_joint_diffusion(DiffusionConfig(mode="csp", num_timesteps=100))
    template = make_template([2, 3], torch.tensor([8, 8, 22, 38, 8]))
    runs = [sample(joint, ExactToyDenoiser(joint), template, num_steps=20, generator=torch.Generator().manual_seed(5),
                   **options)
            for options in ({"corrector_steps": 0}, {"corrector_steps": 3, "corrector_min_t": 100})]
    assert all(torch.equal(runs[0][key], runs[1][key]) for key in (keys.LATTICE, keys.FRAC_COORDS))
    with_corrector = sample(joint, ExactToyDenoiser(joint), template, num_steps=20, corrector_steps=3,
                            corrector_min_t=99, generator=torch.Generator().manual_seed(5))
    assert not torch.equal(with_corrector[keys.FRAC_COORDS], runs[0][keys.FRAC_COORDS])


def test_corrector_runs_only_inside_its_window():
    joint = build_joint_diffusion(DiffusionConfig(mode="csp"))
    template = make_template([2, 3], torch.tensor([8, 8, 22, 38, 8]))
    den = TimeRecordingDenoiser(joint)
    sample(joint, den, template, num_steps=4, corrector_steps=2, corrector_min_t=250, corrector_max_t=750,
           generator=torch.Generator().manual_seed(0))
    # grid 1000, 750, 500, 250 -> 0: correctors at 750 and 500 only (250 < t <= 750)
    assert den.timesteps == [1000, 750, 750, 750, 500, 500, 500, 250]


@pytest.mark.parametrize("bad", [20, 10, 2.5, True])
def test_corrector_max_t_must_lie_above_corrector_min_t(bad):
    joint = build_joint_diffusion(DiffusionConfig(mode="csp", num_timesteps=100))
    with pytest.raises(ValueError, match=r"corrector_max_t must be None or an int timestep > corrector_min_t \(20\)"):
        sample(joint, ExactToyDenoiser(joint), make_template([2], torch.tensor([8, 8])), num_steps=5,
               corrector_min_t=20, corrector_max_t=bad, generator=torch.Generator())


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_corrector_min_t_must_be_a_timestep(bad):
    joint = build_joint_diffusion(DiffusionConfig(mode="csp", num_timesteps=100))
    with pytest.raises(ValueError, match="corrector_min_t must be an int timestep >= 0"):
        sample(joint, ExactToyDenoiser(joint), make_template([2], torch.tensor([8, 8])), num_steps=5,
               corrector_min_t=bad, generator=torch.Generator())
