"""Frames taken from relaxation trajectories (``diffcrystal.potential.trajectory``) and the student fitted on them
(``scripts/studies/trajectory_student.py``)."""

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from diffcrystal.potential.trajectory import trajectory_frames
from tests.script_loading import load_script


def trajectory(path, num_states):
    states = []
    for i in range(num_states):
        atoms = Atoms("Cu2", positions=[[0, 0, 0], [1.8 + 0.01 * i, 0, 0]], cell=np.eye(3) * 4, pbc=True)
        atoms.calc = SinglePointCalculator(atoms, energy=-float(i), forces=np.full((2, 3), 0.1 * i), stress=np.zeros(6))
        states.append(atoms)
    write(str(path), states)


def emt_trajectory(path, num_states):
    """A Cu2 'teacher' trajectory labelled by EMT itself."""
    from ase.calculators.emt import EMT

    states = []
    for i in range(num_states):
        atoms = Atoms("Cu2", positions=[[0, 0, 0], [2.0 + 0.05 * i, 0.1, 0]], cell=np.eye(3) * 5, pbc=True)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                           stress=atoms.get_stress())
        states.append(atoms)
    write(str(path), states)


def test_every_nth_state_and_the_last_of_each_kept_trajectory(tmp_path):
    trajectory(tmp_path / "a.traj", 7)  # states 0 3 6: the last is on the stride
    trajectory(tmp_path / "b.traj", 5)  # states 0 3, then the last (4)
    trajectory(tmp_path / "held.traj", 4)
    frames, used = trajectory_frames(tmp_path, {"held"}, every=3)
    assert used == ["a", "b"]
    assert [(f.info["candidate"], f.get_potential_energy()) for f in frames] == [
        ("a", 0.0), ("a", -3.0), ("a", -6.0), ("b", 0.0), ("b", -3.0), ("b", -4.0)]
    assert np.allclose(frames[-1].get_forces(), 0.4)  # labels travel with the frames


def test_no_trajectory_left_is_a_clear_error(tmp_path, capsys):
    trajectory(tmp_path / "held.traj", 4)
    (tmp_path / "learn.json").write_text('{"held_out_candidates": ["held"]}')
    script = load_script("studies/trajectory_student")
    assert script.main([str(tmp_path), "--exclude-from", str(tmp_path / "learn.json"), "--out", str(tmp_path / "o")]) == 1
    assert "no trajectories left after excluding 1 candidates" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_student_is_scored_on_the_held_out_trajectories_against_their_labels(tmp_path):
    script = load_script("studies/trajectory_student")
    emt_trajectory(tmp_path / "held.traj", 5)  # an EMT 'teacher' trajectory: its labels are EMT's own
    sets = script.held_out_sets(tmp_path, ["held"], None, every=2)
    assert [len(frames) for frames in sets.values()] == [3]
    scores = script.score("emt", sets)["held_out_trajectories"]
    assert scores == {"frames": 3, "frames_unseen_elements": 0, "force_mae_meV_A": 0.0, "energy_mae_meV_atom": 0.0}
    only_au = script.score("emt", sets, elements={"Au"})["held_out_trajectories"]  # a student of Au alone
    assert only_au == {"frames": 0, "frames_unseen_elements": 3}  # is scored on none of the Cu frames
    shifted = [a.copy() for a in sets["held_out_trajectories"]]
    for atoms, original in zip(shifted, sets["held_out_trajectories"]):
        atoms.calc = SinglePointCalculator(atoms, energy=original.get_potential_energy() + 0.2,
                                           forces=original.get_forces() + 0.01, stress=original.get_stress())
    off = script.score("emt", {"shifted": shifted})["shifted"]
    assert off["energy_mae_meV_atom"] == 100.0 and off["force_mae_meV_A"] == 10.0  # 0.2 eV over 2 atoms; 0.01 eV/Å


def test_hold_out_targets_leaves_out_every_candidate_of_a_share_of_targets(tmp_path):
    script = load_script("studies/trajectory_student")
    names = [f"mp-{t}__{c}" for t in range(10) for c in ("template-00", "free-00")]
    for name in names:
        (tmp_path / f"{name}.traj").write_bytes(b"")
    held = script.held_out_targets(tmp_path, 0.2, seed=0)
    targets = {name.split("__")[0] for name in held}
    assert len(targets) == 2 and len(held) == 4  # both candidates of each held-out target
    assert held == sorted(n for n in names if n.split("__")[0] in targets)
    assert script.held_out_targets(tmp_path, 0.2, seed=0) == held  # the draw is reproducible
    assert len({n.split("__")[0] for n in script.held_out_targets(tmp_path, 0.01, seed=1)}) == 1  # at least one
    assert len({n.split("__")[0] for n in script.held_out_targets(tmp_path, 0.99, seed=1)}) == 9  # never all


def test_hold_out_targets_needs_two_targets_and_a_share_below_one(tmp_path, capsys):
    script = load_script("studies/trajectory_student")
    trajectory(tmp_path / "mp-1__a.traj", 3)
    trajectory(tmp_path / "mp-1__b.traj", 3)
    assert script.main([str(tmp_path), "--hold-out-targets", "0.2", "--out", str(tmp_path / "o")]) == 1
    assert "1 target(s) in the trajectory names; holding some out needs 2" in capsys.readouterr().err
    assert script.main([str(tmp_path), "--hold-out-targets", "1.5", "--out", str(tmp_path / "o")]) == 1
    assert "--hold-out-targets must be between 0 and 1, got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_rescore_scores_the_student_already_fitted_without_fitting(tmp_path, capsys):
    import json

    script = load_script("studies/trajectory_student")
    for name in ("mp-1__a", "mp-2__a", "mp-3__a"):
        emt_trajectory(tmp_path / f"{name}.traj", 4)
    out = tmp_path / "student"
    arguments = [str(tmp_path), "--hold-out-targets", "0.3", "--out", str(out), "--rescore"]
    assert script.main(arguments) == 1
    assert f"--rescore: no fitted student in {out} (no fit.json)" in capsys.readouterr().err
    out.mkdir()
    (out / "fit.json").write_text(json.dumps({"model": "emt", "type_names": ["Cu"], "train_seconds": 10.0,
                                              "compile_seconds": 2.5}))
    assert script.main(arguments) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["fit_seconds"] == 12.5 and report["elements"] == ["Cu"] and len(report["excluded"]) == 1
    assert report["scores"]["emt"]["held_out_trajectories"] == {
        "frames": 2, "frames_unseen_elements": 0, "force_mae_meV_A": 0.0, "energy_mae_meV_atom": 0.0}
    assert not (out / "frames.extxyz").exists()  # nothing was fitted
