"""``scripts/studies/funnel_replay.py``: a funnel replayed on recorded stages, worked by hand."""

import pytest

from diffcrystal.errors import InputError
from diffcrystal.potential.funnel import FunnelSettings
from tests.script_loading import load_script

NC = "not_converged"


def record():
    """Three candidates recorded through stages (10, 20). Full ranking: c1 (-1.25), c0, c2; only
    c0's structure matches the target. Stage scores (energy + offset): after stage 1 c0 -1.00,
    c2 -0.97, c1 -0.90; after stage 2 c0 -1.10, c1 -0.95, c2 -0.92."""
    return {
        "target": "t", "stage_steps": [10, 20],
        "candidates": [
            {"label": "c0", "offset": 0.0, "steps": 80, "stages": [[-1.00, NC, 10], [-1.10, NC, 30]]},
            {"label": "c1", "offset": 0.0, "steps": 60, "stages": [[-0.90, NC, 10], [-0.95, NC, 30]]},
            {"label": "c2", "offset": 0.08, "steps": 70, "stages": [[-1.05, NC, 10], [-1.00, NC, 30]]},
        ],
        "ranked": [{"members": ["c1"], "score": -1.25, "matches_target": False},
                   {"members": ["c0"], "score": -1.20, "matches_target": True},
                   {"members": ["c2"], "score": -0.92, "matches_target": False}],
    }


def test_halving_prunes_the_full_answer_after_the_first_stage():
    replay = load_script("studies/funnel_replay")
    # stage 1 keeps ceil(3/2) = 2 (c0, c2) and prunes c1 after 10 steps; stage 2 keeps 1 (c0), c2 at 30
    row = replay.replay_target(record(), FunnelSettings(keep_fraction=0.5, keep_at_least=1))
    assert row["missed"] and row["energy_above_full_meV_atom"] == pytest.approx(50.0)
    assert row["answer_matches_target"] and not row["full_matches_target"]
    assert (row["steps"], row["steps_recorded"]) == (10 + 30 + 80, 210)


def test_a_margin_keeps_the_close_candidates():
    replay = load_script("studies/funnel_replay")
    # stage 1 cut -0.97 + 0.1 keeps c1 (-0.90); stage 2 cut -0.95 + 0.1 keeps c2 (-0.92)
    row = replay.replay_target(record(), FunnelSettings(keep_fraction=0.5, keep_at_least=1, margin=0.1))
    assert not row["missed"] and row["energy_above_full_meV_atom"] == 0
    assert row["steps"] == row["steps_recorded"] == 210


def test_records_of_other_stages_are_refused():
    replay = load_script("studies/funnel_replay")
    with pytest.raises(InputError, match="recorded on stages"):
        replay.replay_target(record(), FunnelSettings(stage_steps=(5, 20)))
