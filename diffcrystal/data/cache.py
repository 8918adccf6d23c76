"""On-disk cache of parsed datasets, keyed on the content of the source.

A cache entry is **one ``.npz`` file** read with ``allow_pickle=False`` (no pickle, so a
cache file cannot execute code). It holds the concatenated arrays of all crystals:

- ``lattices``        (B, 3, 3) float64, Å, rows a, b, c
- ``frac_coords``     (N, 3) float64, fractional in [0, 1)
- ``atomic_numbers``  (N,) int64
- ``num_atoms``       (B,) int64
- ``metadata``        (M,) uint8: UTF-8 JSON with the key, labels, properties and skipped
  entries (``[source, reason]`` pairs).

The file name contains the SHA-256 **key** of (:data:`CACHE_FORMAT_VERSION`, package and
pymatgen/ASE versions, reader options, each source file's name and bytes). Any change of the
source gives a new key, so a cache can never be stale; old entries are simply no longer read.
Files are written to a temporary name in the cache folder and renamed into place
(``os.replace`` is atomic), so an interrupted write leaves no half file under a valid name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Iterable

import numpy as np

from diffcrystal import __version__
from diffcrystal.atomic_write import default_file_mode
from diffcrystal.data.crystal import Crystal

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 2
"""Bump when the cache layout or the meaning of the cached data (parsing, canonical cell)
changes; every older entry is then ignored. 2: entries with atoms closer than 0.5 Å (periodic
images included) are skipped; extxyz/CSV ids are read as written."""

CACHE_ENV_VAR = "DIFFCRYSTAL_CACHE"
"""Environment variable naming the cache folder (default ``~/.cache/diffcrystal``)."""

DEFAULT_CACHE_DIR = Path("~/.cache/diffcrystal")
"""Cache folder when :data:`CACHE_ENV_VAR` is not set."""

HASH_CHUNK_BYTES = 1 << 20
"""Bytes read at a time while hashing a source file (1 MiB)."""

_VERSIONED_PACKAGES = ("pymatgen-core", "pymatgen", "ase", "numpy")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def default_cache_dir() -> Path:
    """``$DIFFCRYSTAL_CACHE`` if set, else ``~/.cache/diffcrystal``."""
    return Path(os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR).expanduser()


def package_versions(names: Iterable[str] = _VERSIONED_PACKAGES) -> dict[str, str]:
    """This package's version and each installed one of ``names`` ('absent' if missing): the
    versions a cached result depends on."""
    versions = {"diffcrystal": __version__}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def cache_key(files: Iterable[tuple[str, Path]], options: dict) -> str:
    """SHA-256 hex digest of the cache format version, package versions, ``options`` (a
    JSON-serialisable dict of reader options) and each ``(name, file)``'s name and bytes."""
    digest = hashlib.sha256()
    header = {"format": CACHE_FORMAT_VERSION, "versions": package_versions(), "options": options}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for name, file in files:
        encoded = name.encode()
        digest.update(len(encoded).to_bytes(8, "little") + encoded)
        digest.update(Path(file).stat().st_size.to_bytes(8, "little"))
        with open(file, "rb") as handle:
            while chunk := handle.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def cache_file(cache_dir: Path, source: Path, key: str) -> Path:
    """Where the entry for ``source`` with ``key`` lives: ``<cache_dir>/<name>-<key>.npz``."""
    name = _UNSAFE_NAME.sub("_", Path(source).name) or "data"
    return Path(cache_dir) / f"{name}-{key}.npz"


def save(path: Path, key: str, crystals: list[Crystal], skipped: list[tuple[str, str]]) -> None:
    """Write ``crystals`` and ``skipped`` ``(source, reason)`` pairs to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata_json = json.dumps(
        {
            "format": CACHE_FORMAT_VERSION,
            "key": key,
            "labels": [crystal.label for crystal in crystals],
            "properties": [crystal.properties for crystal in crystals],
            "skipped": [list(pair) for pair in skipped],
        },
        allow_nan=False,
    )
    arrays = {
        "lattices": np.array([c.lattice for c in crystals], dtype=np.float64).reshape(-1, 3, 3),
        "frac_coords": np.concatenate([np.empty((0, 3))] + [c.frac_coords for c in crystals]),
        "atomic_numbers": np.concatenate(
            [np.empty(0, dtype=np.int64)] + [c.atomic_numbers for c in crystals]
        ).astype(np.int64),
        "num_atoms": np.array([c.num_atoms for c in crystals], dtype=np.int64),
        "metadata": np.frombuffer(metadata_json.encode("utf-8"), dtype=np.uint8),
    }
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, default_file_mode())  # as an ordinary open() would, not mkstemp's 0o600
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load(path: Path, key: str) -> tuple[list[Crystal], list[tuple[str, str]]] | None:
    """The cached ``(crystals, skipped pairs)`` at ``path``, or ``None`` when there is no
    entry, it belongs to another key, or it cannot be read (logged; it will be rewritten)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            info = json.loads(archive["metadata"].tobytes().decode("utf-8"))
            if info.get("format") != CACHE_FORMAT_VERSION or info.get("key") != key:
                return None
            lattices = archive["lattices"]
            frac = archive["frac_coords"]
            numbers = archive["atomic_numbers"]
            counts = archive["num_atoms"]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        if offsets[-1] != len(numbers) or len(info["labels"]) != len(counts):
            raise ValueError("array lengths do not match")
        crystals = [
            Crystal(lattices[i], frac[offsets[i]:offsets[i + 1]], numbers[offsets[i]:offsets[i + 1]],
                    properties=info["properties"][i], label=info["labels"][i])
            for i in range(len(counts))
        ]
        skipped = [(str(source), str(reason)) for source, reason in info["skipped"]]
    except Exception as error:  # a damaged entry is a cache miss, never a failure
        logger.warning("ignoring unreadable cache file %s: %s", path, error)
        return None
    return crystals, skipped
