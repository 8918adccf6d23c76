"""scripts/bundle_checkpoint.py: copy into the bundle folder, manifest, tuned sampler defaults."""

import json
from pathlib import Path

import pytest
import torch

from tests.script_loading import load_script


def _script(monkeypatch, folder: Path):
    module = load_script("bundle_checkpoint")
    monkeypatch.setattr(module, "BUNDLED_DIR", folder)  # never the repository's checkpoints/
    return module


def test_bundle_copies_and_registers(tmp_path, monkeypatch, tiny_generators):
    from diffcrystal.checkpoint import file_sha256

    source = tiny_generators["csp"]
    _script(monkeypatch, tmp_path).main([str(source), "--mode", "csp"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (name, entry), = manifest["models"].items()
    assert (tmp_path / entry["file"]).read_bytes() == source.read_bytes()
    assert entry["sha256"] == file_sha256(source) and manifest["defaults"]["csp"] == name


@pytest.mark.parametrize("option,key,value", [("--corrector-step-lr", "corrector_step_lr", 5e-6),
                                              ("--coord-noise-scale", "coord_noise_scale", 0.5)])
def test_bundle_records_a_tuned_coordinate_setting_and_keeps_the_weights(tmp_path, monkeypatch, tiny_generators,
                                                                         option, key, value):
    from diffcrystal.checkpoint import file_sha256, load_checkpoint
    from diffcrystal.generator import Generator

    source = tiny_generators["csp"]
    _script(monkeypatch, tmp_path).main([str(source), "--mode", "csp", option, repr(value)])
    entry = next(iter(json.loads((tmp_path / "manifest.json").read_text())["models"].values()))
    bundled = tmp_path / entry["file"]
    assert entry["sha256"] == file_sha256(bundled)
    assert Generator.from_checkpoint(bundled).experiment.diffusion.to_dict()[key] == value
    assert Generator.from_checkpoint(source).experiment.diffusion.to_dict()[key] != value
    assert getattr(Generator.from_checkpoint(bundled).joint.fields["coords"], key.removeprefix("coord_")) == value
    original, tuned = load_checkpoint(source), load_checkpoint(bundled)
    assert original[0].keys() == tuned[0].keys()
    assert all(torch.equal(original[0][name], tuned[0][name]) for name in original[0])
    original[1]["experiment"]["diffusion"][key] = value
    assert tuned[1] == original[1]  # nothing else in the config changed


def test_rebundling_in_place_records_sampler_steps_and_keeps_the_rest(tmp_path, monkeypatch, tiny_generators):
    from diffcrystal.checkpoint import file_sha256, load_checkpoint
    from diffcrystal.generator import Generator

    script = _script(monkeypatch, tmp_path)
    script.main([str(tiny_generators["csp"]), "--mode", "csp"])
    bundled = tmp_path / next(iter(json.loads((tmp_path / "manifest.json").read_text())["models"].values()))["file"]
    before = load_checkpoint(bundled)
    script.main([str(bundled), "--mode", "csp", "--corrector-steps", "5", "--num-steps", "50", "--corrector-min-t", "20"])
    entry = next(iter(json.loads((tmp_path / "manifest.json").read_text())["models"].values()))
    assert entry["sha256"] == file_sha256(bundled)
    sampling = Generator.from_checkpoint(bundled).experiment.sampling
    assert (sampling.corrector_steps, sampling.num_steps, sampling.corrector_min_t) == (5, 50, 20)
    after = load_checkpoint(bundled)
    assert all(torch.equal(before[0][key], after[0][key]) for key in before[0])
    before[1]["experiment"]["sampling"].update(corrector_steps=5, num_steps=50, corrector_min_t=20)
    assert after[1] == before[1]
    script.main([str(bundled), "--mode", "csp"])  # nothing to change: the file stays as it is
    assert file_sha256(bundled) == entry["sha256"]


def test_bundle_refuses_a_wrong_mode_or_a_negative_step(tmp_path, monkeypatch, tiny_generators):
    script = _script(monkeypatch, tmp_path)
    with pytest.raises(SystemExit, match="is a csp generator, not denovo"):
        script.main([str(tiny_generators["csp"]), "--mode", "denovo"])
    with pytest.raises(SystemExit, match="must be a finite number >= 0"):
        script.main([str(tiny_generators["csp"]), "--mode", "csp", "--corrector-step-lr=-1"])
    with pytest.raises(SystemExit, match="--coord-noise-scale must be a finite number >= 0, got nan"):
        script.main([str(tiny_generators["csp"]), "--mode", "csp", "--coord-noise-scale=nan"])
    with pytest.raises(SystemExit, match=r"sampling.corrector_steps: -1; expected >= 0"):
        script.main([str(tiny_generators["csp"]), "--mode", "csp", "--corrector-steps=-1"])
    with pytest.raises(SystemExit, match=r"sampling.corrector_min_t: -1; expected >= 0"):
        script.main([str(tiny_generators["csp"]), "--mode", "csp", "--corrector-min-t=-1"])
    with pytest.raises(SystemExit, match=r"sampling.num_steps: 0; expected >= 1"):
        script.main([str(tiny_generators["csp"]), "--mode", "csp", "--num-steps=0"])
    assert not (tmp_path / "manifest.json").exists()


def test_bundle_under_another_name_renames_the_config_and_keeps_the_weights(tmp_path, monkeypatch, tiny_generators):
    """A study's run replaces a bundled model: same weights, registered and named as that model."""
    from diffcrystal.checkpoint import file_sha256, load_checkpoint
    from diffcrystal.generator import Generator

    source = tiny_generators["csp"]
    _script(monkeypatch, tmp_path).main([str(source), "--mode", "csp", "--name", "replacement_csp", "--default"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    entry = manifest["models"]["replacement_csp"]
    bundled = tmp_path / "replacement_csp.safetensors"
    assert entry["file"] == bundled.name and entry["sha256"] == file_sha256(bundled)
    assert manifest["defaults"]["csp"] == "replacement_csp"
    assert Generator.from_checkpoint(bundled).experiment.name == "replacement_csp"
    original, renamed = load_checkpoint(source), load_checkpoint(bundled)
    assert all(torch.equal(original[0][key], renamed[0][key]) for key in original[0])
    original[1]["experiment"]["name"] = "replacement_csp"
    assert renamed[1] == original[1]  # nothing else in the config changed


def test_bundle_refuses_a_name_that_is_not_an_identifier(tmp_path, monkeypatch, tiny_generators):
    with pytest.raises(SystemExit, match="--name must be a plain identifier"):
        _script(monkeypatch, tmp_path).main([str(tiny_generators["csp"]), "--mode", "csp", "--name", "../escape"])
    assert not (tmp_path / "manifest.json").exists()
