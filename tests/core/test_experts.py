"""Low-noise experts: training on a timestep window, routing, and the combined checkpoint."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffcrystal.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from diffcrystal.data import keys
from diffcrystal.diffusion import DiffusionConfig, build_joint_diffusion, make_template
from diffcrystal.experts import EXPERT_PREFIX, LowNoiseRouter, attach_low_noise_expert
from diffcrystal.generator import Generator
from diffcrystal.training.config import ExperimentConfig
from diffcrystal.training.train import train


def test_training_draws_only_the_window():
    joint = build_joint_diffusion(DiffusionConfig(num_timesteps=100, train_timesteps=[3, 7]))
    t = joint.sample_timesteps(4000, generator=torch.Generator().manual_seed(0))
    assert set(t.tolist()) == {3, 4, 5, 6, 7}
    full = build_joint_diffusion(DiffusionConfig(num_timesteps=100))
    assert full.train_timesteps == (1, 100)


@pytest.mark.parametrize("window", [[0, 5], [6, 5], [1, 101], [1, 2, 3]])
def test_bad_window_is_refused(window):
    with pytest.raises(ValueError, match="train_timesteps"):
        DiffusionConfig(num_timesteps=100, train_timesteps=window)


class _Constant(nn.Module):
    """Answers every batch with ``value`` in each output (per crystal and per atom)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        num_graphs = batch[keys.TIME].shape[0]
        num_atoms = batch[keys.BATCH].shape[0]
        return {keys.EPS_LATTICE: torch.full((num_graphs, 3, 3), self.value),
                keys.COORD_SCORE: torch.full((num_atoms, 3), self.value)}


def _batch(times: list[int], atoms: list[int], num_timesteps: int = 100):
    batch = make_template(atoms, torch.ones(sum(atoms), dtype=torch.long))
    batch[keys.TIME] = torch.tensor(times, dtype=torch.float32) / num_timesteps
    return batch


def test_router_sends_each_side_to_its_network():
    base, expert = _Constant(1.0), _Constant(2.0)
    router = LowNoiseRouter(base, expert, max_timestep=30, num_timesteps=100)
    assert router(_batch([30, 30], [2, 3]))[keys.COORD_SCORE].unique().tolist() == [2.0]
    assert router(_batch([31, 31], [2, 3]))[keys.COORD_SCORE].unique().tolist() == [1.0]
    assert (base.calls, expert.calls) == (1, 1)  # one network per uniform batch

    out = router(_batch([10, 90, 30], [2, 3, 1]))  # mixed: crystal by crystal
    assert out[keys.EPS_LATTICE][:, 0, 0].tolist() == [2.0, 1.0, 2.0]
    assert out[keys.COORD_SCORE][:, 0].tolist() == [2.0, 2.0, 1.0, 1.0, 1.0, 2.0]


def test_router_refuses_a_switch_outside_the_walk():
    with pytest.raises(ValueError, match="max_timestep"):
        LowNoiseRouter(_Constant(1.0), _Constant(2.0), max_timestep=100, num_timesteps=100)


def _train_expert(tmp_path, make_config, tiny_data, base_path, window=(1, 30)):
    config = make_config(tiny_data, "csp", max_steps=2, init_from=str(base_path))
    config["diffusion"]["train_timesteps"] = list(window)
    result = train(ExperimentConfig.from_dict(config), out_dir=tmp_path / "expert_run", progress=False)
    return result.generator_path


def test_combined_checkpoint_routes_to_the_expert(tmp_path, make_config, tiny_data, tiny_generators):
    base_path = tiny_generators["csp"]
    expert_path = _train_expert(tmp_path, make_config, tiny_data, base_path)
    combined = attach_low_noise_expert(base_path, expert_path, tmp_path / "combined.safetensors")

    tensors, config = load_checkpoint(combined)
    assert config["low_noise_expert"]["max_timestep"] == 30
    assert any(name.startswith(EXPERT_PREFIX) for name in tensors)

    generator = Generator.from_checkpoint(combined)
    plain_base, plain_expert = Generator.from_checkpoint(base_path), Generator.from_checkpoint(expert_path)
    assert isinstance(generator.denoiser, LowNoiseRouter)
    gen = torch.Generator().manual_seed(0)
    batch = _batch([30, 30], [2, 3])
    batch[keys.LATTICE] = torch.eye(3).repeat(2, 1, 1) * 4.0 + 0.1 * torch.randn(2, 3, 3, generator=gen)
    batch[keys.FRAC_COORDS] = torch.rand(5, 3, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(generator.denoiser(batch), plain_expert.denoiser(batch))
        batch[keys.TIME] = torch.full((2,), 0.31)
        torch.testing.assert_close(generator.denoiser(batch), plain_base.denoiser(batch))

    crystals = generator.sample([2, 3], [[11, 17], [55, 17, 17]], num_steps=10, generator=torch.Generator().manual_seed(1))
    assert [c.num_atoms for c in crystals] == [2, 3]

    # a model fine-tuned from the combined file starts from its base network
    again = make_config(tiny_data, "csp", max_steps=1, init_from=str(combined))
    train(ExperimentConfig.from_dict(again), out_dir=tmp_path / "from_combined", progress=False)


def test_attach_refuses_what_is_not_an_expert(tmp_path, tiny_generators):
    base_path = tiny_generators["csp"]
    with pytest.raises(CheckpointError, match="not a low-noise expert"):
        attach_low_noise_expert(base_path, base_path, tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="another diffusion"):
        attach_low_noise_expert(base_path, tiny_generators["denovo"], tmp_path / "y.safetensors")
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()


def test_expert_weights_without_their_config_are_refused(tmp_path, tiny_generators):
    tensors, config = load_checkpoint(tiny_generators["csp"])
    tensors.update({EXPERT_PREFIX + name: t.clone() for name, t in list(tensors.items())})
    broken = save_checkpoint(tmp_path / "broken.safetensors", tensors, config)
    with pytest.raises(CheckpointError, match="low-noise expert"):
        Generator.from_checkpoint(broken)
