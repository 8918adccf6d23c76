"""``scripts/studies/optimizer_minima.py``: its per-candidate record and its summary, on
outcomes worked by hand."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.script_loading import load_script

study = load_script("studies/optimizer_minima")


def _outcome(status, steps, energy, match, rms):
    return {"status": status, "steps": steps, "energy_per_atom": energy, "match": match, "rms": rms}


def test_summary_counts_matches_steps_and_paired_energies():
    records = [
        {"source": "template", "same_crystal": True,
         "FIRE": _outcome("converged", 40, -5.00, "match", 0.05), "BFGS": _outcome("converged", 30, -5.00, "match", 0.04)},
        {"source": "free_diffusion", "same_crystal": False,
         "FIRE": _outcome("converged", 150, -4.90, "no_match", None), "BFGS": _outcome("converged", 120, -4.95, "match", 0.2)},
        {"source": "free_diffusion", "same_crystal": False,
         "FIRE": _outcome("not_converged", 200, -4.80, "no_match", None), "BFGS": _outcome("exploded", 12, None, "invalid", None)},
    ]
    out = study.summary(records)
    free, everything = out["free_diffusion"], out["all"]
    assert free["candidates"] == 2 and everything["candidates"] == 3
    assert free["FIRE"] == {"converged_pct": 50.0, "mean_steps": 175.0, "matched_pct": 0.0, "precise_pct": 0.0}
    assert free["BFGS"] == {"converged_pct": 50.0, "mean_steps": 66.0, "matched_pct": 50.0, "precise_pct": 0.0}
    # only the pair with both energies counts: BFGS 50 meV/atom lower
    assert free["bfgs_minus_fire_eV_per_atom"] == {"pairs": 1, "mean": -0.05, "median": -0.05,
                                                   "bfgs_lower_by_10meV_pct": 100.0, "fire_lower_by_10meV_pct": 0.0}
    assert everything["BFGS"]["precise_pct"] == pytest.approx(100 / 3, abs=0.05)
    assert everything["bfgs_minus_fire_eV_per_atom"]["pairs"] == 2
    assert everything["same_crystal_pct"] == pytest.approx(100 / 3, abs=0.05)


def test_candidate_record_compares_every_final_structure_with_the_target_and_each_other():
    target = SimpleNamespace(label="mp-1")
    candidate = SimpleNamespace(label="free-00", source="free_diffusion")
    results = {"FIRE": SimpleNamespace(status="converged", steps=80, energy_per_atom=-3.0, atoms="A"),
               "BFGS": SimpleNamespace(status="exploded", steps=5, energy_per_atom=float("nan"), atoms=None)}
    compared = []

    def compare(final, tgt):
        compared.append((final, tgt.label))
        return SimpleNamespace(status="match" if final == "A" else "invalid", rms=0.3 if final == "A" else None)

    record = study.candidate_record(target, candidate, results, lambda r: r.atoms, compare,
                                    lambda a, b: pytest.fail("no second structure to compare"))
    assert compared == [("A", "mp-1"), (None, "mp-1")]
    assert record["FIRE"] == {"status": "converged", "steps": 80, "energy_per_atom": -3.0, "match": "match", "rms": 0.3}
    assert record["BFGS"]["energy_per_atom"] is None and record["BFGS"]["match"] == "invalid"
    assert record["same_crystal"] is False
