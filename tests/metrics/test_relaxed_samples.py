"""``scripts/studies/relaxed_samples.py``: samples relaxed by a potential, scored against their
targets sample for sample, and ordered by energy; on hcp copper relaxed with ASE's EMT."""

from __future__ import annotations

import math

import pytest

from ase.build import bulk

from diffcrystal.data.crystal import Crystal
from diffcrystal.metrics import csp_metrics
from diffcrystal.metrics.csp import compare_with_target
from diffcrystal.potential.relax import relax_many
from diffcrystal.prediction import PredictSettings
from tests.script_loading import load_script


def hcp_copper(move_A: float = 0.0) -> Crystal:
    """hcp Cu (2 atoms, a primitive cell the matcher keeps), the second atom moved ``move_A`` Å
    along c and 0.1 Å along a."""
    atoms = bulk("Cu", "hcp", a=2.55, c=4.16)
    positions = atoms.get_positions()
    positions[1] += [0.1 if move_A else 0.0, 0.0, move_A]
    atoms.set_positions(positions)
    return Crystal.from_atoms(atoms, label="Cu")


def test_by_energy_puts_the_lowest_first_and_the_unrelaxed_last_in_order():
    study = load_script("studies/relaxed_samples")
    a, b, c, d = (object() for _ in range(4))
    ordered = study.by_energy([[a, b, None, c, d]], [[-3.0, -4.0, math.nan, math.nan, -3.5]])
    assert ordered == [[b, d, a, None, c]]


def test_relaxation_makes_a_loose_copper_sample_precise_and_the_row_counts_it():
    study = load_script("studies/relaxed_samples")
    target = hcp_copper()
    loose, exact = hcp_copper(move_A=0.6), hcp_copper()
    samples = [[loose, None, exact]]  # None: a sample that was no crystal
    before = [compare_with_target(s, target).rms for s in (loose, exact)]
    assert before[0] > study.PRECISE_RMSE > before[1]

    results = relax_many([("loose", loose.to_atoms()), ("exact", exact.to_atoms())], "emt",
                         PredictSettings().relax, workers=1, progress=False)
    relaxed = study.relaxed_candidates(samples, results)
    assert relaxed[0][1] is None and all(c is not None for c in (relaxed[0][0], relaxed[0][2]))
    assert compare_with_target(relaxed[0][0], target).rms < study.PRECISE_RMSE  # back to hcp

    raw_metrics = csp_metrics(samples, [target], workers=1, progress=False)
    metrics = csp_metrics(relaxed, [target], workers=1, progress=False)
    row = study.row_of("relaxed", metrics, raw_metrics)
    assert (row["precise_gained"], row["precise_lost"]) == (1, 0)
    assert (row["matched_gained"], row["matched_lost"]) == (0, 0)
    assert row["precise_at_1_percent"] == 100.0 and study.row_of("raw", raw_metrics)["precise_at_1_percent"] == 0.0


@pytest.mark.parametrize("option", [["--k", "0"], ["--limit", "0"]])
def test_a_bad_count_is_refused_in_one_line_before_anything_is_read(tmp_path, capsys, option):
    study = load_script("studies/relaxed_samples")
    out = tmp_path / "study"
    assert study.main([*option, "--checkpoint", str(tmp_path / "missing.safetensors"), "--out", str(out)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--k and --limit must be >= 1" in error
    assert not out.exists()


@pytest.mark.slow
def test_held_out_samples_are_the_same_for_the_same_seed(shared_data):
    from diffcrystal.ranked_evaluation import held_out_samples

    _, _, validation, first = held_out_samples("mp20_csp", k=2, limit=2, seed=3)
    _, _, _, again = held_out_samples("mp20_csp", k=2, limit=2, seed=3)
    assert len(first) == len(validation) == 2 and all(len(row) == 2 for row in first)
    for row, row_again in zip(first, again):
        for sample, sample_again in zip(row, row_again):
            assert sample.atomic_numbers.tolist() == sample_again.atomic_numbers.tolist()
            assert sample.frac_coords.tolist() == sample_again.frac_coords.tolist()
