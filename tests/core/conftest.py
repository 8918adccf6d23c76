"""Fixtures for the core tests: a tiny dataset, its experiment config and a tiny trained generator."""

from pathlib import Path

import lightning as L
import numpy as np
import pytest

from diffcrystal.data.crystal import Crystal

TINY_MODEL = {"num_scalars": 16, "num_vectors": 4, "num_tensors": 0, "l_max": 1, "num_layers": 1,
              "edge_hidden": 16, "node_hidden": 16, "time_embed_dim": 16}


def tiny_crystals() -> list[Crystal]:
    """Four small, well-known ordered crystals (rock salt, perovskite, CsCl, fcc Cu)."""
    return [
        Crystal(np.eye(3) * 5.64, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                                   [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]],
                [11] * 4 + [17] * 4, label="NaCl"),
        Crystal(np.eye(3) * 3.905, [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                [38, 22, 8, 8, 8], label="SrTiO3"),
        Crystal(np.eye(3) * 4.12, [[0, 0, 0], [0.5, 0.5, 0.5]], [55, 17], label="CsCl"),
        Crystal(np.eye(3) * 3.61, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], [29] * 4, label="Cu"),
    ]


def write_tiny_dataset(folder: Path) -> Path:
    """The tiny crystals as an extxyz file in ``folder``."""
    from ase.io import write

    path = folder / "tiny.extxyz"
    write(path, [c.to_atoms() for c in tiny_crystals()], format="extxyz")
    return path


def tiny_config(data: Path, mode: str = "csp", **train) -> dict:
    """An ExperimentConfig dict for the tiny dataset."""
    return {
        "name": f"tiny_{mode}",
        "data": {"train": str(data), "val": str(data), "batch_size": 4, "canonical": False},
        "model": dict(TINY_MODEL, predict_species=mode == "denovo"),
        "diffusion": {"mode": mode, "num_timesteps": 100},
        "train": {"max_steps": 2, "max_epochs": 1000, "learning_rate": 3e-3, "lr_warmup_steps": 1,
                  "checkpoint_every_n_steps": 1, "log_every_n_steps": 1, "ema_decay": 0.9, **train},
    }


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def tiny_generators(tmp_path_factory, tiny_data) -> dict[str, Path]:
    """Generator checkpoints (CSP and de novo) trained for a few steps on the tiny data."""
    from diffcrystal.training.config import ExperimentConfig
    from diffcrystal.training.train import train

    paths = {}
    for mode in ("csp", "denovo"):
        config = ExperimentConfig.from_dict(tiny_config(tiny_data, mode, max_steps=3))
        result = train(config, out_dir=tmp_path_factory.mktemp(f"run_{mode}"), progress=False)
        paths[mode] = result.generator_path
    return paths


@pytest.fixture
def make_config():
    """``tiny_config`` as a fixture (test modules cannot import conftest)."""
    return tiny_config


class Interrupt(L.Callback):
    """Stops training as a Ctrl-C would, once ``at_step`` optimiser steps are done."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= self.at_step:
            raise KeyboardInterrupt
