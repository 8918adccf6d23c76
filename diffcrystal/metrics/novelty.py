"""Uniqueness and novelty of generated crystals (pymatgen ``StructureMatcher``).

Over the *valid* generated crystals:

- **unique**: the number of distinct crystals among them: each crystal is compared with one
  representative of every distinct crystal found before it and starts a new one when it
  matches none (so ``n_unique / n_considered`` is the unique share, MatterGen's definition);
- **novel**: the crystals that match no training crystal;
- **unique and novel**: distinct crystals whose representative is novel.

Only crystals of the same reduced formula are compared (the matcher, comparing species,
never matches others). The matcher is pymatgen's default ``StructureMatcher()``: ltol 0.2,
stol 0.3, angle_tol 5°, primitive cells, scaled volumes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

from diffcrystal.data.crystal import Crystal


@dataclass(frozen=True)
class NoveltyResult:
    """Counts behind the unique and novel shares; ``n_considered`` valid generated crystals,
    ``n_train`` training crystals compared with."""

    n_considered: int
    n_unique: int
    n_novel: int
    n_unique_and_novel: int
    n_train: int

    def percent(self, count: int) -> float | None:
        """``count`` as a percentage of the crystals considered."""
        return 100.0 * count / self.n_considered if self.n_considered else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_considered_for_novelty": self.n_considered,
            "n_unique": self.n_unique,
            "unique_percent": self.percent(self.n_unique),
            "n_novel": self.n_novel,
            "novel_percent": self.percent(self.n_novel),
            "n_unique_and_novel": self.n_unique_and_novel,
            "unique_and_novel_percent": self.percent(self.n_unique_and_novel),
            "n_train_for_novelty": self.n_train,
        }


def uniqueness_and_novelty(generated: Sequence[Crystal], train: Sequence[Crystal], matcher=None) -> NoveltyResult:
    """Unique and novel counts of ``generated`` (the valid crystals only) against ``train``."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = matcher or StructureMatcher()
    train_by_formula: dict[str, list[Crystal]] = defaultdict(list)
    for crystal in train:
        train_by_formula[crystal.formula].append(crystal)
    train_structures: dict[str, list] = {}

    def known(formula: str) -> list:
        if formula not in train_structures:
            train_structures[formula] = [c.to_structure() for c in train_by_formula.get(formula, [])]
        return train_structures[formula]

    representatives: dict[str, list] = defaultdict(list)
    n_novel = n_unique_and_novel = 0
    for crystal in generated:
        formula = crystal.formula
        structure = crystal.to_structure()
        novel = not any(matcher.fit(structure, other) for other in known(formula))
        n_novel += novel
        if not any(matcher.fit(structure, other) for other in representatives[formula]):
            representatives[formula].append(structure)
            n_unique_and_novel += novel
    n_unique = sum(len(group) for group in representatives.values())
    return NoveltyResult(len(generated), n_unique, n_novel, n_unique_and_novel, len(train))
