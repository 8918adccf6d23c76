"""The study arms of ``configs/study/`` (issue 27) compare with ``configs/mp20_csp.yaml``: same
data, hold-out split and diffusion (so their validation losses are losses on the same
structures and noise), a schedule that ends within the arm's time budget, and a network small
enough to bundle. An arm that runs as several CPU processes (DDP) splits the same global batch."""

import dataclasses
from pathlib import Path

import pytest

from diffcrystal.models import Denoiser
from diffcrystal.training.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STUDY_ARMS = sorted((CONFIGS / "study").glob("*.yaml"))
MAX_PARAMETERS = 1_500_000
"""Largest denoiser of a study arm: its Lightning checkpoint (weights, EMA copy, two Adam
moments) stays under 20 MB in float32."""


def test_the_study_has_arms():
    assert "mp20_csp_wide.yaml" in [path.name for path in STUDY_ARMS]


@pytest.mark.parametrize("path", STUDY_ARMS, ids=lambda path: path.stem)
def test_arm_compares_with_the_bundled_run(path):
    arm, baseline = load_config(path), load_config(CONFIGS / "mp20_csp.yaml")
    processes = arm.train.devices if arm.train.strategy == "ddp" else 1
    assert dataclasses.replace(arm.data, batch_size=arm.data.batch_size * processes) == baseline.data
    assert arm.train.seed == baseline.train.seed  # the seed draws the validation hold-out
    same_loss = dataclasses.replace(arm.diffusion, atom_loss_average=baseline.diffusion.atom_loss_average)
    assert same_loss == baseline.diffusion and arm.sampling == baseline.sampling  # the loss reduction is an arm's knob
    assert arm.model.num_vectors == baseline.model.num_vectors and arm.model.l_max == baseline.model.l_max
    assert arm.train.max_hours is not None and arm.train.max_steps >= 1
    parameters = sum(p.numel() for p in Denoiser(arm.model).parameters())
    assert parameters <= MAX_PARAMETERS, parameters


def test_the_winners_longer_run_is_the_wide_arm_on_a_longer_schedule():
    """Item 2 of the issue: the winner's longer run trains the wide arm's network on the same
    data, noise and peak learning rate (checked above for every arm), only for longer, and from
    scratch: it must not depend on weights in an ignored folder that a new checkout lacks."""
    longer, wide = load_config(CONFIGS / "study" / "mp20_csp_wide_long.yaml"), load_config(CONFIGS / "study" / "mp20_csp_wide.yaml")
    assert longer.model == wide.model and longer.diffusion == wide.diffusion and longer.data == wide.data
    assert longer.train.init_from is None
    assert longer.train.max_steps > 3 * wide.train.max_steps
    assert longer.train.learning_rate == wide.train.learning_rate


def test_the_two_process_restart_is_the_restart_on_both_cores():
    """The second cycle switched to two CPU processes half-way: everything that shapes the
    optimisation (network, diffusion, schedule, global batch) is the one-core config's."""
    one, two = (load_config(CONFIGS / "study" / name)
                for name in ("mp20_csp_wide_restart.yaml", "mp20_csp_wide_restart_2cpu.yaml"))
    assert (two.train.accelerator, two.train.devices, two.train.strategy) == ("cpu", 2, "ddp")
    assert two.data.batch_size * two.train.devices == one.data.batch_size
    assert two.model == one.model and two.diffusion == one.diffusion and two.sampling == one.sampling
    same_schedule = dataclasses.replace(two.train, accelerator=one.train.accelerator, devices=one.train.devices,
                                        strategy=one.train.strategy)
    assert same_schedule == one.train


def test_the_atom_loss_arm_is_the_restart_but_for_the_loss_reduction():
    """The ablation of the loss reduction: same init, data, batches, schedule and noise as the
    second cycle's one-process steps, so at equal steps the runs differ in the reduction alone."""
    restart, atom = (load_config(CONFIGS / "study" / name)
                     for name in ("mp20_csp_wide_restart.yaml", "mp20_csp_wide_restart_atom_loss.yaml"))
    assert (restart.diffusion.atom_loss_average, atom.diffusion.atom_loss_average) == ("crystal", "atom")
    assert dataclasses.replace(atom.diffusion, atom_loss_average="crystal") == restart.diffusion
    assert (atom.model, atom.data, atom.train, atom.sampling) == (restart.model, restart.data, restart.train,
                                                                  restart.sampling)


def test_the_third_cycle_continues_the_second_from_its_final_weights():
    """The third cosine cycle trains the bundled network (the second cycle's end) on the same
    data, split and noise, from a lower peak rate, starting from weights a new checkout has."""
    second, third = (load_config(CONFIGS / "study" / name)
                     for name in ("mp20_csp_wide_restart.yaml", "mp20_csp_wide_restart3.yaml"))
    assert (third.model, third.data, third.diffusion, third.sampling) == (second.model, second.data,
                                                                          second.diffusion, second.sampling)
    start = CONFIGS.parent / third.train.init_from
    assert start == CONFIGS.parent / "checkpoints/training/mp20_csp_wide_restart/generator_step60000.safetensors"
    assert start.is_file()
    assert third.train.learning_rate < second.train.learning_rate
