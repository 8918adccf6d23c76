"""Relax, deduplicate and rank candidates by energy per atom (one potential per ranking).

- **Merge duplicates before relaxing**: inputs that ``StructureMatcher`` calls the same
  crystal are relaxed once (:func:`deduplicate_inputs`; the others get status ``duplicate``).
- **Deduplicate**: relaxed structures are grouped with pymatgen's ``StructureMatcher`` (its
  defaults, :data:`MATCHER_LTOL` etc.; grouping is by composition first, any supercell /
  rotation / origin shift / permutation of the same crystal matches); each group keeps its
  lowest-energy member and records the group size and members.
- **Rank**: by energy per atom (eV/atom), lowest first. Only converged relaxations (forces
  below ``fmax``: minima of the potential) enter the ranking
  (:attr:`~diffcrystal.potential.results.RelaxResult.rankable`). Relaxations stopped at the step
  cap are deduplicated and ranked *separately* (``ranked_unconverged.csv``, with their remaining
  force): their energies are upper bounds, not minima. Exploded or failed ones enter neither.
- **Energy above hull** (optional): known phases (a folder of CIFs, or the entries of a dataset
  in the candidates' chemical systems: :mod:`~diffcrystal.potential.hull`) are relaxed with the
  *same* potential; their energies build a pymatgen ``PhaseDiagram`` per chemical system, and
  each candidate's distance to that hull (eV/atom, negative when below it) is reported, with the
  known phase it matches (``matches_known``) or ``novel``.

Energies from different potentials are never compared: every result carries its potential
label and :func:`rank_results` refuses a mix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.errors import InputError
from diffcrystal.output_folder import check_no_earlier_output
from diffcrystal.potential.calculators import DEFAULT_POTENTIAL, Potential, resolve_potential
from diffcrystal.potential.hull import KnownPhases, chemical_systems, dataset_references
from diffcrystal.potential.io import (
    SUMMARY_NAME,
    check_not_input,
    check_output_folder,
    cif_text,
    MissingStructure,
    input_paths,
    read_candidates,
    write_csv_atomic,
)
from diffcrystal.potential.relax import DEFAULT_WORKERS, relax_many
from diffcrystal.potential.relax_cache import relax_cached
from diffcrystal.potential.results import RelaxResult, RelaxSettings

MATCHER_LTOL = 0.2
"""StructureMatcher fractional length tolerance (pymatgen default)."""
MATCHER_STOL = 0.3
"""StructureMatcher site tolerance, in units of (V/N)^(1/3) (pymatgen default)."""
MATCHER_ANGLE_TOL_DEG = 5.0
"""StructureMatcher angle tolerance in degrees (pymatgen default)."""

RANKED_NAME = "ranked.csv"
UNCONVERGED_NAME = "ranked_unconverged.csv"
PLOT_NAME = "ranking.png"
RELAXED_FOLDER = "relaxed"
REFERENCE_FOLDER = "reference"
TRAJECTORY_FOLDER = "trajectories"
"""Sub-folder of an output folder holding ``<id>.traj`` per relaxation (``--trajectory``)."""

RELAX_OUTPUTS = (SUMMARY_NAME,)
"""Files whose presence marks an output folder of ``relax`` (refused as ``--out``)."""
RANK_OUTPUTS = (RANKED_NAME, UNCONVERGED_NAME, PLOT_NAME, f"{RELAXED_FOLDER}/{SUMMARY_NAME}")
"""Files whose presence marks an output folder of ``rank`` (refused as ``--out``)."""

RELAXATION_COLUMNS = [
    "potential", "status", "converged", "steps", "energy_per_atom_eV", "max_force_eV_A",
    "stress_xx_eV_A3", "stress_yy_eV_A3", "stress_zz_eV_A3", "stress_yz_eV_A3", "stress_xz_eV_A3",
    "stress_xy_eV_A3", "reason", "prerelax_status", "prerelax_steps",
]
"""What a relaxation adds to a summary: the outcome (``max_force_eV_A`` is the generalised force
tested against ``fmax``; stress in Voigt order, eV/Å³)."""

STRUCTURE_COLUMNS = [
    "formula", "n_atoms", "spacegroup_symbol", "spacegroup_number", "spacegroup_symbol_tight",
    "spacegroup_number_tight", "crystal_system", "a_A", "b_A", "c_A", "alpha_deg", "beta_deg",
    "gamma_deg", "volume_per_atom_A3", "density_g_cm3", "min_distance_A", "cif",
]
"""The relaxed structure, named as in ``diffcrystal sample``'s summary
(:data:`~diffcrystal.sample_writer.SUMMARY_COLUMNS`; space groups at 0.1 and 0.01 Å), plus its
lattice (Å, degrees); ``cif`` is the relaxed ``<id>.cif``."""

SUMMARY_COLUMNS = ["id", *STRUCTURE_COLUMNS, *RELAXATION_COLUMNS]
"""Columns of a relaxed summary; the input summary's other columns follow ``id``."""

INPUT_VERDICT_COLUMNS = ("structure_valid", "density_plausible", "charge_neutral", "valid",
                         "invalid_reason", "symmetrized_cif", "cif_problem")
"""Input summary columns judging the *unrelaxed* sample; a relaxed summary keeps them (and the
input's ``cif``) as ``input_<name>``."""

RANKED_COLUMNS = [
    "rank", "id", "formula", "n_atoms", "energy_per_atom_eV", "e_above_hull_eV_atom",
    "matches_known", "novel", "group_size", "group_members", "spacegroup_symbol", "spacegroup_number",
    "converged", "steps", "max_force_eV_A", "potential",
]


def default_matcher():
    """The ``StructureMatcher`` used for deduplication (see the module docstring)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(ltol=MATCHER_LTOL, stol=MATCHER_STOL, angle_tol=MATCHER_ANGLE_TOL_DEG)


@dataclass
class RankedEntry:
    """One distinct crystal: its lowest-energy ``best`` result and the ``members`` it stands for;
    against known phases, its ``e_above_hull`` (eV/atom) and the label of the known phase it
    ``matches_known`` (``''``: novel; ``None``: not compared)."""

    best: RelaxResult
    members: list[str] = field(default_factory=list)
    e_above_hull: float = float("nan")
    matches_known: str | None = None

    @property
    def group_size(self) -> int:
        return len(self.members)


def _single_potential(results: Sequence[RelaxResult]) -> str:
    labels = {r.potential for r in results}
    if len(labels) > 1:
        raise InputError(
            f"refusing to compare energies from different potentials: {', '.join(sorted(labels))}"
        )
    return labels.pop() if labels else ""


def same_crystal_groups(structures: Sequence, matcher=None) -> list[list[int]]:
    """Indices of the pymatgen ``structures`` grouped by ``matcher`` (default
    :func:`default_matcher`) through its ``group_structures``, which reduces each structure once
    and compares each with the first member of every group so far; each group ascending, the
    groups in order of their first index."""
    matcher = matcher or default_matcher()
    tagged = []
    for index, structure in enumerate(structures):
        structure = structure.copy()
        structure.properties["_index"] = index
        tagged.append(structure)
    groups = [sorted(s.properties["_index"] for s in group) for group in matcher.group_structures(tagged)]
    return sorted(groups)


def deduplicate_inputs(items: Sequence, matcher=None) -> tuple[list, dict[str, str]]:
    """``(distinct items, {label of a duplicate: label of the item relaxed for it})`` of
    ``(label, Atoms | MissingStructure)`` input pairs, before relaxing: the same crystal
    (:func:`same_crystal_groups`) is relaxed once, the first in input order; unreadable items
    are all kept (their relaxation reports why)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    readable = [i for i, (_, atoms) in enumerate(items) if not isinstance(atoms, MissingStructure)]
    structures = [AseAtomsAdaptor.get_structure(items[i][1]) for i in readable]
    duplicates: dict[str, str] = {}
    for group in same_crystal_groups(structures, matcher):
        for member in group[1:]:
            duplicates[items[readable[member]][0]] = items[readable[group[0]]][0]
    return [item for item in items if item[0] not in duplicates], duplicates


def deduplicate(results: Sequence[RelaxResult], matcher=None, unconverged: bool = False) -> list[RankedEntry]:
    """Group results that are the same crystal; one :class:`RankedEntry` per group, holding its
    lowest-energy member, in no particular order. Uses the converged (rankable) results, or with
    ``unconverged`` those stopped at the step cap."""
    rankable = [r for r in results if (r.unconverged if unconverged else r.rankable)]
    if not rankable:
        return []
    entries = []
    for group in same_crystal_groups([r.structure for r in rankable], matcher):
        members = sorted((rankable[i] for i in group), key=lambda r: r.energy_per_atom)
        entries.append(RankedEntry(best=members[0], members=[m.label for m in members]))
    return entries


def hull_energies(entries: Sequence[RankedEntry], references: Sequence[RelaxResult], matcher=None) -> None:
    """Set ``e_above_hull`` (eV/atom) and ``matches_known`` of each entry against the known
    phases ``references`` (:class:`~diffcrystal.potential.hull.KnownPhases`).

    Raises :class:`InputError` when the references lack a converged elemental phase of a
    candidate's element, or were computed with another potential.
    """
    known = KnownPhases(references, matcher or default_matcher())
    for entry in entries:
        entry.e_above_hull = known.e_above_hull(entry.best)
        entry.matches_known = known.matching_phase(entry.best)


def rank_results(results: Sequence[RelaxResult], references: Sequence[RelaxResult] | None = None,
                 matcher=None, unconverged: bool = False) -> list[RankedEntry]:
    """Deduplicate and sort by energy per atom (lowest first) the converged results, or with
    ``unconverged`` those stopped at the step cap; see the module docstring."""
    _single_potential(results)
    entries = deduplicate(results, matcher, unconverged)
    entries.sort(key=lambda e: (e.best.energy_per_atom, e.best.label))
    if references is not None:
        hull_energies(entries, references, matcher)
    return entries


# ---------------------------------------------------------------------- tables and plot
def structure_values(result: RelaxResult) -> dict:
    """:data:`STRUCTURE_COLUMNS` of ``result``'s relaxed structure (empty when there is none)."""
    from diffcrystal.symmetry import SYMPREC_TIGHT, crystal_system, min_distance, space_group

    crystal = result.crystal
    if crystal is None:
        return {"formula": result.formula, "n_atoms": result.num_atoms or ""}
    structure = crystal.to_structure()
    tight = space_group(crystal, SYMPREC_TIGHT)
    lattice = structure.lattice
    return {
        "formula": result.formula, "n_atoms": result.num_atoms,
        "spacegroup_symbol": result.space_group, "spacegroup_number": result.space_group_number,
        "spacegroup_symbol_tight": tight.symbol, "spacegroup_number_tight": tight.number,
        "crystal_system": crystal_system(result.space_group_number),
        "a_A": _num(lattice.a), "b_A": _num(lattice.b), "c_A": _num(lattice.c),
        "alpha_deg": _num(lattice.alpha), "beta_deg": _num(lattice.beta), "gamma_deg": _num(lattice.gamma),
        "volume_per_atom_A3": _num(crystal.volume / crystal.num_atoms),
        "density_g_cm3": _num(float(structure.density)), "min_distance_A": _num(min_distance(crystal)),
        "cif": f"{result.label}.cif",
    }


def summary_rows(results: Sequence[RelaxResult], extra: dict[str, dict] | None = None) -> list[dict]:
    """One summary row per result (:data:`SUMMARY_COLUMNS`, after any ``extra[label]`` columns
    of the input summary)."""
    rows = []
    for r in results:
        row = dict((extra or {}).get(r.label, {}))
        row.update({"id": r.label, **structure_values(r)})
        row.update({
            "potential": r.potential, "status": r.status, "converged": r.converged,
            "steps": r.steps, "energy_per_atom_eV": _num(r.energy_per_atom),
            "max_force_eV_A": _num(r.max_force), "reason": r.reason,
            "prerelax_status": r.prerelax_status,
            "prerelax_steps": r.prerelax_steps if r.prerelax_status else "",
        })
        for name, value in zip(RELAXATION_COLUMNS[6:12], r.stress):
            row[name] = _num(value)
        rows.append(row)
    return rows


def _num(value: float) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"


def ranked_rows(entries: Sequence[RankedEntry]) -> list[dict]:
    rows = []
    for rank, entry in enumerate(entries, start=1):
        best = entry.best
        rows.append({
            "rank": rank, "id": best.label, "formula": best.formula, "n_atoms": best.num_atoms,
            "energy_per_atom_eV": _num(best.energy_per_atom),
            "e_above_hull_eV_atom": _num(entry.e_above_hull),
            "matches_known": entry.matches_known or "",
            "novel": "" if entry.matches_known is None else not entry.matches_known,
            "group_size": entry.group_size, "group_members": " ".join(entry.members),
            "spacegroup_symbol": best.space_group, "spacegroup_number": best.space_group_number,
            "converged": best.converged, "steps": best.steps,
            "max_force_eV_A": _num(best.max_force), "potential": best.potential,
        })
    return rows


def plot_ranking(entries: Sequence[RankedEntry], path: Path, potential: str,
                 unconverged: Sequence[RankedEntry] = ()) -> None:
    """Energy per atom against rank, coloured by space group (matplotlib Agg), atomically; the
    ``unconverged`` ranking, when given, in a second panel with its own ranks. Entries compared
    with known phases show their energy above the hull instead (the hull a dashed line at 0),
    with a ring round those that match a known phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("converged", entries)] + ([("not converged", unconverged)] if unconverged else [])
    figure, axes_row = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.0), sharey=True,
                                    squeeze=False)
    colours = plt.get_cmap("tab20")
    against_hull = any(e.matches_known is not None for e in list(entries) + list(unconverged))

    def value(entry: RankedEntry) -> float:  # eV/atom
        return entry.e_above_hull if against_hull else entry.best.energy_per_atom

    for axes, (title, panel) in zip(axes_row[0], panels):
        groups: dict[str, list[tuple[int, float]]] = {}
        for rank, entry in enumerate(panel, start=1):
            name = f"{entry.best.space_group or 'none'} ({entry.best.space_group_number})"
            groups.setdefault(name, []).append((rank, value(entry)))
        for i, (name, points) in enumerate(sorted(groups.items(), key=lambda kv: kv[1][0][0])):
            ranks, energies = zip(*points)
            axes.scatter(ranks, energies, s=18, color=colours(i % 20), label=name)
        known = [(rank, value(e)) for rank, e in enumerate(panel, start=1) if e.matches_known]
        if known:
            axes.scatter(*zip(*known), s=70, facecolors="none", edgecolors="black",
                         label="matches a known phase")
        if against_hull:
            axes.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
        axes.set_xlabel("rank")
        heading = f"{len(panel)} distinct {title} candidates, potential {potential.split('/')[-1]}"
        if panel is unconverged:
            worst = max(e.best.max_force for e in panel)
            heading += f"\nforces up to {worst:.3g} eV/Å: energies are not minima"
        axes.set_title(heading, fontsize=9)
        if groups:
            axes.legend(title="space group", fontsize=7, title_fontsize=8, loc="best",
                        ncol=1 + len(groups) // 12)
    axes_row[0][0].set_ylabel("energy above hull of known phases (eV/atom)" if against_hull
                              else "energy per atom (eV/atom)")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=120)
    plt.close(figure)
    temporary.replace(path)


# ---------------------------------------------------------------------- whole workflows
def write_relaxed(results: Sequence[RelaxResult], out_dir: Path, protected: set[Path] = frozenset(),
                  extra: dict[str, dict] | None = None) -> Path:
    """Write each relaxed structure as ``<id>.cif`` and a ``summary.csv`` into ``out_dir``
    (which then is itself a sample folder): :data:`SUMMARY_COLUMNS`, then the input summary's
    other columns (``extra``, by id); never onto a path in ``protected``."""
    out_dir = Path(out_dir)
    targets = [out_dir / f"{r.label}.cif" for r in results if r.atoms is not None]
    for target in targets + [out_dir / SUMMARY_NAME]:
        check_not_input(target, protected)
    for result in results:
        if result.atoms is not None:
            atomic_write_text(out_dir / f"{result.label}.cif", cif_text(result.atoms))
    rows = summary_rows(results, extra)
    columns = list(SUMMARY_COLUMNS)  # then the input summary's own columns, in their order
    for row in (extra or {}).values():
        columns.extend(c for c in row if c not in columns)
    write_csv_atomic(out_dir / SUMMARY_NAME, rows, columns)
    return out_dir / SUMMARY_NAME


def _input_summaries(paths: Sequence[str | Path], out_dir: Path) -> dict[str, dict]:
    """Rows of the inputs' ``summary.csv`` files by id, to extend rather than replace them.

    CIF paths in them (relative to their folder) are rewritten relative to ``out_dir`` so they
    still lead to the input files; the input's ``cif`` (the unrelaxed structure) and its
    verdicts on the unrelaxed sample (:data:`INPUT_VERDICT_COLUMNS`) become ``input_<name>``;
    its columns describing the unrelaxed structure under names the relaxed summary uses
    (formula, atoms, space groups, volume, density, distance) are left out: the relaxed
    summary gives them for the relaxed structure.
    """
    import csv
    import os

    rows: dict[str, dict] = {}
    for raw in paths:
        summary = Path(raw) / SUMMARY_NAME
        if not summary.is_file():
            continue
        with open(summary, newline="") as handle:
            for row in csv.DictReader(handle):
                for column, value in row.items():
                    if value and value.endswith(".cif") and (Path(raw) / value).is_file():
                        row[column] = os.path.relpath(Path(raw) / value, out_dir)
                renamed = {("input_" + c if c == "cif" or c in INPUT_VERDICT_COLUMNS else c): v
                           for c, v in row.items()}
                rows.setdefault(str(row.get("id")),
                                {c: v for c, v in renamed.items() if c not in SUMMARY_COLUMNS})
    return rows


def relax_paths(paths: Sequence[str | Path], out_dir: Path, potential: str | Potential = DEFAULT_POTENTIAL,
                settings: RelaxSettings = RelaxSettings(), workers: int = DEFAULT_WORKERS,
                progress: bool = True, device: str = "cpu", trajectories: bool = False) -> list[RelaxResult]:
    """``diffcrystal relax``: read ``paths``, relax, write CIFs and the extended summary (and
    with ``trajectories`` ``out_dir/trajectories/<id>.traj``).

    Inputs, potential (and the elements it covers) and the output folder (writable, holding no
    earlier relaxation) are checked before any relaxation (:class:`InputError`). Sample rows
    without a structure, and CIFs that cannot be read, are kept as ``failed`` results with the
    reason.
    """
    out_dir = Path(out_dir)
    protected = input_paths(paths)
    if out_dir.resolve() in {Path(p).resolve() for p in paths}:
        raise InputError(f"--out {out_dir} is an input; choose another folder")
    potential = resolve_potential(potential, device)
    candidates = read_candidates(paths, include_missing=True)
    potential.check_elements(candidates)
    check_output_folder(out_dir)
    check_no_earlier_output(out_dir, RELAX_OUTPUTS, "a relaxation")
    results = relax_many(candidates, potential, settings, workers=workers, progress=progress,
                         trajectory_dir=out_dir / TRAJECTORY_FOLDER if trajectories else None)
    write_relaxed(results, out_dir, protected, _input_summaries(paths, out_dir))
    return results


@dataclass
class RankingReport:
    """What :func:`relax_and_rank` did: all results, the converged ranking (``entries``), the
    separate ranking of structures stopped at the step cap (``unconverged``), the relaxed
    known phases (``references``; ``references_cached`` of them read from the relaxation
    cache; ``references_left_out``: dataset entries above the ``e_above_hull`` cut) and the
    files."""

    results: list[RelaxResult]
    entries: list[RankedEntry]
    unconverged: list[RankedEntry]
    references: list[RelaxResult] | None
    ranked_csv: Path
    unconverged_csv: Path
    plot: Path
    potential: str
    references_cached: int = 0
    references_left_out: list[str] = field(default_factory=list)


def relax_and_rank(paths: Sequence[str | Path], out_dir: Path, potential: str | Potential = DEFAULT_POTENTIAL,
                   settings: RelaxSettings = RelaxSettings(), workers: int = DEFAULT_WORKERS,
                   reference: str | Path | None = None, progress: bool = True,
                   hull: str | Path | None = None,
                   hull_max_e_above_hull: float | None = None,
                   device: str = "cpu", trajectories: bool = False, funnel=None,
                   merge_duplicates: bool = True) -> RankingReport:
    """Relax ``paths`` (and known phases) with one potential, deduplicate, rank.

    With ``merge_duplicates``, inputs that are the same crystal are relaxed once
    (:func:`deduplicate_inputs`); the others are listed in the relaxed summary with status
    ``duplicate`` and a reason naming the one relaxed for them.

    Known phases: the CIFs of the folder ``reference`` and the entries of the dataset ``hull``
    in the candidates' chemical systems (:func:`~diffcrystal.potential.hull.dataset_references`,
    relaxations cached; entries whose own ``e_above_hull`` exceeds ``hull_max_e_above_hull``
    eV/atom left out and listed in the report). Writes ``out_dir/relaxed/`` (CIFs + summary), ``out_dir/ranked.csv``
    (converged only), ``out_dir/ranked_unconverged.csv`` (stopped at the step cap; header only
    when none) and ``out_dir/ranking.png`` (and ``out_dir/reference/`` with known phases).
    With ``trajectories``, each candidate's relaxation goes to ``out_dir/trajectories/<id>.traj``.
    With ``funnel`` (a :class:`~diffcrystal.potential.funnel.FunnelSettings`; not with
    ``trajectories``), candidates go through the relaxation funnel: those pruned on the way are
    listed in the relaxed summary with status ``pruned`` and enter no ranking.
    Inputs, potential (and the elements it covers), known phases and output folders (writable,
    holding no earlier ranking) are checked before any relaxation (:class:`InputError`).
    """
    out_dir = Path(out_dir)
    potential = resolve_potential(potential, device)
    all_inputs = list(paths) + [p for p in (reference, hull) if p is not None]
    protected = input_paths(all_inputs)
    for target in (out_dir / RANKED_NAME, out_dir / UNCONVERGED_NAME, out_dir / PLOT_NAME,
                   out_dir / RELAXED_FOLDER):
        check_not_input(target, protected)
    if out_dir.resolve() in {Path(p).resolve() for p in all_inputs}:
        raise InputError(f"--out {out_dir} is an input; choose another folder")
    if hull_max_e_above_hull is not None and hull is None:
        raise InputError("an e_above_hull cut for the hull dataset needs a hull dataset (--hull)")
    candidates = read_candidates(paths, include_missing=True)
    reference_candidates = read_candidates([reference]) if reference is not None else None
    hull_candidates, left_out = (
        dataset_references(hull, chemical_systems(a for _, a in candidates), progress,
                           hull_max_e_above_hull) if hull is not None else (None, []))
    potential.check_elements(candidates + (reference_candidates or []) + (hull_candidates or []))
    known = reference is not None or hull is not None
    folders = [out_dir, out_dir / RELAXED_FOLDER] + ([out_dir / REFERENCE_FOLDER] if known else [])
    for folder in folders:
        check_output_folder(folder)
    check_no_earlier_output(out_dir, RANK_OUTPUTS, "a ranking")
    if funnel is not None and trajectories:
        raise InputError("trajectories record whole relaxations; relax without the funnel to write them")
    order = [label for label, _ in candidates]
    duplicates: dict[str, str] = {}
    if merge_duplicates:
        candidates, duplicates = deduplicate_inputs(candidates)
    if funnel is not None:
        from diffcrystal.potential.funnel import relax_funnel

        results = relax_funnel(candidates, potential, settings, funnel, workers=workers, progress=progress,
                               device=device).results
    else:
        results = relax_many(candidates, potential, settings, workers=workers, progress=progress,
                             trajectory_dir=out_dir / TRAJECTORY_FOLDER if trajectories else None)
    if duplicates:
        merged = [RelaxResult(label, "duplicate", potential.label,
                              reason=f"the same crystal as {kept} (StructureMatcher before relaxing): relaxed once")
                  for label, kept in duplicates.items()]
        position = {label: i for i, label in enumerate(order)}
        results = sorted(list(results) + merged, key=lambda r: position[r.label])
    references: list[RelaxResult] | None = [] if known else None
    cached = 0
    if reference_candidates is not None:
        references += relax_many(reference_candidates, potential, settings, workers=workers,
                                 progress=progress)
    if hull_candidates is not None:
        from_hull, cached = relax_cached(hull_candidates, potential, settings, workers=workers,
                                         progress=progress)
        references += from_hull
    entries = rank_results(results, references)
    unconverged = rank_results(results, references, unconverged=True)
    for entry in entries + unconverged:  # a crystal's group lists the inputs merged before relaxing too
        entry.members += [label for label, kept in duplicates.items() if kept in entry.members]
    write_relaxed(results, out_dir / RELAXED_FOLDER, protected,
                  _input_summaries(paths, out_dir / RELAXED_FOLDER))
    if references is not None:
        write_relaxed(references, out_dir / REFERENCE_FOLDER, protected)
    write_csv_atomic(out_dir / RANKED_NAME, ranked_rows(entries), RANKED_COLUMNS)
    write_csv_atomic(out_dir / UNCONVERGED_NAME, ranked_rows(unconverged), RANKED_COLUMNS)
    plot_ranking(entries, out_dir / PLOT_NAME, potential.label, unconverged)
    return RankingReport(results, entries, unconverged, references, out_dir / RANKED_NAME,
                         out_dir / UNCONVERGED_NAME, out_dir / PLOT_NAME, potential.label, cached, left_out)
