"""``scripts/benchmark_rank.py --folder``: rank's settings compared on a folder, with EMT."""

import json

from pymatgen.io.ase import AseAtomsAdaptor

from tests.potential.test_funnel import candidates
from tests.script_loading import load_script


def cif_folder(tmp_path):
    """The funnel tests' five CuAu candidates as CIFs in a new folder."""
    folder = tmp_path / "cifs"
    folder.mkdir()
    for label, atoms in candidates():
        AseAtomsAdaptor.get_structure(atoms).to(filename=str(folder / f"{label}.cif"))
    return folder


def test_settings_are_compared_with_the_full_relaxation(tmp_path):
    benchmark = load_script("benchmark_rank")
    folder = cif_folder(tmp_path)
    out = tmp_path / "report.json"
    assert benchmark.main(["--folder", str(folder), "--potential", "emt", "--student", "emt", "--workers", "1",
                           "--keep", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    full, funnel, student = (report["settings"][name] for name in ("full", "funnel[keep=1]", "funnel[keep=1]+student"))
    assert full["seconds_ratio"] == full["teacher_steps_ratio"] == 1.0 and full["same_top"] == full["of"] >= 2
    assert full["energy_differences_meV_atom"] == [0.0] * full["of"]
    assert funnel["statuses"].get("pruned", 0) >= 1 and funnel["teacher_steps"] < full["teacher_steps"]
    assert funnel["same_top"] >= 1  # the winner survives the funnel (test_funnel's rank test)
    # EMT pre-relaxing for EMT leaves the teacher nothing to do
    assert student["student_steps"] > 0 and student["teacher_steps"] < funnel["teacher_steps"]


def test_a_kept_full_relaxation_is_reused_as_the_reference(tmp_path):
    benchmark = load_script("benchmark_rank")
    folder = cif_folder(tmp_path)
    common = ["--folder", str(folder), "--potential", "emt", "--workers", "1", "--keep", "1"]
    assert benchmark.main(common + ["--keep-outputs", str(tmp_path / "kept"), "--out", str(tmp_path / "a.json")]) == 0
    assert benchmark.main(common + ["--reference", str(tmp_path / "kept" / "full"), "--out", str(tmp_path / "b.json")]) == 0
    first, again = (json.loads((tmp_path / name).read_text())["settings"] for name in ("a.json", "b.json"))
    assert again["full"]["read_from"] == str(tmp_path / "kept" / "full")
    assert again["full"]["teacher_steps"] == first["full"]["teacher_steps"] and again["full"]["same_top"] == again["full"]["of"]
    # the same funnel run again agrees with the kept reference as it did with the one in memory
    assert again["funnel[keep=1]"]["same_top"] == first["funnel[keep=1]"]["same_top"]
    assert again["funnel[keep=1]"]["teacher_steps_ratio"] == first["funnel[keep=1]"]["teacher_steps_ratio"]
    assert benchmark.main(common + ["--reference", str(tmp_path), "--out", str(tmp_path / "c.json")]) == 1
    # --reuse reads every kept setting instead of running it
    assert benchmark.main(common + ["--keep-outputs", str(tmp_path / "kept"), "--reuse", "--out", str(tmp_path / "d.json")]) == 0
    reused = json.loads((tmp_path / "d.json").read_text())["settings"]
    assert {name: run["read_from"] for name, run in reused.items()} == {
        name: str(tmp_path / "kept" / name) for name in ("full", "funnel[keep=1]")}
    assert reused["funnel[keep=1]"]["same_set"] == first["funnel[keep=1]"]["same_set"] >= reused["funnel[keep=1]"]["same_top"]


def test_a_changed_funnel_is_named_by_its_changes():
    import argparse

    benchmark = load_script("benchmark_rank")
    unchanged = argparse.Namespace(keep=None, stages=None, fraction=None, margin=None)
    assert benchmark.funnel_tag(benchmark.funnel_of(unchanged)) == ""
    changed = benchmark.funnel_of(argparse.Namespace(keep=8, stages=(1,), fraction=0.01, margin=0.0))
    assert (changed.stage_steps, changed.keep_at_least, changed.keep_fraction, changed.margin) == ((1,), 8, 0.01, 0.0)
    assert benchmark.funnel_tag(changed) == "[stages=1,keep=8,fraction=0.01,margin=0]"


def test_top_agreement_counts_positions_that_hold_the_same_crystal():
    from diffcrystal.potential.rank import RankedEntry
    from diffcrystal.potential.results import RelaxResult

    benchmark = load_script("benchmark_rank")
    items = candidates()

    def entry(i, energy):
        return RankedEntry(RelaxResult(items[i][0], "converged", "emt", energy_per_atom=energy, atoms=items[i][1]))

    full = [entry(3, -1.0), entry(4, -0.9), entry(0, -0.8)]
    assert benchmark.top_agreement(full, full, 2.0)["same_top"] == 3
    swapped = [entry(4, -0.9), entry(3, -1.0), entry(0, -0.8015)]
    agreement = benchmark.top_agreement(full, swapped, 2.0)
    assert agreement["same_top"] == 1 and agreement["energy_differences_meV_atom"] == [100.0, 100.0, 1.5]
    assert agreement["same_set"] == 3  # the same three crystals, two of them swapped
    assert agreement["as_low"] == 2  # position 1 is 100 meV/atom above; 2 is below; 3 is 1.5 meV below
    beyond = benchmark.top_agreement(full, [entry(3, -1.0), entry(4, -0.9), entry(0, -0.797)], 2.0)
    assert beyond["same_top"] == beyond["same_set"] == 2  # 3 meV/atom off: outside the tolerance
    assert beyond["as_low"] == 2
    lower = benchmark.top_agreement(full, [entry(3, -1.0), entry(0, -0.95), entry(4, -0.9)], 2.0)
    assert lower["as_low"] == 3 and lower["same_top"] == 1  # other crystals, each at least as low
    assert benchmark.top_agreement(full, [entry(3, -1.0), entry(3, -1.0), entry(4, -0.9)], 2.0)["same_set"] == 2
