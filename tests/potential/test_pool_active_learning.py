"""``scripts/studies/pool_active_learning.py``: active and random arms on a labelled pool, with
stand-in students whose disagreement is known in advance."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from diffcrystal.errors import InputError
from tests.script_loading import load_script


def test_capped_choice_takes_the_highest_and_passes_over_a_full_candidate():
    script = load_script("studies/pool_active_learning")
    disagreements, candidates = [0.9, 0.8, 0.7, 0.1, 0.5], ["a", "a", "a", "b", "b"]
    assert script.most_disagreeing_capped(disagreements, candidates, 3, None) == [0, 1, 2]
    assert script.most_disagreeing_capped(disagreements, candidates, 3, 2) == [0, 1, 4]
    assert script.most_disagreeing_capped(disagreements, candidates, 5, 1) == [0, 4]


class StretchStudent(Calculator):
    """EMT plus a force error ``seed * stretch`` on every atom, ``stretch`` being the pair's
    distance beyond 2 Å: two such students disagree in proportion to the stretch."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, seed):
        super().__init__()
        self.seed = seed

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        exact = self.atoms.copy()
        exact.calc = EMT()
        stretch = self.atoms.get_distance(0, 1) - 2.0
        forces = exact.get_forces() + self.seed * stretch
        self.results = {"energy": exact.get_potential_energy(), "free_energy": exact.get_potential_energy(),
                        "forces": forces, "stress": exact.get_stress()}


class RecordingFitter:
    """Fits nothing: remembers the stretches of each training set by folder name and writes the
    student's seed into its folder for ``load``."""

    def __init__(self):
        self.training_sets = {}

    def fit(self, frames, folder, seed):
        self.training_sets[f"{folder.parent.name}/{folder.name}"] = sorted(round(f.get_distance(0, 1) - 2.0, 3)
                                                                          for f in frames)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "seed").write_text(str(seed))
        return self.load(folder)

    def load(self, folder):
        return StretchStudent(int((folder / "seed").read_text()))


def labelled_pair(stretch, candidate):
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [2.0 + stretch, 0, 0]], cell=np.eye(3) * 6, pbc=True)
    atoms.calc = EMT()
    atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                       stress=atoms.get_stress())
    atoms.info["candidate"] = candidate
    return atoms


def test_active_arm_adds_the_most_disagreeing_frames_and_random_the_same_number(tmp_path):
    script = load_script("studies/pool_active_learning")
    stretches = [round(0.01 * (i + 1), 3) for i in range(12)]
    pool = [labelled_pair(s, "a" if i % 2 else "b") for i, s in enumerate(stretches)]
    held_out = [labelled_pair(0.2, "held"), labelled_pair(0.05, "held")]
    fitter = RecordingFitter()
    record = script.replay(pool, held_out, fitter, tmp_path, initial=4, per_round=3, rounds=2, ensemble=2,
                           per_candidate=2, seed=0, log=lambda line: None)
    assert json.loads((tmp_path / "record.json").read_text()) == record
    initial = fitter.training_sets["round-0/active-0"]
    assert len(initial) == 4 and fitter.training_sets["round-0/active-1"] == initial
    unused = sorted(set(stretches) - set(initial), reverse=True)
    # round 1: the largest stretches first, at most 2 from a candidate ("a": odd positions)
    expected, taken = [], {}
    for stretch in unused:
        candidate = "a" if stretches.index(stretch) % 2 else "b"
        if len(expected) < 3 and taken.get(candidate, 0) < 2:
            expected.append(stretch)
            taken[candidate] = taken.get(candidate, 0) + 1
    assert fitter.training_sets["round-1/active-0"] == sorted(initial + expected)
    assert [len(fitter.training_sets[f"round-{r}/random"]) for r in (1, 2)] == [7, 10]
    assert set(initial) <= set(fitter.training_sets["round-1/random"])
    assert [(entry["active"]["frames"], entry["random"]["frames"]) for entry in record["rounds"]] == [
        (4, 4), (7, 7), (10, 10)]
    # the first member (seed 1) errs by `stretch` per force component: 0.2 and 0.05 Å
    assert record["rounds"][0]["active"]["force_mae_meV_A"] == pytest.approx(125.0)
    small, large = sorted(stretch * 3 ** 0.5 for stretch in (0.2, 0.05))  # max-atom error norms
    assert record["rounds"][0]["active"]["max_force_error_p90_meV_A"] == pytest.approx(
        1000 * (small + 0.9 * (large - small)), abs=0.01)
    assert record["rounds"][1]["selected_mean_disagreement_meV_A"] > record["rounds"][1]["unused_mean_disagreement_meV_A"]


def test_an_active_share_mixes_the_most_disagreeing_with_random_frames(tmp_path):
    script = load_script("studies/pool_active_learning")
    stretches = [round(0.01 * (i + 1), 3) for i in range(12)]
    pool = [labelled_pair(s, "c") for s in stretches]
    fitter = RecordingFitter()
    script.replay(pool, pool[:1], fitter, tmp_path, initial=4, per_round=4, rounds=1, ensemble=2,
                  per_candidate=None, seed=0, active_share=0.5, log=lambda line: None)
    initial = fitter.training_sets["round-0/active-0"]
    added = sorted(set(fitter.training_sets["round-1/active-0"]) - set(initial))
    unused = sorted(set(stretches) - set(initial), reverse=True)
    order = [stretches[i] for i in np.random.default_rng(0).permutation(12)]  # the replay's seeded draw order
    drawn = [s for s in order if s not in initial and s not in unused[:2]][:2]
    assert added == sorted(unused[:2] + drawn)  # the 2 largest stretches, then the next 2 of the draw order
    assert added != sorted(unused[:4])  # not all by disagreement
    assert len(fitter.training_sets["round-1/random"]) == 8
    with pytest.raises(InputError, match="active share must be in"):
        script.replay(pool, pool[:1], fitter, tmp_path, initial=4, per_round=4, rounds=1, ensemble=2,
                      per_candidate=None, seed=0, active_share=0)


def test_rescoring_reloads_the_students_and_reproduces_the_record(tmp_path):
    script = load_script("studies/pool_active_learning")
    pool = [labelled_pair(round(0.01 * (i + 1), 3), "a" if i % 2 else "b") for i in range(12)]
    held_out = [labelled_pair(0.2, "held"), labelled_pair(0.05, "held")]
    record = script.replay(pool, held_out, RecordingFitter(), tmp_path, initial=4, per_round=3, rounds=2,
                           ensemble=2, per_candidate=2, seed=0, log=lambda line: None)
    stale = json.loads(json.dumps(record))
    for entry in stale["rounds"]:
        for arm in ("active", "random"):
            del entry[arm]["max_force_error_p90_meV_A"]  # as written before the field existed
    assert script.rescore(stale, held_out, RecordingFitter(), tmp_path, ensemble=2) == record


def test_a_pool_too_small_for_the_rounds_is_refused(tmp_path):
    script = load_script("studies/pool_active_learning")
    pool = [labelled_pair(0.01 * i, "a") for i in range(5)]
    with pytest.raises(InputError, match="need a pool of that many; it has 5"):
        script.replay(pool, pool[:1], RecordingFitter(), tmp_path, initial=3, per_round=2, rounds=2,
                      ensemble=2, per_candidate=None, seed=0)
    assert not (tmp_path / "record.json").exists()
