"""Joint training loss, modes, config round trip."""

import math

import pytest
import torch

from diffcrystal.data import keys
from diffcrystal.diffusion import (
    CoordDiffusion,
    DiffusionConfig,
    ExponentialSigmaSchedule,
    JointDiffusion,
    LatticeDiffusion,
    CosineBetaSchedule,
    NonFiniteLossError,
    build_joint_diffusion,
    make_template,
)
from diffcrystal.diffusion.joint import per_structure_mean


def clean_batch(num_atoms=(1, 4, 9), seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(num_atoms)
    batch = make_template(list(num_atoms), torch.randint(1, 101, (n,), generator=g))
    batch[keys.LATTICE] = 4 * torch.eye(3).repeat(len(num_atoms), 1, 1) + 0.1 * torch.randn(len(num_atoms), 3, 3, generator=g)
    batch[keys.FRAC_COORDS] = torch.rand(n, 3, generator=g)
    return batch


class LinearDenoiser(torch.nn.Module):
    """Tiny learnable stand-in: every output is a parameter times a simple input feature."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.3))
        self.b = torch.nn.Parameter(torch.tensor(0.2))
        self.c = torch.nn.Parameter(torch.zeros(100))
        self.seen = []

    def forward(self, batch):
        self.seen.append(batch)
        n = batch[keys.FRAC_COORDS].shape[0]
        return {
            keys.EPS_LATTICE: self.a * batch[keys.LATTICE],
            keys.COORD_SCORE: self.b * (batch[keys.FRAC_COORDS] - 0.5),
            keys.SPECIES_LOGITS: self.c.expand(n, -1),
        }


def test_csp_has_no_species_term_and_denovo_does():
    batch = clean_batch()
    g = torch.Generator().manual_seed(1)
    csp = build_joint_diffusion(DiffusionConfig(mode="csp", num_timesteps=50))
    out = csp.training_loss(LinearDenoiser(), batch, g)
    assert set(out) == {"loss", "loss_lattice", "loss_coords"}
    den = build_joint_diffusion(DiffusionConfig(mode="denovo", num_timesteps=50, species_loss_weight=2.0))
    out = den.training_loss(LinearDenoiser(), batch, g)
    assert set(out) == {"loss", "loss_lattice", "loss_coords", "loss_species"}
    expected = out["loss_lattice"] + out["loss_coords"] + 2.0 * out["loss_species"]
    torch.testing.assert_close(out["loss"], expected)


def test_gradients_flow_to_every_output_and_noisy_batch_is_well_formed():
    batch = clean_batch()
    before = {k: batch[k].clone() for k in (keys.LATTICE, keys.FRAC_COORDS, keys.ATOMIC_NUMBERS)}
    model = LinearDenoiser()
    joint = build_joint_diffusion(DiffusionConfig(mode="denovo", num_timesteps=1))  # t = T: species all masked
    joint.training_loss(model, batch, torch.Generator().manual_seed(2))["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    noisy = model.seen[0]
    assert torch.all(noisy[keys.ATOMIC_NUMBERS] == 0)
    torch.testing.assert_close(noisy[keys.TIME], torch.ones(3))
    f = noisy[keys.FRAC_COORDS]
    assert float(f.min()) >= 0 and float(f.max()) < 1
    for k, v in before.items():  # the clean batch is not modified
        assert torch.equal(batch[k], v) and keys.TIME not in batch


def test_time_input_is_t_over_T_and_per_structure_averaging():
    joint = build_joint_diffusion(DiffusionConfig(num_timesteps=1000))
    model = LinearDenoiser()
    joint.training_loss(model, clean_batch(), torch.Generator().manual_seed(3))
    tt = model.seen[0][keys.TIME] * 1000
    torch.testing.assert_close(tt, tt.round())
    assert float(tt.min()) >= 1 and float(tt.max()) <= 1000
    values = torch.tensor([1.0, 2.0, 2.0, 2.0, 2.0, 10.0])
    torch.testing.assert_close(per_structure_mean(values, torch.tensor([0, 1, 1, 1, 1, 2]), 3), torch.tensor([1.0, 2.0, 10.0]))


def test_nan_loss_raises_naming_the_field():
    class NaNCoords(LinearDenoiser):
        def forward(self, batch):
            out = super().forward(batch)
            out[keys.COORD_SCORE] = out[keys.COORD_SCORE] * float("nan")
            return out

    joint = build_joint_diffusion(DiffusionConfig(num_timesteps=20))
    with pytest.raises(NonFiniteLossError, match="loss_coords"):
        joint.training_loss(NaNCoords(), clean_batch(), torch.Generator().manual_seed(4))


def test_missing_output_and_mismatched_T_are_errors():
    joint = build_joint_diffusion(DiffusionConfig(num_timesteps=20))
    with pytest.raises(ValueError, match="lacks 'coord_score'"):
        joint.training_loss(lambda b: {keys.EPS_LATTICE: b[keys.LATTICE]}, clean_batch(), torch.Generator())
    with pytest.raises(ValueError, match="share num_timesteps"):
        JointDiffusion({"lattice": LatticeDiffusion(CosineBetaSchedule(10)), "coords": CoordDiffusion(ExponentialSigmaSchedule(20))})
    with pytest.raises(ValueError, match="unknown fields"):
        JointDiffusion({"lattice": LatticeDiffusion(CosineBetaSchedule(10))}, {"species": 1.0})


def test_config_round_trip_unknown_keys_and_dataset_presets():
    cfg = DiffusionConfig(mode="denovo", num_timesteps=200, lattice_length_scale_A=3.0, lattice_clip_x0=5.0)
    again = DiffusionConfig.from_dict(cfg.to_dict())
    assert again == cfg
    with pytest.raises(ValueError, match="valid keys: \\['mode', 'num_timesteps'"):
        DiffusionConfig.from_dict({**cfg.to_dict(), "step_lr": 1e-5})
    with pytest.raises(ValueError, match="valid: \\['csp', 'denovo'\\]"):
        DiffusionConfig(mode="ab_initio")
    assert DiffusionConfig.for_dataset("perov_5").corrector_step_lr == 5e-7
    assert DiffusionConfig.for_dataset("carbon_24", num_timesteps=100).corrector_step_lr == 5e-6
    with pytest.raises(ValueError, match="known: \\['carbon_24', 'mp_20', 'perov_5'\\]"):
        DiffusionConfig.for_dataset("oqmd")
    joint = build_joint_diffusion(cfg)
    assert joint.fields["lattice"].length_scale_A == 3.0 and math.isclose(joint.loss_weights["species"], 1.0)


@pytest.mark.parametrize("mode", ["csp", "denovo"])
def test_atom_loss_average_weighs_crystals_by_their_atoms(mode, monkeypatch):
    """'crystal': mean over crystals of each crystal's atom mean; 'atom': mean over all atoms.
    Both recomputed in float64 from the per-atom rows each process returned."""
    num_atoms = (1, 4, 9)
    rows_seen: dict[str, list[torch.Tensor]] = {}
    losses = {}
    for reduction in ("crystal", "atom"):
        joint = build_joint_diffusion(DiffusionConfig(mode=mode, num_timesteps=50, atom_loss_average=reduction))
        for name, proc in joint.fields.items():
            def recording(*args, _loss=proc.loss, _name=name, **kwargs):
                rows = _loss(*args, **kwargs)
                rows_seen.setdefault(_name, []).append(rows.detach().double())
                return rows
            monkeypatch.setattr(proc, "loss", recording)
        losses[reduction] = joint.training_loss(LinearDenoiser(), clean_batch(num_atoms), torch.Generator().manual_seed(5))
    crystal_of_atom = torch.repeat_interleave(torch.arange(len(num_atoms)), torch.tensor(num_atoms))
    for name, (crystal_rows, atom_rows) in rows_seen.items():
        torch.testing.assert_close(crystal_rows, atom_rows)  # same seed: same noise, same per-row losses
        if crystal_rows.shape[0] == len(num_atoms):  # the lattice: one row per crystal either way
            expected = {"crystal": crystal_rows.mean(), "atom": crystal_rows.mean()}
        else:
            per_crystal = torch.stack([crystal_rows[crystal_of_atom == b].mean() for b in range(len(num_atoms))])
            expected = {"crystal": per_crystal.mean(), "atom": crystal_rows.sum() / sum(num_atoms)}
            assert not torch.isclose(expected["crystal"], expected["atom"])
        for reduction in ("crystal", "atom"):
            torch.testing.assert_close(losses[reduction][f"loss_{name}"].double(), expected[reduction])
    with pytest.raises(ValueError, match="atom_loss_average must be one of \\['crystal', 'atom'\\], got 'batch'"):
        DiffusionConfig(atom_loss_average="batch")
    assert DiffusionConfig.from_dict({"atom_loss_average": "atom"}).atom_loss_average == "atom"
    assert build_joint_diffusion(DiffusionConfig(atom_loss_average="atom")).with_field(
        "coords", CoordDiffusion(ExponentialSigmaSchedule(1000))).atom_loss_average == "atom"
