"""Structure templates by chemical analogy: known crystals of the same stoichiometry whose
elements are nearest to a target's on Pettifor's chemical scale.

A chemist predicting the structure of a new compound first looks for known compounds of the
same formula type made of similar elements (Pettifor's structure maps; the template step of
CSPML and of DiffCSP++, arXiv:2402.03992). This module does that lookup over a set of
training crystals:

- **Formula type**: the sorted counts of the reduced formula, e.g. ``(1, 1, 3)`` for ABX3;
  only training crystals of the target's type are analogues.
- **Element pairing**: each composition's elements sorted by (reduced count, Mendeleev number
  M, Z); the i-th elements of the two lists are paired. Pairs always have equal counts, and
  within a group of equal counts the sorted pairing minimises ``sum |M_a - M_b|`` (optimal
  one-dimensional transport), so no other count-preserving bijection is closer.
- **Distance** (Mendeleev units per atom of the reduced formula):
  ``d = sum_i c_i |M(target_i) - M(template_i)| / sum_i c_i``; 0 for the same elements.
- **Order**: templates with the target's atom count first (same number of formula units per
  cell), then by ``d``, then by energy above the hull (the ``e_above_hull`` property when the
  data carry it, most stable first), then by position in the training data.

An :class:`Analogue` gives the template with the target's species substituted (the geometry
of the ``analogue`` baseline) and the template's space group and Wyckoff assignment with the
target's species (the constraint under which a model samples with ``--spacegroup-from-analogues``).
A library is built from crystals (:meth:`AnalogueLibrary.from_crystals`) or read from a table
file (:meth:`AnalogueLibrary.write_table` / :meth:`AnalogueLibrary.from_table`, gzipped JSON:
what a checkpoint ships). A table of format 2 keeps each template's geometry (lattice rows in
Å, fractional coordinates, atomic numbers), so the substituted templates themselves are
candidates (``diffcrystal predict``); format 1 tables hold only the assignments.

**Structure-type votes** (:meth:`AnalogueLibrary.type_votes`): the nearest analogues vote for
their structure type (space group and Wyckoff sites with the target's species), each with
weight ``exp(-d / scale)``; a type's vote is its share of the total. A type that many near
analogues adopt is likelier than the single nearest one's (a k-nearest-neighbour prior): over
158 held-out validation structures the type with the most votes among the 10 nearest (scale 1)
matched 68.4 % of targets against 62.7 % for the nearest analogue's (docs/benchmarks.md,
"Ranked prediction").
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from diffcrystal.atomic_write import atomic_write_bytes
from diffcrystal.data.composition import Composition
from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError
from diffcrystal.symmetry import SYMPREC_TIGHT

__all__ = ["ASSIGNMENT_TABLE_FORMAT", "DEFAULT_MAX_ANALOGUE_DISTANCE", "TABLE_FORMAT", "Analogue", "AnalogueLibrary", "Template", "formula_type", "mendeleev_number"]

TABLE_FORMAT = "diffcrystal-analogue-table-2"
"""Version tag of :meth:`AnalogueLibrary.write_table` files (with geometry)."""

ASSIGNMENT_TABLE_FORMAT = "diffcrystal-analogue-table-1"
"""Version tag of the earlier tables, which hold the Wyckoff assignments but no geometry."""

LATTICE_DECIMALS = 6
"""Decimals of a template's lattice entries (Å) in a table file."""

FRAC_DECIMALS = 7
"""Decimals of a template's fractional coordinates in a table file."""

VOTING_ANALOGUES = 10
"""How many nearest analogues vote in :meth:`AnalogueLibrary.type_votes` (chosen on validation)."""

VOTE_DISTANCE_SCALE = 1.0
"""Mendeleev units: an analogue at distance d votes with weight exp(-d / scale) (chosen on validation)."""

DEFAULT_MAX_ANALOGUE_DISTANCE = 8.0
"""Farthest analogue ``sample --analogues`` uses unless told otherwise (Mendeleev units).
On all 4,523 MP-20 test targets the analogue's geometry matches 77.9 % of the targets whose
analogue lies within 1, 45.7 % at 2-4, 20.7 % at 4-8, 7.1 % at 8-16 and none beyond
(``scripts/studies/analogue_distance_curve.py``): past 8 its group is a worse guess than the
unconstrained model's samples (12 % @1)."""


@cache
def mendeleev_number(atomic_number: int) -> float:
    """Pettifor's Mendeleev number of an element (pymatgen's table), e.g. Na 11, Cl 99."""
    from pymatgen.core import Element

    value = Element.from_Z(int(atomic_number)).mendeleev_no
    if value is None:
        raise InputError(f"element Z={atomic_number} has no Mendeleev number; it cannot be paired with analogues")
    return float(value)


def formula_type(counts: Composition) -> tuple[int, ...]:
    """Sorted counts of the reduced formula: ``{Sr: 1, Ti: 1, O: 3}`` -> ``(1, 1, 3)``."""
    divisor = math.gcd(*counts.values())
    return tuple(sorted(c // divisor for c in counts.values()))


def _paired_order(counts: Composition) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """Elements sorted by (reduced count, Mendeleev number, Z), with their reduced counts and
    Mendeleev numbers: the order in which two compositions' elements are paired."""
    divisor = math.gcd(*counts.values())
    elements = tuple(sorted(counts, key=lambda z: (counts[z] // divisor, mendeleev_number(z), z)))
    reduced = np.array([counts[z] // divisor for z in elements], dtype=np.float64)
    numbers = np.array([mendeleev_number(z) for z in elements], dtype=np.float64)
    return elements, reduced, numbers


@dataclass(frozen=True)
class Template:
    """One known crystal as a template: its ``label``, ``composition`` (cell counts),
    ``num_atoms``, energy above the hull (eV/atom; ``inf`` when unknown) and its geometry
    ``crystal`` (None in a table, which keeps only the Wyckoff assignment)."""

    label: str
    composition: Composition
    num_atoms: int
    e_above_hull: float = math.inf
    crystal: Crystal | None = None

    @classmethod
    def of(cls, crystal: Crystal) -> "Template":
        e_hull = crystal.properties.get("e_above_hull")
        stability = float(e_hull) if e_hull is not None and np.isfinite(e_hull) else math.inf
        return cls(crystal.label, crystal.composition, crystal.num_atoms, stability, crystal)


@dataclass(frozen=True)
class Analogue:
    """Template ``index`` of ``library``, whose element ``species_map[z]`` takes the place of
    its element ``z``, at Mendeleev distance ``distance`` from the target."""

    template: Template
    species_map: dict[int, int]
    distance: float
    library: "AnalogueLibrary" = field(repr=False, compare=False)
    index: int = 0

    def substituted(self) -> Crystal:
        """The template's lattice and coordinates carrying the target's species."""
        crystal = self.template.crystal
        if crystal is None:
            raise InputError(f"template {self.template.label} comes from a table without geometry")
        species = np.array([self.species_map[int(z)] for z in crystal.atomic_numbers])
        return Crystal(crystal.lattice, crystal.frac_coords, species, label=f"{crystal.label} as analogue")

    def rescaled(self) -> Crystal:
        """:meth:`substituted`, its lattice scaled isotropically to the volume pymatgen's
        ``RLSVolumePredictor`` predicts from the template with atomic radii r:
        ``V = V_template (sum_i r_i n_i^(1/3) / sum_j r_j n_j^(1/3))^3`` over the new elements i
        and the template's j, n their atom counts; unscaled when an element has no radius. A template of much smaller or larger atoms
        otherwise starts strained, and a few relaxation steps say little about its minimum."""
        import warnings

        from pymatgen.analysis.structure_prediction.volume_predictor import RLSVolumePredictor

        substituted = self.substituted()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                volume = RLSVolumePredictor(check_isostructural=False, radii_type="atomic").predict(
                    substituted.to_structure(), self.template.crystal.to_structure())
        except Exception:  # pymatgen knows no radius for an element: keep the template's volume
            return substituted
        if not (np.isfinite(volume) and volume > 0):
            return substituted
        scale = (volume / abs(np.linalg.det(substituted.lattice))) ** (1 / 3)
        return Crystal(substituted.lattice * scale, substituted.frac_coords, substituted.atomic_numbers,
                       label=substituted.label)

    def assignment(self):
        """The template's :class:`~diffcrystal.spacegroup.WyckoffAssignment` (spglib at
        :data:`~diffcrystal.symmetry.SYMPREC_TIGHT`) with the target's species; every atom on
        1a of P1 when spglib finds no group."""
        from diffcrystal.spacegroup import Orbit, WyckoffAssignment

        own = self.library.assignment(self.index)
        return WyckoffAssignment(own.spacegroup, tuple(Orbit(self.species_map[o.atomic_number], o.site)
                                                        for o in own.orbits))

    def structure_type(self) -> tuple:
        """``(space group, sorted (element, Wyckoff site) pairs)`` with the target's species:
        two analogues of one type give the same crystal up to lattice and free parameters."""
        assignment = self.assignment()
        return assignment.spacegroup, tuple(sorted((o.atomic_number, o.site) for o in assignment.orbits))


class AnalogueLibrary:
    """Templates indexed by formula type (see the module docstring). ``assignments``: the
    templates' Wyckoff assignments when known (a table); otherwise each is read from its
    crystal by spglib when first needed."""

    def __init__(self, templates: Sequence[Template], assignments: Sequence | None = None):
        if not templates:
            raise InputError("the training data hold no structures to take analogues from")
        self.templates = tuple(templates)
        self._by_type: dict[tuple[int, ...], list[int]] = {}
        self._paired: list[tuple[tuple[int, ...], np.ndarray, np.ndarray]] = []
        for index, template in enumerate(self.templates):
            self._paired.append(_paired_order(template.composition))
            self._by_type.setdefault(formula_type(template.composition), []).append(index)
        self._assignments: dict[int, object] = dict(enumerate(assignments)) if assignments is not None else {}

    @classmethod
    def from_crystals(cls, crystals: Sequence[Crystal]) -> "AnalogueLibrary":
        return cls([Template.of(c) for c in crystals])

    def __len__(self) -> int:
        return len(self.templates)

    def without(self, labels) -> "AnalogueLibrary":
        """This library less the templates whose label is in ``labels`` (e.g. a validation
        target held out of its own analogues); assignments already known are kept."""
        drop = set(labels)
        keep = [i for i, t in enumerate(self.templates) if t.label not in drop]
        library = AnalogueLibrary([self.templates[i] for i in keep])
        library._assignments = {new: self._assignments[old] for new, old in enumerate(keep) if old in self._assignments}
        return library

    def assignment(self, index: int):
        """Wyckoff assignment of template ``index`` (read once, then kept)."""
        if index not in self._assignments:
            from diffcrystal.spacegroup import WyckoffAssignment, assignment_of

            crystal = self.templates[index].crystal
            self._assignments[index] = (assignment_of(crystal, SYMPREC_TIGHT)
                                        or WyckoffAssignment.p1(crystal.atomic_numbers))
        return self._assignments[index]

    def analogues(self, composition: Composition, num_atoms: int | None = None) -> list[Analogue]:
        """Every template of ``composition``'s formula type, nearest first (order in the module
        docstring); ``num_atoms``: the target cell's atom count (None: not used)."""
        if not composition or min(composition.values()) < 1:
            raise InputError(f"composition must have positive counts, got {composition}")
        elements, reduced, numbers = _paired_order(composition)
        found = []
        for index in self._by_type.get(formula_type(composition), ()):
            template_elements, _, template_numbers = self._paired[index]
            distance = float(np.sum(reduced * np.abs(numbers - template_numbers)) / reduced.sum())
            template = self.templates[index]
            key = (num_atoms is not None and template.num_atoms != num_atoms, distance, template.e_above_hull, index)
            found.append((key, Analogue(template, dict(zip(template_elements, elements)), distance, self, index)))
        return [analogue for _, analogue in sorted(found, key=lambda pair: pair[0])]

    def distinct_analogues(self, composition: Composition, k: int, num_atoms: int | None = None,
                           max_distance: float | None = None) -> list[Analogue]:
        """The first ``k`` analogues of pairwise different structure type (space group and
        Wyckoff sites with the target's species) within Mendeleev distance ``max_distance``
        (None: any); fewer when the data hold fewer."""
        chosen, seen = [], set()
        for analogue in self.analogues(composition, num_atoms):
            if max_distance is not None and analogue.distance > max_distance:
                continue
            kind = analogue.structure_type()
            if kind not in seen:
                seen.add(kind)
                chosen.append(analogue)
                if len(chosen) == k:
                    break
        return chosen

    def type_votes(self, composition: Composition, num_atoms: int | None = None, nearest: int = VOTING_ANALOGUES,
                   scale: float = VOTE_DISTANCE_SCALE) -> dict[tuple, float]:
        """Each structure type's share of the votes of the ``nearest`` analogues (in the order of
        :meth:`analogues`), an analogue at distance ``d`` voting ``exp(-d / scale)``
        (module docstring); the shares sum to 1, empty when there is no analogue."""
        votes: dict[tuple, float] = {}
        for analogue in self.analogues(composition, num_atoms)[:nearest]:
            kind = analogue.structure_type()
            votes[kind] = votes.get(kind, 0.0) + math.exp(-analogue.distance / scale)
        total = sum(votes.values())
        return {kind: vote / total for kind, vote in votes.items()}

    def candidates_for(self, target: Crystal, k: int) -> list[Analogue]:
        """``k`` analogues for a CSP target cell: the nearest of distinct structure types with
        its atom count first (:meth:`distinct_analogues`), repeated in order when fewer exist;
        empty when the data hold none of its formula type."""
        found = self.distinct_analogues(target.composition, k, target.num_atoms)
        return [found[i % len(found)] for i in range(k)] if found else []

    # ------------------------------------------------------------------ table files
    @property
    def has_geometry(self) -> bool:
        """Whether every template carries its crystal (so :meth:`Analogue.substituted` works)."""
        return all(t.crystal is not None for t in self.templates)

    def write_table(self, path: str | os.PathLike, source: str, progress: bool = True) -> Path:
        """Save every template's label, composition, atom count, energy above the hull, Wyckoff
        assignment and geometry (lattice, fractional coordinates and atomic numbers, rounded to
        :data:`LATTICE_DECIMALS` / :data:`FRAC_DECIMALS`) as gzipped JSON, atomically;
        ``source`` names the data. Needs a library with geometry (:attr:`has_geometry`)."""
        from tqdm.auto import tqdm

        if not self.has_geometry:
            raise InputError("this library has no geometry to write (it was read from an assignment-only table)")
        rows = []
        for index in tqdm(range(len(self)), desc="symmetry of templates", unit="crystal", disable=not progress):
            template, assignment = self.templates[index], self.assignment(index)
            crystal = template.crystal
            geometry = [np.round(crystal.lattice, LATTICE_DECIMALS).ravel().tolist(),
                        np.round(crystal.frac_coords, FRAC_DECIMALS).ravel().tolist(),
                        crystal.atomic_numbers.astype(int).tolist()]
            rows.append([template.label, [[z, c] for z, c in template.composition.items()], template.num_atoms,
                         None if math.isinf(template.e_above_hull) else template.e_above_hull,
                         assignment.spacegroup, [[o.atomic_number, o.site] for o in assignment.orbits], geometry])
        payload = {"format": TABLE_FORMAT, "source": source, "symprec_A": SYMPREC_TIGHT, "templates": rows}
        path = Path(path)
        atomic_write_bytes(path, gzip.compress(json.dumps(payload, separators=(",", ":")).encode(), mtime=0))
        return path

    @classmethod
    def from_table(cls, path: str | os.PathLike) -> "AnalogueLibrary":
        """A library read from :meth:`write_table`'s file (format 2, with geometry) or from an
        assignment-only format-1 table; :class:`InputError` (one line) when the file is
        missing, corrupt or of another format."""
        from diffcrystal.spacegroup import Orbit, WyckoffAssignment

        try:
            payload = json.loads(gzip.decompress(Path(path).read_bytes()))
            kind = payload.get("format")
            if kind not in (TABLE_FORMAT, ASSIGNMENT_TABLE_FORMAT):
                raise ValueError(f"format {kind!r}, expected {TABLE_FORMAT!r}")
            templates, assignments = [], []
            for row in payload["templates"]:
                label, composition, num_atoms, e_hull, spacegroup, orbits = row[:6]
                crystal = None
                if kind == TABLE_FORMAT:
                    lattice, frac, numbers = row[6]
                    crystal = Crystal(np.reshape(lattice, (3, 3)), np.reshape(frac, (-1, 3)), np.asarray(numbers),
                                      label=str(label))
                templates.append(Template(str(label), {int(z): int(c) for z, c in composition}, int(num_atoms),
                                          math.inf if e_hull is None else float(e_hull), crystal))
                assignments.append(WyckoffAssignment(int(spacegroup), tuple(Orbit(int(z), str(site))
                                                                            for z, site in orbits)))
        except (OSError, EOFError, gzip.BadGzipFile, ValueError, KeyError, TypeError, AttributeError) as error:
            raise InputError(f"cannot read analogue table {path}: {type(error).__name__}: {error}") from None
        return cls(templates, assignments)
