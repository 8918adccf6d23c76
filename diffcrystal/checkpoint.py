"""Safe generator checkpoints: safetensors weights + JSON metadata, with an integrity hash.

A generator checkpoint is one ``.safetensors`` file. Its tensors are the denoiser's weights
(the EMA weights when training kept them); its string metadata holds

- ``format``: :data:`CHECKPOINT_FORMAT`;
- ``config``: JSON of the resolved experiment (denoiser and diffusion configs, data
  statistics such as the species seen and the atom-count histogram, training record);
- ``tensors_sha256``: SHA-256 over the tensors (sorted names, dtype, shape and bytes), checked
  on every load so that a corrupt or truncated file is refused with a clear message.

safetensors never executes code on load, unlike pickle. Bundled checkpoints additionally have
their file hash listed in ``checkpoints/manifest.json`` (and in the model card).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from diffcrystal.atomic_write import default_file_mode
from diffcrystal.errors import InputError

CHECKPOINT_FORMAT = "diffcrystal-generator/1"
"""Version tag written into every generator checkpoint."""

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
"""Folder of the checkpoints shipped with the repository."""

MANIFEST_NAME = "manifest.json"
"""File in :data:`BUNDLED_DIR`: ``models`` (name -> file, SHA-256, mode, training data) and
``defaults`` (mode -> the name used when no checkpoint is given)."""


class CheckpointError(InputError):
    """A checkpoint that is missing, corrupt, or not a diffcrystal generator."""


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over named tensors: for each name in sorted order, the name, dtype, shape and
    the raw bytes of the contiguous CPU tensor."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """Write a generator checkpoint atomically (a temporary file renamed into place), so an
    existing file at ``path`` is never left half-written."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu_tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(config, sort_keys=True),
        "tensors_sha256": tensors_sha256(cpu_tensors),
    }
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(cpu_tensors, tmp_name, metadata=metadata)
        os.chmod(tmp_name, default_file_mode())  # as open() would; save_file recreates mkstemp's 0o600 file
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a generator checkpoint: ``(tensors, config)``. Raises :class:`CheckpointError`
    naming the file when it is missing, unreadable, of another format, or fails its hash."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # safetensors raises several types for damaged headers/data
        raise CheckpointError(
            f"corrupt or unreadable checkpoint {path}: {type(error).__name__}: {error}"
        ) from None
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a diffcrystal generator checkpoint "
            f"(format {metadata.get('format')!r}, expected {CHECKPOINT_FORMAT!r})"
        )
    if tensors_sha256(tensors) != metadata.get("tensors_sha256"):
        raise CheckpointError(f"corrupt checkpoint {path}: weights do not match their SHA-256")
    try:
        config = json.loads(metadata["config"])
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"corrupt checkpoint {path}: unreadable config ({error})") from None
    return tensors, config


def _read_manifest(directory: Path) -> dict:
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        raise CheckpointError(f"no bundled checkpoints: {manifest_path} not found")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"corrupt manifest {manifest_path}: {error}") from None
    if not isinstance(manifest, dict) or not all(isinstance(manifest.get(k), dict) for k in ("models", "defaults")):
        raise CheckpointError(f"corrupt manifest {manifest_path}: needs 'models' and 'defaults' tables")
    return manifest


def _verified(directory: Path, entry: dict, what: str) -> Path:
    """The bundled file of a manifest ``entry`` (``{"file", "sha256"}``) in ``directory``, after
    checking that it exists and has the recorded SHA-256; ``what`` names it in the errors."""
    path = directory / entry["file"]
    if not path.is_file():
        raise CheckpointError(f"bundled {what} missing: {path}")
    actual = file_sha256(path)
    if actual != entry["sha256"]:
        raise CheckpointError(f"corrupt bundled {what} {path}: SHA-256 {actual[:12]}… does not match the "
                              f"manifest's {entry['sha256'][:12]}…")
    return path


def bundled_models(directory: Path = BUNDLED_DIR) -> dict[str, dict]:
    """The bundled models by name (``{"perov5_csp": {"file", "sha256", "mode", "data"}}``)."""
    return _read_manifest(directory)["models"]


def bundled_checkpoint(name: str, directory: Path = BUNDLED_DIR) -> Path:
    """Path of a bundled checkpoint, after checking its file hash against the manifest.

    ``name`` is a bundled model's name (``'carbon24_csp'``) or a mode (``'csp'``,
    ``'denovo'``), which means that mode's default model.
    """
    manifest = _read_manifest(directory)
    models = manifest["models"]
    name = manifest["defaults"].get(name, name)
    if name not in models:
        raise CheckpointError(
            f"no bundled checkpoint {name!r}; bundled: {', '.join(sorted(models))} "
            f"(defaults: {', '.join(f'{m}={n}' for m, n in sorted(manifest['defaults'].items()))})"
        )
    return _verified(directory, models[name], "checkpoint")


def bundled_potential(name: str, directory: Path = BUNDLED_DIR) -> Path:
    """Path of a bundled potential (a student bundle; the manifest's ``potentials`` table,
    ``{"mp20-student": {"file", "sha256"}}``), after checking its file hash."""
    entry = _read_manifest(directory).get("potentials", {}).get(name)
    if entry is None:
        raise CheckpointError(f"no bundled potential {name!r} in {directory / MANIFEST_NAME}")
    return _verified(directory, entry, "potential")


def bundled_analogue_table(checkpoint: str | Path, directory: Path = BUNDLED_DIR) -> Path | None:
    """The analogue table (:mod:`diffcrystal.analogues`) shipped with a bundled ``checkpoint``
    (its manifest entry's ``analogues``: ``{"file", "sha256"}``, hash checked), or None."""
    checkpoint = Path(checkpoint).resolve()
    if checkpoint.parent != directory.resolve() or not (directory / MANIFEST_NAME).is_file():
        return None
    for entry in _read_manifest(directory)["models"].values():
        if entry.get("file") == checkpoint.name and entry.get("analogues"):
            return _verified(directory, entry["analogues"], "analogue table")
    return None


def resolve_checkpoint(spec: str | Path | None, mode: str, directory: Path = BUNDLED_DIR) -> Path:
    """The checkpoint a ``--checkpoint`` argument names: an existing file, else a bundled
    model's name; ``None`` gives the bundled default for ``mode``."""
    if spec is None:
        return bundled_checkpoint(mode, directory)
    path = Path(spec)
    if path.exists():
        return path
    models = _read_manifest(directory)["models"] if (directory / MANIFEST_NAME).is_file() else {}
    if str(spec) in models:
        return bundled_checkpoint(str(spec), directory)
    raise CheckpointError(
        f"checkpoint {spec} not found: neither a file nor a bundled model "
        f"({', '.join(sorted(models)) or 'none bundled'})"
    )


def checkpoint_train_data(checkpoint: Path) -> list[Path]:
    """The training data files recorded in ``checkpoint``, found relative to the current folder
    or to the repository of the bundled models (where the bundled ones were trained);
    :class:`InputError` naming the first one not found."""
    recorded = load_checkpoint(checkpoint)[1]["experiment"]["data"]["train"]
    paths = []
    for entry in [recorded] if isinstance(recorded, str) else recorded:
        found = next((p for p in (Path(entry), BUNDLED_DIR.parent / entry) if p.exists()), None)
        if found is None:
            raise InputError(f"{checkpoint} was trained on {entry}, which is not found here; pass --train-data")
        paths.append(found)
    return paths
