"""DenoiserConfig: round trip, validation of keys and values."""

import json
from pathlib import Path

import pytest

from diffcrystal.models import DenoiserConfig


def test_round_trip_through_json():
    cfg = DenoiserConfig(l_max=2, num_layers=2, predict_species=True)
    assert DenoiserConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ValueError, match="valid keys.*num_layers"):
        DenoiserConfig.from_dict({"hidden": 3})


@pytest.mark.parametrize(
    "kwargs", [{"l_max": 3}, {"num_layers": 0}, {"num_vectors": 0}, {"radial_max": 0.0}]
)
def test_bad_values_raise(kwargs):
    with pytest.raises(ValueError):
        DenoiserConfig(**kwargs)


CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_build_species_aware_models(path):
    """Every shipped experiment config validates and builds a denoiser whose messages see both
    atoms (DESIGN.md: radial-only weights let a CSP model ignore composition)."""
    from diffcrystal.models import Denoiser
    from diffcrystal.training.config import load_config

    config = load_config(path)
    assert config.model.pairwise_messages
    model = Denoiser(config.model)
    assert all(block.pair is not None for block in model.layers)
