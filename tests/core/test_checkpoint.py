"""Generator checkpoints: round trip, integrity checks, clear errors for bad files."""

import json

import pytest
import torch

from diffcrystal.checkpoint import (
    CheckpointError,
    bundled_checkpoint,
    file_sha256,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    tensors_sha256,
)


@pytest.fixture
def tensors():
    g = torch.Generator().manual_seed(0)
    return {"layer.weight": torch.randn(4, 3, generator=g), "layer.bias": torch.zeros(4)}


def test_round_trip(tmp_path, tensors):
    path = save_checkpoint(tmp_path / "g.safetensors", tensors, {"mode": "csp", "x": [1, 2]})
    loaded, config = load_checkpoint(path)
    assert config == {"mode": "csp", "x": [1, 2]}
    assert loaded.keys() == tensors.keys()
    for name in tensors:
        assert torch.equal(loaded[name], tensors[name])


def test_hash_depends_on_values_names_and_shapes(tensors):
    reference = tensors_sha256(tensors)
    changed = dict(tensors, **{"layer.bias": torch.tensor([0.0, 0.0, 0.0, 1e-7])})
    renamed = {"other.weight": tensors["layer.weight"], "layer.bias": tensors["layer.bias"]}
    reshaped = dict(tensors, **{"layer.weight": tensors["layer.weight"].reshape(3, 4)})
    assert len({reference, tensors_sha256(changed), tensors_sha256(renamed), tensors_sha256(reshaped)}) == 4


def test_flipped_byte_is_refused(tmp_path, tensors):
    path = save_checkpoint(tmp_path / "g.safetensors", tensors, {})
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # inside the tensor data, past the JSON header
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(path)


def test_truncated_and_garbage_files_are_refused(tmp_path, tensors):
    path = save_checkpoint(tmp_path / "g.safetensors", tensors, {})
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_checkpoint(path)
    junk = tmp_path / "junk.safetensors"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_foreign_safetensors_file_is_refused(tmp_path, tensors):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match="not a diffcrystal generator"):
        load_checkpoint(path)


def test_failed_save_keeps_existing_file(tmp_path, tensors):
    path = save_checkpoint(tmp_path / "g.safetensors", tensors, {"version": 1})
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint(path, {"bad": "not a tensor"}, {"version": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]


def _manifest(tmp_path, path):
    manifest = {
        "models": {"tiny_csp": {"file": path.name, "sha256": file_sha256(path), "mode": "csp", "data": "x"}},
        "defaults": {"csp": "tiny_csp"},
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_bundled_manifest_hash_is_checked(tmp_path, tensors):
    path = save_checkpoint(tmp_path / "tiny_csp.safetensors", tensors, {})
    manifest = _manifest(tmp_path, path)
    assert bundled_checkpoint("csp", tmp_path) == path  # a mode means its default model
    assert bundled_checkpoint("tiny_csp", tmp_path) == path  # or a model by name
    with pytest.raises(CheckpointError, match="no bundled checkpoint 'denovo'; bundled: tiny_csp"):
        bundled_checkpoint("denovo", tmp_path)
    manifest["models"]["tiny_csp"]["sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="does not match"):
        bundled_checkpoint("csp", tmp_path)
    (tmp_path / "manifest.json").write_text('{"csp": {}}')
    with pytest.raises(CheckpointError, match="corrupt manifest"):
        bundled_checkpoint("csp", tmp_path)


def test_checkpoint_argument_is_a_file_or_a_bundled_name(tmp_path, tensors):
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    path = save_checkpoint(bundled / "tiny_csp.safetensors", tensors, {})
    _manifest(bundled, path)
    own = save_checkpoint(tmp_path / "own.safetensors", tensors, {})
    assert resolve_checkpoint(None, "csp", bundled) == path
    assert resolve_checkpoint("tiny_csp", "csp", bundled) == path
    assert resolve_checkpoint(str(own), "csp", bundled) == own
    with pytest.raises(CheckpointError, match="neither a file nor a bundled model .tiny_csp."):
        resolve_checkpoint("carbon24_csp", "csp", bundled)


def test_the_model_cards_file_table_gives_each_bundled_files_own_hash():
    """``checkpoints/README.md``'s table must name each bundled file with its actual SHA-256
    (a rebundled file once kept its predecessor's hash there)."""
    import re

    from diffcrystal.checkpoint import BUNDLED_DIR, file_sha256

    rows = re.findall(r"^\|[^|]*\| `([\w.]+\.safetensors)` \| `([0-9a-f]{64})` \|", (BUNDLED_DIR / "README.md").read_text(),
                      flags=re.MULTILINE)
    assert len(rows) >= 6
    for name, digest in rows:
        assert file_sha256(BUNDLED_DIR / name) == digest, name


def test_bundled_potentials_are_hash_checked(tmp_path, tensors):
    from diffcrystal.checkpoint import bundled_potential, file_sha256

    path = save_checkpoint(tmp_path / "tiny_csp.safetensors", tensors, {})
    manifest = _manifest(tmp_path, path)
    student = tmp_path / "student.safetensors"
    student.write_bytes(b"weights")
    manifest["potentials"] = {"tiny-student": {"file": student.name, "sha256": file_sha256(student)}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert bundled_potential("tiny-student", tmp_path) == student
    with pytest.raises(CheckpointError, match="no bundled potential 'other'"):
        bundled_potential("other", tmp_path)
    student.write_bytes(b"weightz")
    with pytest.raises(CheckpointError, match="corrupt bundled potential .* does not match"):
        bundled_potential("tiny-student", tmp_path)
    student.unlink()
    with pytest.raises(CheckpointError, match="bundled potential missing"):
        bundled_potential("tiny-student", tmp_path)
