"""On-disk cache of relaxations, so known phases are relaxed once per potential and settings.

One entry per relaxed structure: a JSON file (no pickle, so a cache file cannot run code)
``<cache dir>/relaxed/<key>.json`` written atomically
(:func:`~diffcrystal.atomic_write.atomic_write_text`). The **key** is the SHA-256 of

- :data:`RELAX_CACHE_VERSION` and the versions of diffcrystal, ASE, pymatgen and numpy,
- the potential's identity (:attr:`~diffcrystal.potential.calculators.Potential.identity`:
  its label and the SHA-256 of its weights, so a retrained model never reads another's energies),
- the relaxation settings (:class:`~diffcrystal.potential.results.RelaxSettings`: ``fmax``,
  ``max_steps``, optimizer, engine, and a pre-relaxing potential by its identity),
- the input structure: cell (3, 3) Å, positions (N, 3) Å and atomic numbers (N,), as bytes.

An entry holds the :class:`~diffcrystal.potential.results.RelaxResult` and the relaxed cell,
positions and atomic numbers. Outcomes that depend only on those inputs are stored
(``converged``, ``not_converged``, ``exploded``); ``failed`` ones (a worker that died, a
structure that could not be read) are not, so they are retried. An unreadable entry is a cache
miss, never a failure. Entries are written when :func:`relax_cached`'s batch has finished (an
interrupted batch stores nothing). The cache folder is :func:`~diffcrystal.data.cache.default_cache_dir`
(``$DIFFCRYSTAL_CACHE`` or ``~/.cache/diffcrystal``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.data.cache import default_cache_dir, package_versions
from diffcrystal.potential.calculators import Potential, resolve_potential
from diffcrystal.potential.relax import DEFAULT_WORKERS, relax_many
from diffcrystal.potential.results import RelaxResult, RelaxSettings

logger = logging.getLogger(__name__)

RELAX_CACHE_VERSION = 2
"""Bump when the meaning of a cached relaxation changes; older entries are then ignored
(2: ``max_force`` is the generalised force tested against ``fmax``)."""

RELAX_CACHE_FOLDER = "relaxed"
"""Sub-folder of the cache folder holding the relaxation entries."""

CACHED_STATUSES = ("converged", "not_converged", "exploded")
"""Outcomes that follow from the inputs alone and are stored."""


class RelaxCache:
    """Relaxations of one potential with one :class:`RelaxSettings`, stored under ``cache_dir``
    (default :func:`~diffcrystal.data.cache.default_cache_dir`)."""

    def __init__(self, potential: str | Potential, settings: RelaxSettings = RelaxSettings(),
                 cache_dir: str | Path | None = None):
        self.potential = resolve_potential(potential)
        self.settings = settings
        self.folder = Path(cache_dir if cache_dir is not None else default_cache_dir()) / RELAX_CACHE_FOLDER
        self._header = json.dumps({
            "format": RELAX_CACHE_VERSION, "versions": package_versions(),
            "potential": self.potential.identity, "settings": self._settings_identity(settings),
        }, sort_keys=True).encode()

    @staticmethod
    def _settings_identity(settings: RelaxSettings) -> dict:
        """The settings as a dict, a pre-relaxing potential by its identity."""
        fields = dataclasses.asdict(settings)
        if fields.get("prerelax") is not None:
            fields["prerelax"] = resolve_potential(fields["prerelax"]).identity
        return fields

    def key(self, atoms) -> str:
        """SHA-256 hex key of ``atoms`` (ASE ``Atoms``) under this potential and settings."""
        digest = hashlib.sha256(self._header)
        for array, dtype in ((atoms.cell.array, np.float64), (atoms.positions, np.float64),
                             (atoms.numbers, np.int64)):
            digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
        return digest.hexdigest()

    def path(self, atoms) -> Path:
        return self.folder / f"{self.key(atoms)}.json"

    def get(self, label: str, atoms) -> RelaxResult | None:
        """The stored relaxation of ``atoms`` (relabelled ``label``), or ``None``."""
        from ase import Atoms

        path = self.path(atoms)
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text())
            fields = entry["result"]
            relaxed = entry["relaxed"]
            result = RelaxResult(**{**fields, "label": label, "stress": tuple(fields["stress"])})
            if relaxed is not None:
                result.atoms = Atoms(numbers=relaxed["numbers"], positions=relaxed["positions"],
                                     cell=relaxed["cell"], pbc=True)
        except Exception as error:  # a damaged entry is a miss, never a failure
            logger.warning("ignoring unreadable relaxation cache file %s: %s", path, error)
            return None
        return result

    def put(self, atoms, result: RelaxResult) -> None:
        """Store the relaxation ``result`` of the input ``atoms`` (when its status is cacheable)."""
        if result.status not in CACHED_STATUSES:
            return
        fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)
                  if f.name not in ("atoms", "label")}
        fields["stress"] = list(fields["stress"])
        relaxed = None if result.atoms is None else {
            "cell": result.atoms.cell.array.tolist(), "positions": result.atoms.positions.tolist(),
            "numbers": result.atoms.numbers.tolist(),
        }
        # NaN energies of exploded results: json writes them as NaN, which json reads back.
        atomic_write_text(self.path(atoms), json.dumps({"result": fields, "relaxed": relaxed}))


def relax_cached(items: Sequence[tuple[str, object]], potential: str | Potential,
                 settings: RelaxSettings = RelaxSettings(), workers: int = DEFAULT_WORKERS,
                 cache_dir: str | Path | None = None, progress: bool = True,
                 device: str = "cpu") -> tuple[list[RelaxResult], int]:
    """Relax ``(label, Atoms)`` pairs with :func:`~diffcrystal.potential.relax.relax_many`,
    reading and storing each through a :class:`RelaxCache`; returns the results in input order
    and how many came from the cache."""
    cache = RelaxCache(resolve_potential(potential, device), settings, cache_dir)
    results: list[RelaxResult | None] = [cache.get(label, atoms) for label, atoms in items]
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        fresh = relax_many([items[i] for i in missing], cache.potential, settings, workers=workers,
                           device=device, progress=progress)
        for i, result in zip(missing, fresh):
            cache.put(items[i][1], result)
            results[i] = result
    return results, len(items) - len(missing)  # type: ignore[return-value]
