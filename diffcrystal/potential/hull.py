"""Energy above the convex hull of known phases, every phase relaxed with the candidates' potential.

**Known phases** (:func:`dataset_references`) come from a dataset read with
:func:`~diffcrystal.data.readers.read_crystals` (a CDVAE CSV such as mp_20's ``train.csv``, a
CIF folder, extxyz, an ASE db). For candidates whose chemical systems (sets of elements) are
S_1, S_2, ... the references are every entry whose elements are a subset of some S_i, labelled
by its ``material_id``. An element of some S_i with no elemental entry (mp_20 has none of Y, Ti,
Fe, La, Ni and 15 others) gets ASE's reference state, ``ase.build.bulk(symbol)`` (e.g. hcp Y),
labelled ``ase-bulk-<symbol>``; one ASE cannot build either (molecular H, N, O, F, Cl, I;
tetragonal Pa) is an :class:`~diffcrystal.errors.InputError` naming it, never a silent zero.
Optionally entries far above the dataset's own hull (its ``e_above_hull`` column) are left out
and listed, to save relaxations (``--hull-max-e-above-hull``).
They are relaxed like the candidates (same potential and settings), once:
:func:`~diffcrystal.potential.relax_cache.relax_cached` keeps each relaxation on disk.

**Hull** (:class:`KnownPhases`): one pymatgen ``PhaseDiagram`` per chemical system S of a
candidate, of ``PDEntry(composition, E)`` (E the total energy in eV) of the *converged*
references with elements in S. (``PDEntry``, not ``ComputedEntry``: importing the latter
loads pymatgen's compatibility schemes, 30 s against 15 s for the phase diagram alone on the
loaded 2-core machine, and no correction scheme applies to a potential's energies.) A
candidate of composition x with total energy E on N atoms is

    ΔE_hull = E/N − Σ_k c_k E_k/N_k   (eV/atom),

where the phases k with atom fractions c_k (Σ c_k = 1) are the hull's decomposition of x. It is
negative when the candidate lies below the hull of the known phases (``allow_negative``). Every
element of S needs a converged elemental reference, and one hull never mixes potentials.

**Known or novel**: a candidate matches a known phase when pymatgen's ``StructureMatcher``
(the ranking's, :func:`~diffcrystal.potential.rank.default_matcher`) maps its relaxed structure
onto a relaxed reference of the same reduced formula; :meth:`KnownPhases.matching_phase` names
the lowest-energy such reference, or ``''`` for a novel candidate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from diffcrystal.errors import InputError
from diffcrystal.potential.io import MissingStructure
from diffcrystal.potential.relax import RelaxResult

ASE_REFERENCE_PREFIX = "ase-bulk-"
"""Label prefix of an elemental reference built by ``ase.build.bulk``."""

E_ABOVE_HULL_PROPERTY = "e_above_hull"
"""Dataset property (eV/atom, the dataset's own hull, e.g. DFT in mp_20) that
``max_e_above_hull`` of :func:`dataset_references` reads."""


def chemical_systems(structures: Iterable) -> set[frozenset[str]]:
    """The distinct element sets of ``structures`` (ASE ``Atoms``; missing ones are ignored)."""
    return {frozenset(atoms.get_chemical_symbols()) for atoms in structures
            if not isinstance(atoms, MissingStructure) and len(atoms)}


def elemental_reference(symbol: str):
    """ASE's reference state of element ``symbol`` as a periodic ``Atoms`` (``ase.build.bulk``);
    raises :class:`InputError` naming the element when ASE has no crystal for it."""
    from ase.build import bulk

    try:
        return bulk(symbol)
    except (ValueError, RuntimeError, KeyError) as error:
        raise InputError(
            f"no elemental reference for {symbol}: the hull dataset has no {symbol} phase and "
            f"ASE cannot build one ({(str(error).splitlines() or [''])[0]}); add a {symbol} "
            f"crystal to the dataset"
        ) from None


def dataset_references(dataset: str | Path, systems: Iterable[frozenset[str]], progress: bool = True,
                       max_e_above_hull: float | None = None) -> tuple[list[tuple[str, object]], list[str]]:
    """``(label, Atoms)`` of every ``dataset`` entry whose elements are a subset of one of
    ``systems``, then ASE's reference state of each element that has no elemental entry
    (see the module docstring); and the labels of the entries left out because their
    :data:`E_ABOVE_HULL_PROPERTY` exceeds ``max_e_above_hull`` (eV/atom; ``None`` keeps all).
    Raises :class:`InputError` before anything is relaxed."""
    from diffcrystal.data.readers import read_crystals

    if max_e_above_hull is not None and not max_e_above_hull >= 0:
        raise InputError(f"the e_above_hull cut must be >= 0 eV/atom, got {max_e_above_hull}")
    systems = [frozenset(s) for s in systems]
    if not systems:
        raise InputError("no candidate structure to build a hull for")
    crystals = read_crystals(dataset, progress=progress).crystals
    items, left_out, elemental = [], [], set()
    for crystal in crystals:
        atoms = crystal.to_atoms()
        elements = set(atoms.get_chemical_symbols())
        if not any(elements <= system for system in systems):
            continue
        if max_e_above_hull is not None:
            value = crystal.properties.get(E_ABOVE_HULL_PROPERTY)
            if value is None:
                raise InputError(f"{Path(dataset).name}: {crystal.label} has no {E_ABOVE_HULL_PROPERTY} "
                                 f"property to compare with the cut {max_e_above_hull} eV/atom")
            if value > max_e_above_hull:
                left_out.append(crystal.label)
                continue
        items.append((crystal.label, atoms))
        if len(elements) == 1:
            elemental |= elements
    for symbol in sorted(set().union(*systems) - elemental):
        items.append((f"{ASE_REFERENCE_PREFIX}{symbol}", elemental_reference(symbol)))
    return items, left_out


class KnownPhases:
    """The convex hulls of relaxed ``references`` (one potential) and a structure matcher.

    ``references``: relaxation results of known phases; only converged ones build hulls, every
    one with a relaxed structure may be matched. ``matcher``: a pymatgen ``StructureMatcher``.
    """

    def __init__(self, references: Sequence[RelaxResult], matcher):
        labels = {r.potential for r in references}
        if len(labels) > 1:
            raise InputError(f"refusing to mix potentials in one hull: {', '.join(sorted(labels))}")
        if not any(r.rankable for r in references):
            raise InputError("no reference phase relaxed to convergence; cannot build a convex hull")
        self.potential = labels.pop()
        self.references = list(references)
        self.matcher = matcher
        self._diagrams: dict[frozenset[str], object] = {}
        self._structures: dict[str, list[tuple[RelaxResult, object]]] = {}
        for result in sorted((r for r in references if r.atoms is not None),
                             key=lambda r: (not r.rankable, r.energy_per_atom)):
            structure = result.structure
            self._structures.setdefault(structure.composition.reduced_formula, []).append(
                (result, structure))

    def _check_potential(self, result: RelaxResult) -> None:
        if result.potential != self.potential:
            raise InputError(f"refusing to compare energies from different potentials: "
                             f"{result.label} ({result.potential}) against a hull of {self.potential}")

    def diagram(self, system: frozenset[str]):
        """The ``PhaseDiagram`` of the converged references with elements in ``system``."""
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
        from pymatgen.core import Composition

        if system in self._diagrams:
            return self._diagrams[system]
        entries, elemental = [], set()
        for result in self.references:
            if not result.rankable:
                continue
            composition = Composition(result.atoms.get_chemical_formula())
            if {str(e) for e in composition.elements} <= system:
                entries.append(PDEntry(composition, result.energy, name=result.label))
                if len(composition.elements) == 1:
                    elemental.add(str(composition.elements[0]))
        missing = sorted(system - elemental)
        if missing:
            stuck = [f"{r.label} {r.status}" for r in self.references if not r.rankable and r.formula
                     and {str(e) for e in Composition(r.formula).elements} <= set(missing)]
            raise InputError(
                f"the known phases have no converged elemental phase of {', '.join(missing)}"
                + (f" ({', '.join(stuck)}; more --steps may help)" if stuck else "")
            )
        try:
            self._diagrams[system] = PhaseDiagram(entries)
        except ValueError as error:
            raise InputError(f"known phases of {'-'.join(sorted(system))} make no convex hull: {error}") from None
        return self._diagrams[system]

    def e_above_hull(self, result: RelaxResult) -> float:
        """ΔE_hull of ``result`` in eV/atom (module docstring), against the hull of its own
        chemical system."""
        from pymatgen.analysis.phase_diagram import PDEntry
        from pymatgen.core import Composition

        self._check_potential(result)
        composition = Composition(result.atoms.get_chemical_formula())
        system = frozenset(str(e) for e in composition.elements)
        candidate = PDEntry(composition, result.energy, name=result.label)
        return float(self.diagram(system).get_e_above_hull(candidate, allow_negative=True))

    def matching_phase(self, result: RelaxResult) -> str:
        """Label of the lowest-energy reference ``result``'s relaxed structure matches, or ``''``."""
        self._check_potential(result)
        structure = result.structure
        for reference, known in self._structures.get(structure.composition.reduced_formula, []):
            if self.matcher.fit(structure, known):
                return reference.label
        return ""
