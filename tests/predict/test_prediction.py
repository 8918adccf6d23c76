"""predict: candidates -> dedup -> funnel -> ranking, with EMT and hand-made templates."""

from dataclasses import replace

import pytest
from ase.filters import FrechetCellFilter
from ase.calculators.emt import EMT
from ase.optimize import FIRE

import diffcrystal
from diffcrystal.errors import InputError
from diffcrystal.potential.funnel import FunnelSettings
from diffcrystal.prediction import FAR_FREE_SAMPLES, PredictSettings, predict
from tests.predict.structures import ab_library, l10

TEMPLATES_ONLY = {"template": 3, "analogue_diffusion": 0, "free_diffusion": 0}


def emt_minimum_per_atom(crystal) -> float:
    """EMT energy per atom of ``crystal`` relaxed by plain ASE (positions and cell), eV/atom."""
    atoms = crystal.to_atoms()
    atoms.calc = EMT()
    FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=0.005, steps=2000)
    return atoms.get_potential_energy() / len(atoms)


@pytest.mark.parametrize("optimizer", ["BFGS", "FIRE"])
@pytest.mark.parametrize("funnel", [None, FunnelSettings((1,), keep_fraction=0.34, keep_at_least=1, margin=0.0)])
def test_the_known_structure_ranks_first_at_its_own_minimum(tmp_path, funnel, optimizer):
    relax = replace(PredictSettings().relax, optimizer=optimizer)
    settings = PredictSettings(counts=TEMPLATES_ONLY, funnel=funnel, relax=relax)
    prediction = predict("CuAu", templates=ab_library(), potential="emt", settings=settings, cache_dir=tmp_path)
    best = prediction.ranked[0]
    assert best.matches_known == "L10-CuAu" and best.best.candidate.source == "template"
    assert best.energy_per_atom == pytest.approx(emt_minimum_per_atom(l10()), abs=3e-3)  # eV/atom
    scores = [entry.score for entry in prediction.ranked]
    assert scores == sorted(scores)
    assert len(prediction.outcomes) == 3 and {o.candidate.label for o in prediction.outcomes} == \
        {"template-00", "template-01", "template-02"}
    if funnel is not None:
        assert any(o.status == "pruned" for o in prediction.outcomes)
        assert prediction.relax_steps < prediction.relax_steps_cap
    structure = best.structure
    assert structure.composition.reduced_formula == "CuAu"


def test_the_python_api_is_the_same_function(tmp_path):
    settings = diffcrystal.PredictSettings(counts=TEMPLATES_ONLY)
    prediction = diffcrystal.predict("AuCu", templates=ab_library(), potential="emt", settings=settings,
                                     cache_dir=tmp_path)
    assert prediction[0].matches_known == "L10-CuAu" and len(prediction) >= 2


@pytest.mark.parametrize("counts, far, budget", [
    ({"template": 2, "analogue_diffusion": 2, "free_diffusion": 1}, 0, 5),
    ({"template": 3, "analogue_diffusion": 0, "free_diffusion": 0}, 0, 3),  # templates alone: the generator still loads
    ({"template": 3, "analogue_diffusion": 0, "free_diffusion": 0}, FAR_FREE_SAMPLES, 20),  # predict's default
])
def test_free_diffusion_alone_when_no_template_is_near(tmp_path, counts, far, budget):
    settings = PredictSettings(counts=counts, max_analogue_distance=0.0, far_free_samples=far, sampler_steps=5)
    prediction = predict("CuNi", templates=ab_library(), potential="emt", settings=settings, cache_dir=tmp_path)
    assert any("free diffusion only" in note for note in prediction.notes)
    assert {o.candidate.source for o in prediction.outcomes} == {"free_diffusion"}
    lost = sum(int(note.split(" of ")[0]) for note in prediction.notes if "were no crystal" in note)
    assert len(prediction.outcomes) + lost == budget  # the templates' budget goes to free samples


@pytest.mark.parametrize("composition, message", [("CuXx", "Xx"), ("", "empty"), ("Cu2(", "")])
def test_bad_compositions_are_one_line_errors(tmp_path, composition, message):
    with pytest.raises(InputError, match=message) as error:
        predict(composition, templates=ab_library(), potential="emt",
                settings=PredictSettings(counts=TEMPLATES_ONLY), cache_dir=tmp_path)
    assert "\n" not in str(error.value)


def test_elements_the_potential_lacks_are_refused_before_any_work(tmp_path):
    with pytest.raises(InputError):
        predict("NaCl", templates=ab_library(), potential="emt",
                settings=PredictSettings(counts=TEMPLATES_ONLY), cache_dir=tmp_path)


def test_an_assignment_only_table_is_refused(tmp_path):
    import gzip
    import json

    path = tmp_path / "old.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"format": "diffcrystal-analogue-table-1", "templates": []}).encode()))
    with pytest.raises(InputError):
        predict("CuAu", templates=path, potential="emt", settings=PredictSettings(counts=TEMPLATES_ONLY))


def test_a_given_atom_count_ranks_cells_of_that_size_first(tmp_path):
    """Told the cell has 4 atoms, the 4-atom template (AABB stacking) is the first candidate; a
    2-atom cell still fits 4 atoms, so EMT's lowest, L1_0, stays first; a cell the given count
    cannot hold is charged the atom-count weight."""
    from diffcrystal.analogues import AnalogueLibrary
    from diffcrystal.data.crystal import Crystal
    from diffcrystal.ranking import RankingScore
    import numpy as np

    from tests.predict.structures import AU, CU, b2, rock_salt

    four = Crystal(np.diag([2.9, 2.9, 5.8]), [[0, 0, 0], [0.5, 0.5, 0.25], [0, 0, 0.5], [0.5, 0.5, 0.75]],
                   [AU, CU, CU, AU], label="AABB-4", properties={"e_above_hull": 0.0})
    library = AnalogueLibrary.from_crystals([b2(), l10(), rock_salt(), four])
    settings = PredictSettings(counts={"template": 2, "analogue_diffusion": 0, "free_diffusion": 0}, funnel=None,
                               score=RankingScore(atom_count_weight=1.0))
    untold = predict("CuAu", templates=library, potential="emt", settings=settings, cache_dir=tmp_path)
    told = predict("CuAu", templates=library, potential="emt", settings=settings, cache_dir=tmp_path, num_atoms=4)
    assert untold.outcomes[0].candidate.analogue == "L10-CuAu"
    assert told.outcomes[0].candidate.analogue == "AABB-4"  # the 4-atom template comes first
    assert {o.candidate.analogue for o in told.outcomes} == {"AABB-4", "L10-CuAu"}
    assert told.ranked[0].matches_known == "L10-CuAu"  # a 2-atom cell fits a 4-atom one: energy decides
    with pytest.raises(InputError, match="--atoms 3"):
        predict("CuAu", templates=library, potential="emt", settings=settings, cache_dir=tmp_path, num_atoms=3)
    misfit = predict("CuAu", templates=AnalogueLibrary.from_crystals([four]), potential="emt", settings=settings,
                     cache_dir=tmp_path, num_atoms=2)  # a 2-atom cell cannot hold the 4-atom one: charged 1 eV/atom
    best = misfit.ranked[0]
    assert best.score == pytest.approx(best.energy_per_atom + 1.0)  # d = 0 and the only type: no other charge


def test_far_free_samples_are_counted_from_the_nearest_analogue_distance():
    from types import SimpleNamespace

    from diffcrystal.prediction import free_sample_count

    near, far = SimpleNamespace(distance=0.5), SimpleNamespace(distance=3.0)
    settings = PredictSettings(counts=TEMPLATES_ONLY, far_free_samples=4, far_distance=2.0)
    assert free_sample_count(settings, [far, near]) == 0  # the nearest decides, not the first
    assert free_sample_count(settings, [far]) == 4
    assert free_sample_count(settings, [SimpleNamespace(distance=2.0)]) == 4  # at the threshold: far
    assert free_sample_count(settings, []) == 4  # none within reach: the templates' budget (3) or more
    assert free_sample_count(replace(settings, far_free_samples=2), []) == 3
    assert free_sample_count(replace(settings, far_free_samples=0), [far]) == 0
    both = PredictSettings(counts={"template": 3, "analogue_diffusion": 0, "free_diffusion": 5}, far_free_samples=4)
    assert free_sample_count(both, [far]) == 5  # a minimum, never fewer than asked for
    free_only = PredictSettings(counts={"template": 0, "analogue_diffusion": 0, "free_diffusion": 1},
                                far_free_samples=4)
    assert free_sample_count(free_only, []) == 1  # without templates there is no distance to judge


@pytest.mark.parametrize("field, value, message", [("far_free_samples", -1, "--far-samples"),
                                                   ("far_free_samples", 2.5, "--far-samples"),
                                                   ("far_distance", float("nan"), "--far-distance"),
                                                   ("far_distance", -1.0, "--far-distance")])
def test_bad_far_sample_settings_are_one_line_errors(field, value, message):
    with pytest.raises(InputError, match=message) as error:
        PredictSettings(**{field: value})
    assert "\n" not in str(error.value)


def test_far_free_samples_join_the_templates_only_beyond_the_far_distance(tmp_path):
    """CuNi's nearest analogue in the hand-made library lies at some distance d > 0: with the
    threshold just above d no free sample is drawn (and the generator is not needed); just below
    it, the free samples join the templates and are ranked beside them."""
    from diffcrystal.data.composition import parse_composition
    from diffcrystal.prediction import gather_candidates, needs_generator

    library = ab_library()
    settings = PredictSettings(counts=TEMPLATES_ONLY, far_free_samples=2, sampler_steps=5, funnel=None)
    _, analogues, _ = gather_candidates(parse_composition("CuNi"), None, library, settings)
    nearest = min(a.distance for a in analogues)
    assert nearest > 0
    beyond = replace(settings, far_distance=nearest + 0.01)
    assert not needs_generator(parse_composition("CuNi"), library, beyond)
    within = replace(settings, far_distance=nearest - 0.01)
    assert needs_generator(parse_composition("CuNi"), library, within)
    prediction = predict("CuNi", templates=library, potential="emt", settings=within, cache_dir=tmp_path)
    sources = [o.candidate.source for o in prediction.outcomes]
    lost = sum(int(note.split(" of ")[0]) for note in prediction.notes if "were no crystal" in note)
    assert sources.count("template") == len(analogues) and sources.count("free_diffusion") + lost == 2
    assert any(f"lies {nearest:.2f} Mendeleev units away" in note and "2 free samples" in note
               for note in prediction.notes)
