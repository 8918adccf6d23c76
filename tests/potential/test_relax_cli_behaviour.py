"""``diffcrystal relax`` / ``rank`` and the relaxation API where a user meets them: bad files,
earlier outputs, elements a potential lacks, option errors, trajectories, the force reported,
one resolved potential and the module layout behind it."""

import ast
import csv
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from ase.io import read, write

import diffcrystal
from diffcrystal.cli.main import main
from diffcrystal.errors import InputError
from diffcrystal.potential import RelaxSettings, relax_many
from diffcrystal.potential import calculators
from diffcrystal.potential.calculators import Potential, resolve_potential

POTENTIAL_PACKAGE = Path(calculators.__file__).parent

OVERLAPPING_CIF = """data_overlap
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Cu1 Cu 0.0 0.0 0.0 1
Au1 Au 0.0 0.0 0.0 1
Cu2 Cu 0.5 0.5 0.0 1
"""


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def cu3au(a=3.8):
    return Atoms("AuCu3", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                 cell=np.eye(3) * a, pbc=True)


@pytest.fixture
def cif_folder(tmp_path):
    """A folder of CIFs: two good ones, one junk file and one with two atoms on one site."""
    folder = tmp_path / "cifs"
    folder.mkdir()
    write(folder / "good.cif", cu3au())
    write(folder / "copper.cif", bulk("Cu", "fcc", a=3.7, cubic=True))
    (folder / "junk.cif").write_text("this is not a CIF\n")
    (folder / "overlap.cif").write_text(OVERLAPPING_CIF)
    return folder


def relax(*arguments):
    return main(["relax", *arguments, "--potential", "emt", "--workers", "1", "--quiet"])


def test_unreadable_cifs_are_failed_rows_and_the_rest_is_relaxed(cif_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert relax(str(cif_folder), "--out", str(out)) == 0
    rows = {r["id"]: r for r in read_rows(out / "summary.csv")}
    assert rows["good"]["status"] == rows["copper"]["status"] == "converged"
    assert rows["junk"]["status"] == "failed" and "junk.cif: cannot read CIF" in rows["junk"]["reason"]
    assert rows["overlap"]["status"] == "failed"
    assert "sites on top of each other: Cu1 and Au1 (0.00 Å apart)" in rows["overlap"]["reason"]
    assert rows["junk"]["cif"] == "" and not (out / "junk.cif").exists()
    assert "4 structures: 2 converged, 2 failed" in capsys.readouterr().out


def test_a_single_unreadable_reference_cif_is_still_an_error(cif_folder, tmp_path, capsys):
    """Known phases must all be read: there a bad CIF stays a one-line error."""
    code = main(["rank", str(cif_folder / "good.cif"), "--potential", "emt", "--reference", str(cif_folder),
                 "--out", str(tmp_path / "o"), "--quiet"])
    message = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in message and "cannot read CIF" in message


@pytest.mark.parametrize("command, marker, suffix", [("relax", "summary.csv", "relaxed"),
                                                     ("rank", "ranked.csv", "ranked")])
def test_earlier_output_is_never_overwritten(command, marker, suffix, tmp_path, capsys):
    inputs = tmp_path / "cu.cif"
    write(inputs, bulk("Cu", "fcc", a=3.7, cubic=True))
    run = ["--potential", "emt", "--workers", "1", "--quiet"]
    assert main([command, str(inputs), *run]) == 0 and main([command, str(inputs), *run]) == 0
    first, second = tmp_path / f"cu-{suffix}", tmp_path / f"cu-{suffix}-2"  # the default: a new folder
    assert (first / marker).is_file() and (second / marker).is_file()
    kept = (first / marker).read_bytes()
    assert "--hull DATA (a dataset of known phases" in capsys.readouterr().out  # how to get E above hull
    assert main([command, str(inputs), *run, "--out", str(first)]) == 1
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and f"{first} already holds a {'relaxation' if command == 'relax' else 'ranking'}" in message
    assert (first / marker).read_bytes() == kept
    assert f"<first INPUT>-{suffix}" in " ".join(help_text(command).split())


def help_text(command):
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit):
        main([command, "--help"])
    return buffer.getvalue()


def test_elements_a_potential_lacks_are_refused_up_front(tmp_path, capsys, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("relaxation started")

    perovskite = Atoms("SrTiO3", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0],
                                                   [0.5, 0, 0.5], [0, 0.5, 0.5]], cell=np.eye(3) * 3.9, pbc=True)
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "srtio3.cif", perovskite)
    write(folder / "cu.cif", bulk("Cu", "fcc", a=3.7, cubic=True))
    monkeypatch.setattr("diffcrystal.potential.rank.relax_many", must_not_run)
    for command in ("relax", "rank"):
        out = tmp_path / command
        assert main([command, str(folder), "--potential", "emt", "--out", str(out), "--quiet"]) == 1
        message = capsys.readouterr().err.strip()
        assert "\n" not in message and "potential emt has no parameters for Sr, Ti (in srtio3)" in message
        assert "it covers Ag, Al, Au" in message and not out.exists()
    with pytest.raises(InputError, match="no parameters for Sr, Ti"):
        diffcrystal.relax([perovskite], potential="emt")
    assert resolve_potential("sevennet-0").elements >= {"Sr", "Ti", "O", "Cu"}


@pytest.mark.parametrize("option, value", [("--steps", "-1"), ("--workers", "0"), ("--fmax", "0"),
                                           ("--fmax", "nan")])
def test_option_errors_name_the_option(option, value, tmp_path, capsys):
    write(tmp_path / "cu.cif", bulk("Cu", "fcc", a=3.7, cubic=True))
    code = main(["relax", str(tmp_path / "cu.cif"), "--potential", "emt", option, value,
                 "--out", str(tmp_path / "o")])
    message = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in message and message.startswith(f"diffcrystal relax: error: {option} must be")
    assert not (tmp_path / "o").exists()


def test_quiet_and_its_old_name(tmp_path, capsys):
    write(tmp_path / "cu.cif", bulk("Cu", "fcc", a=3.7, cubic=True))
    for flag, out in (("--quiet", "a"), ("--no-progress", "b")):
        assert main(["relax", str(tmp_path / "cu.cif"), "--potential", "emt", flag, "--out", str(tmp_path / out)]) == 0
        assert "relax batched" not in capsys.readouterr().err  # no progress bar
    for command in ("relax", "rank"):
        text = help_text(command)
        assert "--quiet" in text and "--no-progress" not in text


@pytest.mark.parametrize("engine, workers", [("batched", "1"), ("ase", "1"), ("batched", "2")])
def test_trajectory_writes_every_step_of_each_relaxation(engine, workers, tmp_path):
    write(tmp_path / "l12.cif", cu3au(3.9))
    write(tmp_path / "cu.cif", bulk("Cu", "fcc", a=3.5, cubic=True))
    out = tmp_path / "out"
    assert main(["relax", str(tmp_path / "l12.cif"), str(tmp_path / "cu.cif"), "--potential", "emt",
                 "--engine", engine, "--workers", workers, "--trajectory", "--out", str(out), "--quiet"]) == 0
    rows = {r["id"]: r for r in read_rows(out / "summary.csv")}
    assert sorted(p.name for p in (out / "trajectories").iterdir()) == ["cu.traj", "l12.traj"]
    for name, row in rows.items():
        frames = read(out / "trajectories" / f"{name}.traj", ":")
        assert len(frames) == int(row["steps"]) + 1  # step 0 and each step after it
        final = frames[-1]
        assert final.get_potential_energy() / len(final) == pytest.approx(float(row["energy_per_atom_eV"]), abs=1e-5)
        assert frames[0].get_potential_energy() > final.get_potential_energy()
        np.testing.assert_allclose(final.cell.array, read(out / row["cif"]).cell.array, atol=1e-4)
    plain = tmp_path / "plain"
    assert main(["relax", str(tmp_path / "cu.cif"), "--potential", "emt", "--engine", engine, "--workers", "1",
                 "--out", str(plain), "--quiet"]) == 0
    assert not (plain / "trajectories").exists()  # opt-in


@pytest.mark.parametrize("engine", ["batched", "ase"])
def test_reported_max_force_is_the_force_tested_against_fmax(engine):
    """A strained cell with atoms on their sites: the cell term decides convergence, and the
    reported force is the one tested (ASE's FrechetCellFilter force on the final structure)."""
    items = [("strained", bulk("Cu", "fcc", a=3.45, cubic=True)), ("l12", cu3au(3.9))]
    settings = RelaxSettings(fmax=0.02, engine=engine)
    for result in relax_many(items, "emt", settings, workers=1, progress=False):
        assert result.converged and result.max_force < settings.fmax
        final = result.atoms.copy()
        final.calc = EMT()
        tested = np.linalg.norm(FrechetCellFilter(final).get_forces(), axis=1).max()
        assert result.max_force == pytest.approx(tested, abs=1e-6)
    (capped,) = relax_many(items[:1], "emt", RelaxSettings(max_steps=1, engine=engine), workers=1,
                           progress=False)
    final = capped.atoms.copy()
    final.calc = EMT()
    atomic = np.linalg.norm(final.get_forces(), axis=1).max()
    assert capped.status == "not_converged" and atomic < 1e-6  # atoms at rest on their sites...
    assert capped.max_force > settings.fmax  # ...but the cell is not: that is what stopped it


def test_a_result_without_structure_gives_none_not_an_exception():
    overlap = Atoms("Cu2", positions=[[0, 0, 0], [0.1, 0, 0]], cell=np.eye(3) * 3.6, pbc=True)
    good, exploded = diffcrystal.relax([bulk("Cu", "fcc", a=3.6, cubic=True), overlap], potential="emt")
    assert good.ok and good.structure.composition.reduced_formula == "Cu"
    assert exploded.status == "exploded" and not exploded.ok
    assert exploded.structure is None and exploded.crystal is None
    assert [r.label for r in (good, exploded) if r.structure is not None] == ["0"]


def test_the_potential_is_resolved_once_and_crosses_processes_as_its_name(tmp_path, monkeypatch):
    write(tmp_path / "cu.cif", bulk("Cu", "fcc", a=3.7, cubic=True))
    write(tmp_path / "au.cif", bulk("Au", "fcc", a=4.0, cubic=True))
    resolved, loaded = [], []
    real_resolve, real_load = calculators.resolve_potential, calculators.load_calculator

    def counting_resolve(potential, *args, **kwargs):
        if not isinstance(potential, Potential):
            resolved.append(potential)
        return real_resolve(potential, *args, **kwargs)

    def counting_load(*args, **kwargs):
        loaded.append(args)
        return real_load(*args, **kwargs)

    for module in ("calculators", "rank", "relax", "relax_cache", "batched_relax"):
        monkeypatch.setattr(f"diffcrystal.potential.{module}.resolve_potential", counting_resolve)
    monkeypatch.setattr(calculators, "load_calculator", counting_load)
    references = tmp_path / "known"
    references.mkdir()
    write(references / "Cu.cif", bulk("Cu", "fcc", a=3.6, cubic=True))
    write(references / "Au.cif", bulk("Au", "fcc", a=4.1, cubic=True))
    assert main(["rank", str(tmp_path / "cu.cif"), str(tmp_path / "au.cif"), "--potential", "EMT",
                 "--reference", str(references), "--workers", "1", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert resolved == ["EMT"] and len(loaded) == 1

    potential = resolve_potential("emt")
    assert potential.calculator is potential.calculator  # loaded once, kept
    copy = pickle.loads(pickle.dumps(potential))
    assert (copy.label, copy.device) == ("emt", "cpu") and copy._calculator is None
    model = tmp_path / "fit" / "model.nequip.pt2"  # a worker resolves a fitted model by its label
    model.parent.mkdir()
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("data.txt", "not a model")
    label = pickle.loads(pickle.dumps(resolve_potential(model.parent))).label
    assert label == f"nequip:{model.resolve()}" and calculators.potential_label(label) == label


def potential_imports(module: Path) -> set[str]:
    """The ``diffcrystal.potential`` modules ``module`` imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("diffcrystal.potential."):
            names.add(node.module.rsplit(".", 1)[1])
    return names


def test_relaxation_modules_import_each_other_one_way():
    graph = {path.stem: potential_imports(path) for path in POTENTIAL_PACKAGE.glob("*.py")
             if path.stem != "__init__"}
    assert "relax" not in graph["batched_relax"] and "batched_relax" in graph["relax"]
    for module in ("relax", "batched_relax"):
        assert "results" in graph[module]

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in graph.get(start, ()))

    circles = sorted(m for m in graph if reaches(m, m))
    assert circles == []
