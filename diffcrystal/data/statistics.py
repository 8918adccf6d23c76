"""What a generator learned its data from (species, cell sizes): saved in its checkpoint and
used by sampling, so it lives apart from the training code."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from diffcrystal.data.crystal import Crystal


@dataclass(frozen=True)
class DataStatistics:
    """What a generator learned its data from; saved in the checkpoint.

    ``species``: atomic numbers seen in training; ``num_atoms_histogram``: {atoms per cell:
    count} (de novo sampling draws sizes from it); ``max_atoms``: the largest cell seen.
    """

    species: tuple[int, ...]
    num_atoms_histogram: dict[int, int]
    num_structures: int
    source: str

    @property
    def max_atoms(self) -> int:
        return max(self.num_atoms_histogram)

    @classmethod
    def from_crystals(cls, crystals: list[Crystal], source: str) -> "DataStatistics":
        species = sorted({int(z) for c in crystals for z in c.atomic_numbers})
        sizes = Counter(c.num_atoms for c in crystals)
        return cls(tuple(species), dict(sorted(sizes.items())), len(crystals), source)

    def to_dict(self) -> dict:
        return {
            "species": list(self.species),
            "num_atoms_histogram": {str(k): v for k, v in self.num_atoms_histogram.items()},
            "num_structures": self.num_structures,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "DataStatistics":
        return cls(
            species=tuple(int(z) for z in values["species"]),
            num_atoms_histogram={int(k): int(v) for k, v in values["num_atoms_histogram"].items()},
            num_structures=int(values["num_structures"]),
            source=str(values["source"]),
        )
