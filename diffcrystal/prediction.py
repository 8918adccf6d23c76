"""From a composition to a ranked list of relaxed structures (``diffcrystal predict``).

    composition -> candidates (templates, diffusion on the analogues' groups, free diffusion)
                -> merge duplicates -> relaxation funnel (one potential) -> merge duplicates
                -> rank by :class:`~diffcrystal.ranking.RankingScore`

1. **Candidates** (:mod:`diffcrystal.candidates`): the nearest analogues of distinct structure
   type within ``max_analogue_distance`` give the templates and, when asked for, the groups of
   the constrained samples; when there are none, free diffusion alone (said in
   :attr:`Prediction.notes`). By default templates alone
   (:data:`~diffcrystal.candidates.DEFAULT_COUNTS`), with :data:`FAR_FREE_SAMPLES` free samples
   beside them where the nearest lies :data:`FAR_DISTANCE` or farther (:func:`free_sample_count`).
2. **Before relaxing**, candidates that ``StructureMatcher`` calls the same crystal are relaxed
   once (:func:`~diffcrystal.candidates.deduplicate_candidates`).
3. **Relaxation**: the funnel of :mod:`diffcrystal.potential.funnel`, pruning by the ranking
   score, the survivors relaxed to ``fmax``; or, with ``funnel=None``, every candidate to the end.
4. **After relaxing**, the converged structures are grouped again (relaxation often takes
   different starts to the same minimum); each group is represented by its best-scoring member
   and lists the sources that reached it. Structures stopped at the step cap rank after every
   converged one; pruned, exploded and failed ones are listed but not ranked.
5. **Known structures**: each ranked structure is compared with the library's crystals of the
   same composition (``matches_known``: the label of the one it is), and, with ``hull`` (a
   dataset of known phases, relaxed with the same potential and cached), its energy above
   their hull (eV/atom).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from diffcrystal.analogues import DEFAULT_MAX_ANALOGUE_DISTANCE, AnalogueLibrary
from diffcrystal.candidates import (
    DEFAULT_COUNTS,
    Candidate,
    analogue_diffusion_candidates,
    check_counts,
    check_num_atoms,
    deduplicate_candidates,
    describe_missing_analogues,
    free_diffusion_candidates,
    nearest_analogues,
    template_candidates,
    formula_unit_atoms,
    template_formula_units,
)
from diffcrystal.data.composition import Composition, format_composition, parse_composition
from diffcrystal.errors import InputError
from diffcrystal.potential.calculators import DEFAULT_POTENTIAL
from diffcrystal.potential.funnel import FunnelSettings, relax_funnel
from diffcrystal.potential.calculators import Potential, resolve_potential
from diffcrystal.potential.results import RelaxResult, RelaxSettings
from diffcrystal.ranking import RankingScore, fits_atom_count

PREDICT_FMAX_EV_A = 0.05
"""Force threshold of ``predict``'s relaxations (eV/Å): enough to order minima that differ by
a few meV/atom, at about half the steps of 0.02."""

PREDICT_MAX_STEPS = 200
"""Step cap of ``predict``'s relaxations (optimizer steps in all, stages included)."""

FAR_FREE_SAMPLES = 20
"""Free samples ``predict`` draws by default beside far templates, or in their place where none
is within reach (``PredictSettings.far_free_samples``; :data:`FAR_DISTANCE`)."""

FAR_DISTANCE = 2.0
"""Nearest analogue distance (Mendeleev units) from which ``PredictSettings.far_free_samples``
are drawn. On 158 MP-20 validation targets (atom count given) the templates alone match 122 of
the 132 targets @5 whose nearest analogue lies within 2, 9 of the 20 beyond it and 1 of the 6
with none within reach; 20 free samples there raise ranked @5 from 132 to 135 targets matched and
from 121 to 124 precise, at twice the mean CPU; on 151 test targets (20 far) from 119 to 122
matched, 110 precise both ways (docs/benchmarks.md, "Free samples where the templates are far")."""

PREDICT_OPTIMIZER = "BFGS"
"""Optimizer of ``predict``'s relaxations. On the same 64 MP-20 test targets (every 30th, atom
count given) BFGS took 7 % fewer potential steps than FIRE and matched the target at @1 in 2 more
and at @5 in 1 more, in none fewer (docs/benchmarks.md, "FIRE or BFGS")."""


@dataclass(frozen=True)
class PredictSettings:
    """How ``predict`` works: candidates per source (``counts``, :data:`~diffcrystal.candidates.SOURCES`;
    default :data:`~diffcrystal.candidates.DEFAULT_COUNTS`, templates alone),
    the farthest analogue used (``max_analogue_distance``, Mendeleev units; None: any), at least
    ``far_free_samples`` free samples (default :data:`FAR_FREE_SAMPLES`) where the nearest analogue
    is ``far_distance`` Mendeleev units or more away or none is within reach
    (:func:`free_sample_count`), the
    relaxation (``relax``; ``funnel``: None relaxes everything to the end), the ranking
    ``score``, whether templates start at their predicted volume (``rescale_templates``), the sampler's ``seed`` and ``sampler_steps`` (None: the checkpoint's)."""

    counts: dict = field(default_factory=lambda: dict(DEFAULT_COUNTS))
    max_analogue_distance: float | None = DEFAULT_MAX_ANALOGUE_DISTANCE
    far_free_samples: int = FAR_FREE_SAMPLES
    far_distance: float = FAR_DISTANCE
    relax: RelaxSettings = RelaxSettings(fmax=PREDICT_FMAX_EV_A, max_steps=PREDICT_MAX_STEPS,
                                         optimizer=PREDICT_OPTIMIZER)
    funnel: FunnelSettings | None = FunnelSettings()
    score: RankingScore = RankingScore()
    rescale_templates: bool = True
    seed: int = 0
    sampler_steps: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", check_counts(dict(self.counts)))
        if self.max_analogue_distance is not None and not self.max_analogue_distance >= 0:
            raise InputError(f"--max-analogue-distance must be >= 0, got {self.max_analogue_distance}")
        if not (isinstance(self.far_free_samples, int) and self.far_free_samples >= 0):
            raise InputError(f"--far-samples must be a whole number >= 0, got {self.far_free_samples}")
        if not (math.isfinite(self.far_distance) and self.far_distance >= 0):
            raise InputError(f"--far-distance must be a finite number >= 0 Mendeleev units, got {self.far_distance}")


@dataclass
class CandidateOutcome:
    """A candidate and what became of it: its relaxation ``result`` (None when it was merged
    before relaxing into ``duplicate_of``), its ranking ``score`` (eV/atom; nan unranked), the
    score's ``offset`` added to the energy (eV/atom) and, relaxed through the funnel, where it
    stood after each stage (``stages``)."""

    candidate: Candidate
    result: RelaxResult | None = None
    duplicate_of: str = ""
    score: float = math.nan
    offset: float = math.nan
    stages: list[StageRecord] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "duplicate" if self.result is None else self.result.status


@dataclass
class RankedStructure:
    """One distinct relaxed crystal of the answer: its ``rank`` (1 = best), the ``best`` outcome
    that represents it, the labels of every candidate that ended there (``members``, the best
    first), its energy above the hull of known phases (eV/atom; nan without ``hull``) and the
    known crystal it ``matches_known`` (``''``: none of the library's)."""

    rank: int
    best: CandidateOutcome
    members: list[str]
    sources: list[str]
    e_above_hull: float = math.nan
    matches_known: str = ""

    @property
    def structure(self):
        """The relaxed pymatgen ``Structure``."""
        return self.best.result.crystal.to_structure()

    @property
    def energy_per_atom(self) -> float:
        return self.best.result.energy_per_atom

    @property
    def score(self) -> float:
        return self.best.score

    @property
    def converged(self) -> bool:
        return self.best.result.status == "converged"

    @property
    def space_group(self) -> str:
        return self.best.result.space_group

    def __repr__(self) -> str:
        return (f"RankedStructure(rank={self.rank}, source={self.best.candidate.source!r}, "
                f"energy_per_atom={self.energy_per_atom:.4f}, space_group={self.space_group!r})")


@dataclass
class Prediction:
    """The answer for one composition: ``ranked`` structures (best first), every candidate's
    ``outcomes``, the analogues used, ``notes`` for the user, the potential, wall ``seconds``
    per phase and the funnel's potential steps (``relax_steps``, against ``relax_steps_cap`` for
    relaxing every distinct candidate to the cap)."""

    composition: str
    ranked: list[RankedStructure]
    outcomes: list[CandidateOutcome]
    analogues: list
    notes: list[str]
    potential: str
    seconds: dict[str, float]
    relax_steps: int
    relax_steps_cap: int

    def __getitem__(self, index: int) -> RankedStructure:
        return self.ranked[index]

    def __len__(self) -> int:
        return len(self.ranked)


def load_library(spec: str | Path | AnalogueLibrary | None, checkpoint: Path) -> AnalogueLibrary:
    """The template library: an :class:`AnalogueLibrary`, a table file, or None for the one
    shipped with ``checkpoint`` (hash-checked); it must carry geometry."""
    from diffcrystal.checkpoint import bundled_analogue_table

    if isinstance(spec, AnalogueLibrary):
        library = spec
    else:
        path = Path(spec) if spec is not None else bundled_analogue_table(checkpoint)
        if path is None:
            raise InputError(f"{checkpoint.name} ships no template table: pass --templates TABLE "
                             "(build one with scripts/build_analogue_table.py)")
        if not path.is_file():
            raise InputError(f"--templates: no such table file {path}")
        library = AnalogueLibrary.from_table(path)
    if not library.has_geometry:
        raise InputError("the template table holds no geometry (an assignment-only table): rebuild it with "
                         "scripts/build_analogue_table.py")
    return library


def _lost_samples(source: str, wanted: int, got: int) -> list[str]:
    """A note when some of a source's samples were no crystal (e.g. a collapsed lattice)."""
    return [f"{wanted - got} of {wanted} {source} samples were no crystal and were left out"] if got < wanted else []


def free_sample_count(settings: PredictSettings, analogues: list) -> int:
    """Free diffusion samples :func:`gather_candidates` draws beside ``analogues`` (the nearest
    ones within reach): ``counts['free_diffusion']``; with no analogue, plus the templates' and
    analogue samples' budget; and, when templates are drawn, at least ``far_free_samples`` where
    there is none or the nearest lies ``far_distance`` or more away."""
    counts = settings.counts
    free = counts["free_diffusion"]
    wanted = max(counts["template"], counts["analogue_diffusion"])
    if not analogues and wanted:
        free += counts["template"] + counts["analogue_diffusion"]  # the templates' budget goes to free samples
    if wanted and (not analogues or min(a.distance for a in analogues) >= settings.far_distance):
        free = max(free, settings.far_free_samples)
    return free


def needs_generator(composition: Composition, library: AnalogueLibrary, settings: PredictSettings,
                    num_atoms: int | None = None) -> bool:
    """Whether :func:`gather_candidates` samples the generator for ``composition``: a diffusion
    source has a count above 0, or :func:`free_sample_count` asks for free samples (no template
    within reach, or only far ones with ``far_free_samples``)."""
    counts = settings.counts
    if counts["analogue_diffusion"] or counts["free_diffusion"]:
        return True
    analogues = nearest_analogues(composition, library, counts["template"], settings.max_analogue_distance, num_atoms)
    return free_sample_count(settings, analogues) > 0


def gather_candidates(composition: Composition, generator, library: AnalogueLibrary, settings: PredictSettings,
                      progress: bool = False, num_atoms: int | None = None) -> tuple[list[Candidate], list, list[str]]:
    """``(candidates, analogues used, notes)`` for ``composition`` (module docstring, step 1);
    ``num_atoms``: the cell's atom count when the user knows it (None: any)."""
    counts = settings.counts
    wanted = max(counts["template"], counts["analogue_diffusion"])
    analogues = nearest_analogues(composition, library, wanted, settings.max_analogue_distance, num_atoms)
    votes = library.type_votes(composition, num_atoms) if analogues else {}
    notes = []
    if not analogues and wanted:
        notes.append(describe_missing_analogues(composition, library, settings.max_analogue_distance))
    candidates = template_candidates(analogues[:counts["template"]], votes, settings.rescale_templates)
    free = free_sample_count(settings, analogues)
    if analogues and free > counts["free_diffusion"]:
        notes.append(f"the nearest analogue lies {min(a.distance for a in analogues):.2f} Mendeleev units away "
                     f"(--far-distance {settings.far_distance:g}): {free} free samples beside the templates")
    if generator is not None and analogues and counts["analogue_diffusion"]:
        sampled = analogue_diffusion_candidates(generator, analogues, counts["analogue_diffusion"],
                                                settings.seed, settings.sampler_steps, progress, votes)
        if not any(a.assignment().num_atoms <= generator.statistics.max_atoms for a in analogues):
            notes.append(f"no analogue's conventional cell has at most {generator.statistics.max_atoms} atoms "
                         "(the generator's largest training cell): no analogue_diffusion samples")
        else:
            notes += _lost_samples("analogue_diffusion", counts["analogue_diffusion"], len(sampled))
        candidates += sampled
    if generator is not None and free:
        units = ([num_atoms // formula_unit_atoms(composition)] if num_atoms is not None
                 else template_formula_units(composition, analogues, generator.statistics.max_atoms))
        sampled = free_diffusion_candidates(generator, composition, free, units, settings.seed,
                                            settings.sampler_steps, progress)
        notes += _lost_samples("free_diffusion", free, len(sampled))
        candidates += sampled
    if not candidates:
        raise InputError(f"no candidate structure for {format_composition(composition)}: "
                         + (notes[0] if notes else "every source is empty"))
    return candidates, analogues, notes


def _group_relaxed(outcomes: list[CandidateOutcome], matcher) -> list[list[CandidateOutcome]]:
    """Relaxed outcomes that are the same crystal, grouped as ``rank`` groups them
    (:func:`~diffcrystal.potential.rank.deduplicate`): converged groups first, then those at
    the step cap, each part and each group in score order."""
    from diffcrystal.potential.rank import deduplicate

    scored = {o.candidate.label: o for o in outcomes if o.result is not None and math.isfinite(o.score)}
    results = [o.result for o in scored.values()]
    groups = []
    for unconverged in (False, True):
        part = [sorted((scored[label] for label in entry.members), key=lambda o: (o.score, o.candidate.label))
                for entry in deduplicate(results, matcher, unconverged=unconverged)]
        groups += sorted(part, key=lambda group: (group[0].score, group[0].candidate.label))
    return groups


def _known_match(structure, composition: Composition, library: AnalogueLibrary, matcher) -> str:
    """Label of a library crystal of ``composition`` that ``structure`` is, or ``''``."""
    for analogue in library.analogues(composition):
        if analogue.distance > 0:
            break
        if any(a != b for a, b in analogue.species_map.items()):
            continue
        if matcher.fit(analogue.template.crystal.to_structure(), structure):
            return analogue.template.label
    return ""


def rank_outcomes(outcomes: list[CandidateOutcome], composition: Composition, library: AnalogueLibrary,
                  matcher=None) -> list[RankedStructure]:
    """Steps 4-5 of the module docstring (without the hull)."""
    from diffcrystal.potential.rank import default_matcher

    matcher = matcher or default_matcher()
    ranked = []
    for rank, group in enumerate(_group_relaxed(outcomes, matcher), start=1):
        sources = list(dict.fromkeys(o.candidate.source for o in group))
        entry = RankedStructure(rank, group[0], [o.candidate.label for o in group], sources)
        entry.matches_known = _known_match(entry.structure, composition, library, matcher)
        ranked.append(entry)
    return ranked


def _hull_energies(ranked: list[RankedStructure], hull: str | Path, potential: Potential, settings: RelaxSettings,
                   workers: int, progress: bool, device: str) -> None:
    """Energy above the hull of ``hull``'s known phases, relaxed with the same potential."""
    from diffcrystal.potential.hull import chemical_systems, dataset_references
    from diffcrystal.potential.rank import RankedEntry, hull_energies
    from diffcrystal.potential.relax_cache import relax_cached

    if not ranked:
        return
    atoms = [r.best.result.atoms for r in ranked]
    references, _ = dataset_references(hull, chemical_systems(atoms), progress)
    relaxed, _ = relax_cached(references, potential, settings, workers=workers, progress=progress, device=device)
    entries = [RankedEntry(r.best.result) for r in ranked]
    hull_energies(entries, relaxed)
    for entry, structure in zip(entries, ranked):
        structure.e_above_hull = entry.e_above_hull


def predict(composition: str, *, checkpoint: str | Path | None = None, templates=None,
            potential: str | Potential = DEFAULT_POTENTIAL, settings: PredictSettings = PredictSettings(),
            hull: str | Path | None = None, workers: int = 1, device: str = "cpu", progress: bool = False,
            cache_dir: str | Path | None = None, generator=None, num_atoms: int | None = None) -> Prediction:
    """Ranked relaxed structures of ``composition`` (module docstring).

    Parameters
    ----------
    composition : a formula such as ``'YBa2Cu3O7'``.
    checkpoint : CSP generator (a file or bundled name; None: the default ``mp20_csp``), unused
        unless :func:`needs_generator` (a diffusion source is asked for, or no template is within
        reach and the templates' budget goes to free samples); ``generator``: an already loaded
        :class:`~diffcrystal.generator.Generator` instead.
    templates : the template library (:func:`load_library`; None: the checkpoint's).
    potential : relaxes and scores every candidate (name, fitted-model path or a resolved
        :class:`~diffcrystal.potential.calculators.Potential`, which many predictions share so
        that it loads once); elements it lacks are refused before any work.
    settings : :class:`PredictSettings`.
    hull : a dataset of known phases for the energy above the hull (e.g. MP-20's train.csv).
    workers, device : where the potential runs (processes; ``cpu`` / ``cuda``).
    cache_dir : relaxation cache (None: the default cache folder); a repeated or resumed
        prediction reads finished relaxations from it.
    num_atoms : atoms in the unit cell when known (e.g. from the measured cell and density; the
        CSP benchmarks give it): templates of that size come first, free samples have it, and
        candidates no such cell can hold are charged the score's ``atom_count_weight``.
    """
    from ase import Atoms

    from diffcrystal.checkpoint import resolve_checkpoint
    from diffcrystal.data.composition import to_atomic_numbers

    started = time.perf_counter()
    parsed = parse_composition(composition)
    check_num_atoms(parsed, num_atoms)
    potential = resolve_potential(potential, device)
    potential.check_elements([(format_composition(parsed), Atoms(numbers=to_atomic_numbers(parsed)))])
    label = potential.label
    path = resolve_checkpoint(checkpoint, "csp")
    library = load_library(templates, path)
    if generator is None and needs_generator(parsed, library, settings, num_atoms):
        from diffcrystal.generator import Generator

        generator = Generator.from_checkpoint(path, device="cpu")
        if generator.mode != "csp":
            raise InputError(f"{path.name} generates de novo; predict needs a CSP checkpoint")
    seconds = {}
    candidates, analogues, notes = gather_candidates(parsed, generator, library, settings, progress, num_atoms)
    seconds["candidates"] = time.perf_counter() - started
    distinct, merged = deduplicate_candidates(candidates)
    outcomes = {c.label: CandidateOutcome(c) for c in candidates}
    for duplicate, kept in merged.items():
        outcomes[duplicate].duplicate_of = kept
    seconds["deduplicate"] = time.perf_counter() - started - seconds["candidates"]
    items = [(c.label, c.crystal.to_atoms()) for c in distinct]
    score = settings.score
    offsets = [score.offset(c.analogue_distance, c.template_e_above_hull,
                            fits_atom_count(c.crystal.num_atoms, num_atoms), c.type_vote) for c in distinct]
    relax_start = time.perf_counter()
    if settings.funnel is not None:
        report = relax_funnel(items, potential, settings.relax, settings.funnel, offsets, workers=workers,
                              progress=progress, device=device, cache_dir=cache_dir)
        results, steps, cap = report.results, report.steps_total, report.steps_cap
        for candidate, recorded in zip(distinct, report.stages):
            outcomes[candidate.label].stages = recorded
    else:
        from diffcrystal.potential.relax_cache import relax_cached

        results, _ = relax_cached(items, potential, settings.relax, workers=workers, progress=progress,
                                  device=device, cache_dir=cache_dir)
        steps, cap = sum(r.steps for r in results), settings.relax.max_steps * len(items)
    seconds["relax"] = time.perf_counter() - relax_start
    for candidate, result, offset in zip(distinct, results, offsets):
        outcome = outcomes[candidate.label]
        outcome.result = result
        outcome.offset = offset
        if result.status in ("converged", "not_converged") and math.isfinite(result.energy_per_atom):
            outcome.score = result.energy_per_atom + offset
    ordered = list(outcomes.values())
    ranked = rank_outcomes(ordered, parsed, library)
    if hull is not None:
        _hull_energies(ranked, hull, potential, settings.relax, workers, progress, device)
    if not ranked:
        notes.append("no candidate relaxed to a minimum or to the step cap: nothing to rank "
                     "(candidates.csv gives each one's status and reason)")
    seconds["total"] = time.perf_counter() - started
    from diffcrystal.sampling import composition_label

    return Prediction(composition_label(composition), ranked, ordered, analogues, notes, label, seconds, steps, cap)
