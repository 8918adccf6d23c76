"""scripts/studies/perov5_site_ambiguity.py: A/B sites, the categories against training data, the ceiling."""

import gzip
import json

import numpy as np
import pytest
from ase.io import write

from diffcrystal.data.crystal import Crystal

from tests.metrics import _structures as S
from tests.script_loading import load_script

SCRIPT = load_script("studies/perov5_site_ambiguity")
BA, ZR, N = 56, 40, 7


def _perovskite(a_site: int, b_site: int, anions=(8, 8, 8), a: float = 4.0) -> Crystal:
    """Ideal cubic ABX3: A at the corner, B at the body centre, X on the face centres."""
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Crystal(np.eye(3) * a, frac, [a_site, b_site, *anions])


def test_the_octahedral_cation_is_b_in_any_frame():
    crystal = S.rotated_permuted_shifted(_perovskite(S.SR, S.TI), seed=4)
    assert SCRIPT.site_assignment(crystal.to_structure()) == ("Sr", "Ti")
    # a mixed-anion cell keeps the geometry and so the assignment
    assert SCRIPT.site_assignment(_perovskite(BA, ZR, anions=(8, 8, N)).to_structure()) == ("Ba", "Zr")


def test_a_cell_that_is_not_abx3_is_a_one_line_error():
    with pytest.raises(SCRIPT.InputError, match="not an ABX3 perovskite cell"):
        SCRIPT.site_assignment(S.rocksalt().to_structure())


def test_swapping_a_and_b_changes_the_structure():
    """The cation at the corner of the swapped cell has its anions at a/sqrt(2), not a/2:
    another coordination, so the matcher must refuse it at DiffCSP's tolerances."""
    structure = _perovskite(S.SR, S.TI).to_structure()
    other = SCRIPT.swapped(structure, "Sr", "Ti")
    assert sorted(site.specie.symbol for site in other) == sorted(site.specie.symbol for site in structure)
    assert other[0].specie.symbol == "Ti" and other[1].specie.symbol == "Sr"
    matcher = SCRIPT.StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)
    assert matcher.get_rms_dist(structure, other) is None
    assert matcher.get_rms_dist(structure, S.rotated_permuted_shifted(_perovskite(S.SR, S.TI), 1).to_structure()) is not None


@pytest.mark.parametrize("report", ["metrics.json", "metrics.json.gz"])  # as written, as committed
def test_categories_ceiling_and_breakdown(tmp_path, capsys, report):
    train = [_perovskite(S.SR, S.TI), _perovskite(BA, ZR)]
    test = [
        _perovskite(S.TI, S.SR),           # SrTiO3 with the sites of the training twin swapped
        _perovskite(BA, ZR, a=4.2),        # BaZrO3 as in training
        _perovskite(BA, S.TI),             # BaTiO3: composition not in training
        _perovskite(S.TI, S.TI),           # one cation on both sites
    ]
    write(tmp_path / "train.extxyz", [c.to_atoms() for c in train])
    write(tmp_path / "test.extxyz", [c.to_atoms() for c in test])
    labels = [label for label, _ in SCRIPT.read_structures(str(tmp_path / "test.extxyz"))]
    # one evaluation: target 0 precise, 1 loosely matched, 2 not matched, 3 precise
    rms = [0.02, 0.3, None, 0.05]
    metrics = {"per_target": [
        {"label": label, "candidates": [{"rms": r, "status": "match" if r is not None else "no_match"}]}
        for label, r in zip(labels, rms)
    ]}
    content = json.dumps(metrics).encode()
    (tmp_path / report).write_bytes(gzip.compress(content, mtime=0) if report.endswith(".gz") else content)
    assert SCRIPT.main(["--train", str(tmp_path / "train.extxyz"), "--test", str(tmp_path / "test.extxyz"),
                        "--metrics", str(tmp_path / report), "--out", str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["categories"] == {"same_cation": 1, "train_same_sites": 1, "train_opposite_sites": 1,
                                 "composition_unseen": 1}
    assert out["swap_match_percent"] == 0.0  # no ideal perovskite matches its swapped self
    assert out["ceiling_precise_at_1_percent"] == pytest.approx(100 * (1 + 3 / 2) / 4)
    assert out["ceiling_match_at_1_percent"] == pytest.approx(100 * (1 + 3 / 2) / 4)
    table = out["evaluations"][str(tmp_path / report)]
    assert table["all"] == {"n": 4, "match_percent": 75.0, "precise_percent": 50.0}
    assert table["train_same_sites"] == {"n": 1, "match_percent": 100.0, "precise_percent": 0.0}
    assert table["composition_unseen"] == {"n": 1, "match_percent": 0.0, "precise_percent": 0.0}
    assert "A/B-swapped targets" in capsys.readouterr().out


def test_metrics_of_another_test_file_are_refused(tmp_path, capsys):
    write(tmp_path / "set.extxyz", [_perovskite(S.SR, S.TI).to_atoms()])
    (tmp_path / "metrics.json").write_text(json.dumps({"per_target": [{"label": "elsewhere", "candidates": []}]}))
    code = SCRIPT.main(["--train", str(tmp_path / "set.extxyz"), "--test", str(tmp_path / "set.extxyz"),
                        "--metrics", str(tmp_path / "metrics.json")])
    assert code == 1
    assert "target elsewhere is not in the test file" in capsys.readouterr().err
