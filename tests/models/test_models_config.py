"""DenoiserConfig: round trip, validation of keys and values."""

import json

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
