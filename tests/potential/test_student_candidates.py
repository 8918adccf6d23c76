"""``scripts/studies/student_candidates.py``: unrelaxed predict candidates of validation compositions."""

import csv

import pytest
from pymatgen.core import Composition, Structure

from tests.script_loading import load_script


def test_file_stems_are_safe_and_keep_the_target_first():
    script = load_script("studies/student_candidates")
    assert script.file_stem("mp-1185198", "template-00") == "mp-1185198__template-00"
    assert script.file_stem("my/odd target", "free-00") == "my-odd-target__free-00"


@pytest.mark.slow
def test_templates_of_a_validation_composition_are_written_without_its_own_entry(tmp_path):
    """~75 s: loads the bundled model's training split and template table."""
    script = load_script("studies/student_candidates")
    out = tmp_path / "candidates"
    assert script.main(["--every", "50", "--limit", "2", "--analogue-diffusion", "0", "--free-diffusion", "0",
                        "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "candidates.csv").open()))
    assert len({row["target"] for row in rows}) == 2
    assert {row["source"] for row in rows} == {"template"}
    for row in rows:
        assert row["analogue"] != row["target"]  # the target's own entry is held out of the templates
        structure = Structure.from_file(out / row["file"])
        assert structure.composition.reduced_formula == Composition(row["composition"]).reduced_formula
        assert row["file"].startswith(f"{row['target']}__")
    assert script.main(["--every", "50", "--limit", "1", "--out", str(out)]) == 1  # never into a used folder
