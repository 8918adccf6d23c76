"""The successive-halving relaxation funnel (diffcrystal.potential.funnel), with EMT."""

import math

import numpy as np
import pytest

from diffcrystal.errors import InputError
from diffcrystal.potential.funnel import FunnelSettings, relax_funnel, replay_funnel, stage_survivors
from diffcrystal.potential.relax import RelaxSettings, relax_many
from tests.predict.structures import AU, CU, b2, l10, rock_salt

SETTINGS = RelaxSettings(fmax=0.05, max_steps=120)


def candidates():
    """Five CuAu cells far apart in EMT energy: L1_0 at three strains, B2, rock salt."""
    items = [(f"l10-{s}", l10(3.95 * s, 3.75 * s).to_atoms()) for s in (0.97, 1.0, 1.04)]
    items.append(("b2", b2(3.1, species=(CU, AU)).to_atoms()))
    items.append(("b1", rock_salt(5.0, species=(CU, AU)).to_atoms()))
    return items


def test_stage_prunes_the_worst_by_energy_plus_offset(tmp_path):
    items = candidates()
    funnel = FunnelSettings(stage_steps=(3,), keep_fraction=0.5, keep_at_least=1, margin=0.0)
    offsets = [0.0, 0.0, 0.0, 0.0, 0.0]
    report = relax_funnel(items, "emt", SETTINGS, funnel, offsets, workers=1, progress=False, cache_dir=tmp_path)
    # independent reference: every candidate relaxed for the stage's 3 steps, no funnel
    stage = relax_many(items, "emt", RelaxSettings(fmax=0.05, max_steps=3), workers=1, progress=False)
    running = [i for i, r in enumerate(stage) if r.status == "not_converged"]
    ordered = sorted(running, key=lambda i: stage[i].energy_per_atom)
    kept = set(ordered[:math.ceil(0.5 * len(running))])
    for i, result in enumerate(report.results):
        if i in running and i not in kept:
            assert result.status == "pruned", (i, result.status)
            assert result.energy_per_atom == pytest.approx(stage[i].energy_per_atom, abs=1e-9)
            assert "pruned after stage 1" in result.reason
        else:
            assert result.status in ("converged", "not_converged"), (i, result.status, result.reason)
    assert sum(r.status == "pruned" for r in report.results) == len(running) - len(kept) >= 2
    survivors = [r for r in report.results if r.status == "converged"]
    assert survivors and all(r.max_force < 0.2 for r in survivors)
    assert 0 < report.steps_total < report.steps_cap == SETTINGS.max_steps * len(items)


def test_offsets_change_what_is_pruned(tmp_path):
    items = candidates()
    funnel = FunnelSettings(stage_steps=(3,), keep_fraction=0.2, keep_at_least=1, margin=0.0)
    plain = relax_funnel(items, "emt", SETTINGS, funnel, workers=1, progress=False, cache_dir=tmp_path)
    best = next(i for i, r in enumerate(plain.results) if r.status != "pruned")
    offsets = [0.0] * len(items)
    offsets[best] = 100.0  # eV/atom: the ranking score says this candidate cannot win
    moved = relax_funnel(items, "emt", SETTINGS, funnel, offsets, workers=1, progress=False, cache_dir=tmp_path)
    assert moved.results[best].status == "pruned"
    assert sum(r.status != "pruned" for r in moved.results) == sum(r.status != "pruned" for r in plain.results)


def test_keep_everything_reaches_the_same_minima_as_a_plain_relaxation(tmp_path):
    items = candidates()[:3]
    funnel = FunnelSettings(stage_steps=(5,), keep_fraction=1.0, keep_at_least=1)
    report = relax_funnel(items, "emt", SETTINGS, funnel, workers=1, progress=False, cache_dir=tmp_path)
    plain = relax_many(items, "emt", SETTINGS, workers=1, progress=False)
    for staged, direct in zip(report.results, plain):
        assert staged.status == direct.status == "converged"
        assert staged.energy_per_atom == pytest.approx(direct.energy_per_atom, abs=2e-3)  # eV/atom, both at fmax
        assert np.isclose(staged.atoms.get_volume(), direct.atoms.get_volume(), rtol=1e-2)


def test_survivors_keep_the_top_share_and_everything_within_the_margin():
    scores = {0: -1.00, 1: -0.99, 2: -0.95, 3: -0.949, 4: -0.90, 5: float("nan"), 6: -0.5}
    half = FunnelSettings(keep_fraction=0.5, keep_at_least=1, margin=0.0)
    # brute force: 6 finite scores, half is 3, sorted by score
    assert stage_survivors(scores, half) == [0, 1, 2]
    assert stage_survivors(scores, FunnelSettings(keep_fraction=0.5, keep_at_least=1, margin=0.002)) == [0, 1, 2, 3]
    assert stage_survivors(scores, FunnelSettings(keep_fraction=0.5, keep_at_least=1, margin=0.06)) == [0, 1, 2, 3, 4]
    assert stage_survivors(scores, FunnelSettings(keep_fraction=0.5, keep_at_least=5, margin=0.0)) == [0, 1, 2, 3, 4]
    assert stage_survivors(scores, FunnelSettings(keep_fraction=0.5, keep_at_least=9, margin=0.0)) == [0, 1, 2, 3, 4, 6]
    assert stage_survivors({}, half) == []


@pytest.mark.parametrize("funnel", [
    FunnelSettings(stage_steps=(3, 4), keep_fraction=0.5, keep_at_least=1, margin=0.0),
    FunnelSettings(stage_steps=(3, 4), keep_fraction=0.4, keep_at_least=1, margin=0.05),
    FunnelSettings(stage_steps=(3, 4), keep_fraction=0.5, keep_at_least=2, margin=0.0),
])
def test_replaying_a_keep_everything_funnel_equals_running_the_stricter_one(tmp_path, funnel):
    items = candidates()
    offsets = [0.0, 0.03, 0.0, 0.0, 0.01]
    everything = relax_funnel(items, "emt", SETTINGS, FunnelSettings(funnel.stage_steps, keep_fraction=1.0),
                              offsets, workers=1, progress=False, cache_dir=tmp_path / "all")
    assert all(r.status != "pruned" for r in everything.results)
    replay = replay_funnel(everything.stages, [r.steps for r in everything.results], offsets, funnel)
    real = relax_funnel(items, "emt", SETTINGS, funnel, offsets, workers=1, progress=False, cache_dir=tmp_path / "real")
    assert [at is not None for at in replay.pruned_at] == [r.status == "pruned" for r in real.results]
    assert any(at is not None for at in replay.pruned_at)
    assert replay.steps == [r.steps for r in real.results]
    for recorded, result in zip(everything.results, real.results):
        if result.status != "pruned":  # survivors relax from the same stage inputs to the same end
            assert result.energy_per_atom == pytest.approx(recorded.energy_per_atom, abs=1e-9)


def test_replay_checks_its_inputs():
    with pytest.raises(InputError, match="2 recorded candidates, 1 step counts"):
        replay_funnel([[], []], [0], [0.0, 0.0], FunnelSettings())


def test_a_repeated_funnel_reads_every_stage_from_the_cache(tmp_path):
    items = candidates()
    funnel = FunnelSettings(stage_steps=(3,), keep_fraction=0.5, keep_at_least=1, margin=0.0)
    first = relax_funnel(items, "emt", SETTINGS, funnel, workers=1, progress=False, cache_dir=tmp_path)
    cached = sorted((tmp_path / "relaxed").glob("*.json"))
    assert cached
    again = relax_funnel(items, "emt", SETTINGS, funnel, workers=1, progress=False, cache_dir=tmp_path)
    assert sorted((tmp_path / "relaxed").glob("*.json")) == cached  # nothing new was relaxed
    assert [(r.status, r.steps, r.energy_per_atom) for r in again.results] == \
           [(r.status, r.steps, r.energy_per_atom) for r in first.results]


@pytest.mark.parametrize("kwargs, message", [
    ({"stage_steps": (0,)}, "at least 1 step"),
    ({"keep_fraction": 0.0}, "keep fraction"),
    ({"keep_fraction": 1.5}, "keep fraction"),
    ({"keep_at_least": 0}, "at least 1 candidate"),
    ({"margin": -0.01}, "margin"),
    ({"margin": float("nan")}, "margin"),
])
def test_bad_funnel_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        FunnelSettings(**kwargs)


def test_step_cap_must_exceed_the_stages(tmp_path):
    with pytest.raises(InputError, match="must exceed the funnel's stages"):
        relax_funnel(candidates(), "emt", RelaxSettings(max_steps=10), FunnelSettings((5, 5)), workers=1,
                     progress=False, cache_dir=tmp_path)
    with pytest.raises(InputError, match="offsets for 5 candidates"):
        relax_funnel(candidates(), "emt", SETTINGS, FunnelSettings(), [0.0], workers=1, progress=False,
                     cache_dir=tmp_path)


def test_rank_prunes_through_the_funnel_unless_told_not_to(tmp_path):
    import csv

    from pymatgen.io.ase import AseAtomsAdaptor

    from diffcrystal.cli.main import main

    folder = tmp_path / "cifs"
    folder.mkdir()
    for label, atoms in candidates():
        AseAtomsAdaptor.get_structure(atoms).to(filename=str(folder / f"{label}.cif"))
    common = ["rank", str(folder), "--potential", "emt", "--workers", "1", "--fmax", "0.05", "--quiet"]
    assert main(common + ["--keep", "1", "--funnel-stages", "3", "--out", str(tmp_path / "funnel")]) == 0
    assert main(common + ["--no-funnel", "--out", str(tmp_path / "plain")]) == 0

    def statuses(out):
        with open(out / "relaxed" / "summary.csv", newline="") as handle:
            return {row["id"]: row["status"] for row in csv.DictReader(handle)}

    funnel, plain = statuses(tmp_path / "funnel"), statuses(tmp_path / "plain")
    assert "pruned" in funnel.values() and "pruned" not in plain.values()
    with open(tmp_path / "funnel" / "ranked.csv", newline="") as handle:
        first_funnel = next(csv.DictReader(handle))
    with open(tmp_path / "plain" / "ranked.csv", newline="") as handle:
        first_plain = next(csv.DictReader(handle))
    assert first_funnel["id"] == first_plain["id"]  # the funnel keeps the winner
    assert float(first_funnel["energy_per_atom_eV"]) == pytest.approx(float(first_plain["energy_per_atom_eV"]),
                                                                     abs=2e-3)


def test_a_student_prerelaxes_once_before_the_stages(tmp_path):
    items = candidates()
    settings = RelaxSettings(fmax=0.05, max_steps=120, prerelax="emt")
    report = relax_funnel(items, "emt", settings, FunnelSettings(stage_steps=(3,), keep_fraction=0.5, keep_at_least=1,
                                                                   margin=0.0), workers=1, progress=False, cache_dir=tmp_path)
    student = relax_many(items, "emt", RelaxSettings(fmax=0.05, max_steps=120), workers=1, progress=False)
    for result, alone in zip(report.results, student):
        # the student (EMT) ran once to its own end; the teacher (EMT too) starts at a minimum
        assert (result.prerelax_status, result.prerelax_steps) == (alone.status, alone.steps)
        assert result.status == "converged" and result.steps <= 1
        assert result.energy_per_atom == pytest.approx(alone.energy_per_atom, abs=1e-6)
