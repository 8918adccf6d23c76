"""Student bundles: a fitted NequIP student as safetensors + JSON, loaded without unpickling."""

import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from safetensors.torch import save

from diffcrystal.errors import InputError
from diffcrystal.potential.calculators import resolve_potential
from diffcrystal.potential.nequip_state import preserved_torch_state
from diffcrystal.potential.student_bundle import (
    STUDENT_FORMAT,
    bundle_student,
    load_student_calculator,
    read_header,
    student_elements,
)

pytest.importorskip("nequip")

MODEL = {"_target_": "nequip.model.NequIPGNNModel", "seed": 3, "model_dtype": "float64", "type_names": ["Au", "Cu"],
         "r_max": 4.0, "l_max": 1, "parity": True, "num_layers": 2, "avg_num_neighbors": 12.0,
         "per_type_energy_shifts": {"Au": -3.2, "Cu": -3.7}, "per_type_energy_scales": 0.3,
         "num_features": 8, "radial_mlp_depth": 1, "radial_mlp_width": 8}


def built_model(config: dict = MODEL):
    """A randomly initialised NequIP model from its builder, the way nequip-train builds one."""
    from hydra.utils import get_method

    with preserved_torch_state():
        from nequip.utils.global_dtype import _GLOBAL_DTYPE
        from nequip.utils.global_state import set_global_state

        set_global_state()
        torch.set_default_dtype(_GLOBAL_DTYPE)
        arguments = dict(config)
        return get_method(arguments.pop("_target_"))(**arguments).eval()


def write_bundle(path, model, config=MODEL, format_=STUDENT_FORMAT, card=None):
    tensors = {name: value.detach().clone().contiguous() for name, value in model.state_dict().items()}
    path.write_bytes(save(tensors, metadata={"format": format_, "model": json.dumps(config),
                                             "card": json.dumps(card or {})}))
    return path


def cu3au():
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.symbols[0] = "Au"
    atoms.rattle(0.05, seed=2)
    return atoms


def nequip_reference(model, atoms):
    """Energy, forces and stress of ``model`` through nequip's own calculator (no bundle)."""
    from nequip.integrations.utils import basic_transforms

    from diffcrystal.potential.nequip_state import isolated_nequip_calculator_class

    with preserved_torch_state():
        calculator = isolated_nequip_calculator_class()(
            model=model, device="cpu",
            transforms=basic_transforms(model.metadata, MODEL["r_max"], MODEL["type_names"],
                                        {"Au": "Au", "Cu": "Cu"}))
        atoms = atoms.copy()
        atoms.calc = calculator
        return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()


def test_a_bundle_computes_what_its_model_computes(tmp_path):
    model = built_model()
    path = write_bundle(tmp_path / "student.safetensors", model, card={"teacher": "emt"})
    atoms = cu3au()
    calculator = load_student_calculator(path)
    assert torch.get_default_dtype() == torch.float32  # nequip's float64 stays inside
    atoms.calc = calculator
    energy, forces, stress = nequip_reference(model, atoms)
    assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), forces, atol=1e-10)
    np.testing.assert_allclose(atoms.get_stress(), stress, atol=1e-12)
    assert np.abs(forces).max() > 1e-4  # a rattled cell: the comparison is not of zeros
    assert read_header(path)["card"] == {"teacher": "emt"}
    assert student_elements(path) == {"Au", "Cu"}


def test_a_bundle_is_a_potential_that_refuses_elements_it_never_saw(tmp_path):
    path = write_bundle(tmp_path / "student.safetensors", built_model())
    potential = resolve_potential(str(path))
    assert potential.label == f"student:{path.resolve()}"
    assert potential.elements == {"Au", "Cu"}
    assert potential.identity.startswith(f"student:{path.resolve()} sha256:")
    potential.check_elements([("cu3au", cu3au())])
    with pytest.raises(InputError, match=r"no parameters for Cl, Na \(in nacl\); it covers Au, Cu"):
        potential.check_elements([("nacl", bulk("NaCl", "rocksalt", a=5.6))])


@pytest.mark.parametrize("damage, message", [
    ("not a file at all", "not a safetensors file"),
    ("other format", "not a diffcrystal student"),
    ("foreign builder", "unknown model builder 'os.system'"),
    ("no types", "names no element types"),
    ("wrong weights", "weights do not fit its design"),
])
def test_damaged_or_foreign_bundles_are_refused_in_one_line(tmp_path, damage, message):
    from diffcrystal.potential.calculators import load_calculator

    path = tmp_path / "student.safetensors"
    model = built_model()
    if damage == "not a file at all":
        path.write_bytes(b"\x00garbage" * 10)
    elif damage == "other format":
        write_bundle(path, model, format_="something-else/1")
    elif damage == "foreign builder":
        write_bundle(path, model, config={**MODEL, "_target_": "os.system"})
    elif damage == "no types":
        write_bundle(path, model, config={**MODEL, "type_names": []})
    else:  # weights of a wider model under the design of a narrower one
        write_bundle(path, built_model({**MODEL, "num_features": 16}))
    with pytest.raises(InputError, match=message) as error:
        load_calculator(str(path))
    assert "\n" not in str(error.value)


def test_missing_bundle_and_the_bundled_student_name(tmp_path):
    with pytest.raises(InputError, match="no such student bundle"):
        resolve_potential(str(tmp_path / "absent.safetensors"))
    from diffcrystal.checkpoint import BUNDLED_DIR

    if (BUNDLED_DIR / "mp20_student.safetensors").is_file():
        student = resolve_potential("mp20-student")
        assert student.label == "mp20-student"
        assert {"O", "Cu", "Ba", "Y"} <= student.elements
        assert len(student.elements) == 72  # the model card's count
        with pytest.raises(InputError, match=r"potential mp20-student has no parameters for Xe \(in xe\)"):
            student.check_elements([("xe", bulk("Xe", "fcc", a=6.2))])
        atoms = cu3au()
        atoms.calc = student.calculator
        assert np.isfinite(atoms.get_forces()).all()


def test_bundle_student_refuses_a_missing_checkpoint_and_a_wrong_suffix(tmp_path):
    with pytest.raises(InputError, match="no such nequip checkpoint"):
        bundle_student(tmp_path / "best.ckpt", tmp_path / "s.safetensors")
    (tmp_path / "best.ckpt").write_bytes(b"")
    with pytest.raises(InputError, match=r"must end in \.safetensors"):
        bundle_student(tmp_path / "best.ckpt", tmp_path / "s.pt")
    with pytest.raises(InputError, match="not a nequip-train checkpoint") as error:
        bundle_student(tmp_path / "best.ckpt", tmp_path / "s.safetensors")
    assert "\n" not in str(error.value) and not (tmp_path / "s.safetensors").exists()
    torch.save({"hyper_parameters": {"model": {"_target_": "os.system"}}}, tmp_path / "best.ckpt")
    with pytest.raises(InputError, match="model builder 'os.system' is not one of"):
        bundle_student(tmp_path / "best.ckpt", tmp_path / "s.safetensors")


def test_potential_bundle_of_a_trained_student_matches_nequips_own_loader(tmp_path, capsys):
    """A student trained by ``nequip-train`` (2 epochs on EMT frames, ~8 s), bundled with
    ``diffcrystal potential bundle``: the bundle gives the energies and forces nequip's
    checkpoint loader gives (EMA weights in both), and an existing file is never overwritten."""
    from diffcrystal.cli.main import main
    from diffcrystal.potential.nequip_state import load_checkpoint_calculator
    from diffcrystal.potential.fit import FitSettings, label_frames, make_frames, train_student, write_frames

    frames, _ = label_frames(make_frames([bulk("Cu", "fcc", a=3.6, cubic=True), cu3au()], copies=6, seed=0), "emt")
    write_frames(frames, tmp_path / "frames.extxyz")
    trained = train_student(tmp_path / "frames.extxyz", tmp_path / "fit", FitSettings(epochs=2, num_features=4))
    (tmp_path / "fit" / "report.json").write_text('{"frames": 12}')
    path = tmp_path / "student.safetensors"
    assert main(["potential", "bundle", str(tmp_path / "fit"), "--out", str(path)]) == 0
    assert "elements Au Cu" in capsys.readouterr().out
    assert read_header(path)["card"] == {"report": {"frames": 12}}
    results = []
    for calculator in (load_student_calculator(path), load_checkpoint_calculator(trained.checkpoint)):
        atoms = cu3au()
        atoms.calc = calculator
        results.append((atoms.get_potential_energy(), atoms.get_forces()))
    (e1, f1), (e2, f2) = results
    assert e1 == pytest.approx(e2, abs=1e-6)
    np.testing.assert_allclose(f1, f2, atol=1e-6)
    before = path.read_bytes()
    assert main(["potential", "bundle", str(tmp_path / "fit"), "--out", str(path)]) != 0
    assert "exists; choose another --out" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert main(["potential", "bundle", str(tmp_path), "--out", str(tmp_path / "other.safetensors")]) != 0
    assert "no train/best.ckpt" in capsys.readouterr().err


def test_the_batched_evaluator_of_a_bundle_equals_its_calculator_one_by_one(tmp_path):
    from diffcrystal.potential.calculators import load_calculator
    from diffcrystal.potential.evaluators import NequIPBatchEvaluator, batch_evaluator

    path = write_bundle(tmp_path / "student.safetensors", built_model())
    potential = resolve_potential(str(path))
    evaluator = potential.evaluator()
    assert isinstance(evaluator, NequIPBatchEvaluator)
    structures = [cu3au(), bulk("Cu", "fcc", a=3.62).repeat((2, 1, 1)), bulk("NaCl", "rocksalt", a=5.6), cu3au() * (1, 1, 2)]
    structures[1].rattle(0.04, seed=5)
    reference = load_calculator(str(path))
    for chunk_atoms in (1024, 5):  # all in one call; calls of at most 5 atoms
        evaluator = batch_evaluator(potential.kind, potential.calculator)
        evaluator.max_atoms = chunk_atoms
        out = evaluator(structures)
        assert isinstance(out[2], Exception)  # Na and Cl: only that structure fails
        for atoms, result in zip([s for i, s in enumerate(structures) if i != 2], [r for i, r in enumerate(out) if i != 2]):
            atoms = atoms.copy()
            atoms.calc = reference
            assert result[0] == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
            np.testing.assert_allclose(result[1], atoms.get_forces(), atol=1e-9)
            np.testing.assert_allclose(result[2], atoms.get_stress(), atol=1e-11)
    assert torch.get_default_dtype() == torch.float32
