"""Candidate structures for a composition from three sources (the CSP pipeline of ``predict``).

- ``template``: the nearest known crystals of the composition's formula type on Pettifor's
  Mendeleev scale, of pairwise distinct structure type, with the composition's species
  substituted (:mod:`diffcrystal.analogues`; the ``analogue`` baseline's candidates, but without
  knowing the target's atom count).
- ``analogue_diffusion``: samples of a CSP generator constrained to those analogues' space
  groups and Wyckoff assignments (``sample --analogues``), cycling over the analogues nearest
  first.
- ``free_diffusion``: unconstrained samples of the generator (new prototypes no template has),
  with the numbers of formula units per cell the templates use (1 when there are none).

By default ``predict`` draws templates alone (:data:`DEFAULT_SOURCES`), and free samples in their
place where no template lies within reach; the diffusion sources are asked for by name.

When the cell's atom count is given (``num_atoms``, as the CSP benchmarks give it), templates
with that many atoms come first and free samples have that many atoms.

Every candidate records its source, the analogue behind it and that analogue's Mendeleev
distance (``nan`` for free samples), energy above the hull in its own data (``nan`` when
unknown) and its structure type's share of the nearest analogues' votes
(:meth:`~diffcrystal.analogues.AnalogueLibrary.type_votes`; 0 for free samples): the ranking
score uses them (:mod:`diffcrystal.ranking`).

Before any relaxation, candidates that pymatgen's ``StructureMatcher`` calls the same crystal
are merged (:func:`deduplicate_candidates`): the first in source order is relaxed, the others
point to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from diffcrystal.analogues import Analogue, AnalogueLibrary
from diffcrystal.data.composition import Composition, format_composition, reduce
from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError

Source = Literal["template", "analogue_diffusion", "free_diffusion"]
SOURCES: tuple[Source, ...] = ("template", "analogue_diffusion", "free_diffusion")
"""Candidate sources, in the order candidates are listed and deduplicated."""

SOURCE_COUNTS: dict[Source, int] = {"template": 8, "analogue_diffusion": 3, "free_diffusion": 2}
"""Candidates per source when ``predict`` draws from it and no count is given (before
deduplication)."""

DEFAULT_SOURCES: tuple[Source, ...] = ("template",)
"""The sources ``predict`` draws from by default: templates alone, with free samples in their
place where no template is within reach. On held-out validation and on test targets, the
model's samples beside the templates left ranked @1 and @5 level or lower at more than 1.6 times
the CPU time (docs/benchmarks.md, "The model's samples beside the templates, on validation")."""


@dataclass(frozen=True)
class Candidate:
    """One candidate crystal: ``label`` (unique in a run), the ``crystal`` (lattice rows in Å),
    its ``source``, the ``analogue`` template behind it (``''`` for free samples) with its
    Mendeleev distance ``analogue_distance`` (per formula atom; ``nan`` for free samples), the
    template's ``template_e_above_hull`` (eV/atom in its own data; ``nan`` when unknown) and
    ``type_vote``, the share of the nearest analogues' votes its structure type has (0 to 1)."""

    label: str
    crystal: Crystal
    source: Source
    analogue: str = ""
    analogue_distance: float = math.nan
    template_e_above_hull: float = math.nan
    type_vote: float = 0.0


def _from_analogue(label: str, crystal: Crystal, source: Source, analogue: Analogue,
                   votes: dict[tuple, float]) -> Candidate:
    stability = analogue.template.e_above_hull
    return Candidate(label, crystal, source, analogue.template.label, analogue.distance,
                     stability if math.isfinite(stability) else math.nan, votes.get(analogue.structure_type(), 0.0))


def nearest_analogues(composition: Composition, library: AnalogueLibrary, k: int,
                      max_distance: float | None, num_atoms: int | None = None) -> list[Analogue]:
    """Up to ``k`` nearest analogues of distinct structure type within ``max_distance``
    Mendeleev units (None: any), those whose cell has ``num_atoms`` atoms first (None: any
    count); empty when the library has none."""
    return library.distinct_analogues(composition, k, num_atoms, max_distance) if k > 0 else []


def template_candidates(analogues: list[Analogue], votes: dict[tuple, float] | None = None,
                        rescale: bool = False) -> list[Candidate]:
    """The substituted templates of ``analogues`` (needs a library with geometry); ``votes``:
    structure-type shares (:meth:`~diffcrystal.analogues.AnalogueLibrary.type_votes`);
    ``rescale``: at the volume predicted for the new species (:meth:`Analogue.rescaled`)."""
    return [_from_analogue(f"template-{i:02d}", a.rescaled() if rescale else a.substituted(), "template", a,
                           votes or {}) for i, a in enumerate(analogues)]


def analogue_diffusion_candidates(generator, analogues: list[Analogue], n: int, seed: int,
                                  num_steps: int | None = None, progress: bool = False,
                                  votes: dict[tuple, float] | None = None) -> list[Candidate]:
    """``n`` samples of the CSP ``generator`` on the space groups and Wyckoff assignments of
    ``analogues``, cycled nearest first, skipping analogues whose conventional cell has more
    atoms than the generator's largest training cell (their samples are poor and costly: a
    cubic group's cell can hold 80 atoms); samples that are no crystal are left out."""
    from diffcrystal.spacegroup import break_extra_symmetry

    analogues = [a for a in analogues if a.assignment().num_atoms <= generator.statistics.max_atoms]
    if n < 1 or not analogues:
        return []
    chosen = [analogues[i % len(analogues)] for i in range(n)]
    assignments = [a.assignment() for a in chosen]
    plans = [(a.num_atoms, a.atomic_numbers()) for a in assignments]
    crystals = _sample(generator, plans, seed, num_steps, progress, assignments)
    out = []
    for i, (crystal, assignment, analogue) in enumerate(zip(crystals, assignments, chosen)):
        if isinstance(crystal, Crystal):
            crystal = reduced_cell(break_extra_symmetry(crystal, assignment, seed=i)[0])
            out.append(_from_analogue(f"analogue-{i:02d}", crystal, "analogue_diffusion", analogue, votes or {}))
    return out


def free_diffusion_candidates(generator, composition: Composition, n: int, formula_units: list[int], seed: int,
                              num_steps: int | None = None, progress: bool = False) -> list[Candidate]:
    """``n`` unconstrained samples of the CSP ``generator``, cycling through ``formula_units``
    (counted in formula units of the reduced formula, whatever multiple ``composition`` is
    written as); samples that are no crystal are left out."""
    from diffcrystal.sampling import plan_requests

    if n < 1:
        return []
    plans = plan_requests(generator, n, reduce(composition), formula_units, seed)
    crystals = _sample(generator, plans, seed, num_steps, progress, None)
    return [Candidate(f"free-{i:02d}", reduced_cell(c), "free_diffusion") for i, c in enumerate(crystals)
            if isinstance(c, Crystal)]


def reduced_cell(crystal: Crystal) -> Crystal:
    """``crystal`` in the package's canonical cell (primitive, Niggli-reduced:
    :func:`~diffcrystal.data.canonical.canonicalize`), as sampled when pymatgen cannot reduce
    it. A conventional cell sampled on a centred group costs 2-4 times more potential calls
    than its primitive cell."""
    from diffcrystal.data.canonical import canonicalize
    from diffcrystal.data.crystal import CrystalError

    try:
        return canonicalize(crystal)
    except CrystalError:
        return crystal


def _sample(generator, plans, seed: int, num_steps: int | None, progress: bool, assignments) -> list:
    from diffcrystal.sampling import generate_batches

    steps = generator.experiment.sampling.num_steps if num_steps is None else num_steps
    crystals: list = []
    for _start, batch in generate_batches(generator, plans, num_steps=steps, batch_size=max(len(plans), 1),
                                          seed=seed, progress=progress, assignments=assignments):
        crystals.extend(batch)
    return crystals


def formula_unit_atoms(composition: Composition) -> int:
    """Atoms in one formula unit of ``composition`` (its reduced formula), e.g. 13 for YBa2Cu3O7."""
    return sum(reduce(composition).values())


def check_num_atoms(composition: Composition, num_atoms: int | None) -> None:
    """:class:`InputError` unless ``num_atoms`` (None: not given) is a whole number of
    ``composition``'s formula units."""
    if num_atoms is None:
        return
    per_unit = formula_unit_atoms(composition)
    if not (isinstance(num_atoms, int) and num_atoms >= per_unit and num_atoms % per_unit == 0):
        raise InputError(f"--atoms {num_atoms}: a cell of {format_composition(composition)} holds a whole number of "
                         f"formula units of {per_unit} atoms ({per_unit}, {2 * per_unit}, {3 * per_unit}, ...)")


def template_formula_units(composition: Composition, analogues: list[Analogue], max_atoms: int) -> list[int]:
    """Formula units per cell of the ``analogues``' templates, most common first, within
    ``max_atoms`` atoms per cell; ``[1]`` when none."""
    per_unit = formula_unit_atoms(composition)
    counts: dict[int, int] = {}
    for analogue in analogues:
        z = analogue.template.num_atoms // per_unit
        if 1 <= z and z * per_unit <= max_atoms:
            counts[z] = counts.get(z, 0) + 1
    return sorted(counts, key=lambda z: (-counts[z], z)) or [1]


def deduplicate_candidates(candidates: list[Candidate], matcher=None) -> tuple[list[Candidate], dict[str, str]]:
    """Distinct candidates (the first of each group, in input order) and, for every merged one,
    the label of the candidate that stands for it. Same crystal: pymatgen ``StructureMatcher``
    (:func:`~diffcrystal.potential.rank.same_crystal_groups`; about 9x faster than comparing
    pairs one by one on 100 YBa2Cu3O7 samples, with the same groups)."""
    from diffcrystal.potential.rank import same_crystal_groups

    groups = same_crystal_groups([c.crystal.to_structure() for c in candidates], matcher)
    merged = {candidates[i].label: candidates[group[0]].label for group in groups for i in group[1:]}
    return [candidates[group[0]] for group in groups], merged


def counts_from_sources(text: str, counts: dict[str, int] | None = None) -> dict[Source, int]:
    """``counts`` per source (default :data:`SOURCE_COUNTS`) with the sources not named in
    ``text`` (comma-separated, ``"template,free_diffusion"``) set to 0; :class:`InputError`
    naming ``--sources`` on an unknown source or none."""
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SOURCES]
    if unknown:
        raise InputError(f"--sources: unknown source {unknown[0]!r}; valid: {', '.join(SOURCES)}")
    if not chosen:
        raise InputError(f"--sources: no source named; valid: {', '.join(SOURCES)}")
    counts = SOURCE_COUNTS if counts is None else counts
    return {s: (counts[s] if s in chosen else 0) for s in SOURCES}


DEFAULT_COUNTS: dict[Source, int] = counts_from_sources(",".join(DEFAULT_SOURCES))
"""Candidates per source that ``predict`` draws by default: :data:`SOURCE_COUNTS` for
:data:`DEFAULT_SOURCES`, 0 for the others."""


def check_counts(counts: dict[str, int]) -> dict[Source, int]:
    """``counts`` per source validated (:class:`InputError` naming a bad source or count)."""
    unknown = sorted(set(counts) - set(SOURCES))
    if unknown:
        raise InputError(f"unknown candidate source {unknown[0]!r}; valid: {', '.join(SOURCES)}")
    bad = {s: n for s, n in counts.items() if not (isinstance(n, (int, np.integer)) and n >= 0)}
    if bad:
        source, n = next(iter(bad.items()))
        raise InputError(f"the number of {source} candidates must be a whole number >= 0, got {n}")
    if not any(counts.values()):
        raise InputError("no candidates requested: give at least one source a count above 0")
    return {s: int(counts.get(s, 0)) for s in SOURCES}


def describe_missing_analogues(composition: Composition, library: AnalogueLibrary, max_distance: float | None) -> str:
    """Why ``composition`` has no template (for the run summary)."""
    found = library.analogues(composition)
    name = format_composition(composition)
    if not found:
        return f"no known crystal of {name}'s formula type: free diffusion only"
    return (f"no analogue of {name} within Mendeleev distance {max_distance:g} (nearest: {found[0].template.label} "
            f"at {found[0].distance:.3g}): free diffusion only")
