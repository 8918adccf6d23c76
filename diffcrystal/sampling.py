"""``sample_to_folder``: the library behind ``diffcrystal sample``.

Requests are generated in batches; batch ``b`` draws its noise from a generator seeded by
``(seed, b)``, so the same seed gives the same structures, and a resumed run produces exactly
the structures the interrupted run had not finished. A resume is refused when its options
(checkpoint, composition, Z, seed, n, steps, corrector, noise scale, batch size) differ from those in ``run.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from pymatgen.core import Element
from tqdm.auto import tqdm

from diffcrystal.analogues import DEFAULT_MAX_ANALOGUE_DISTANCE
from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.checkpoint import file_sha256
from diffcrystal.data.composition import (
    Composition,
    format_composition,
    multiply,
    parse_composition,
    to_atomic_numbers,
)
from diffcrystal.data.crystal import Crystal, CrystalError
from diffcrystal.errors import InputError
from diffcrystal.generator import Generator
from diffcrystal.overview import write_sample_overview
from diffcrystal.run_record import RUN_RECORD_NAME
from diffcrystal.sample_writer import SUMMARY_NAME, SampleRecord, SampleWriter

log = logging.getLogger(__name__)

LONG_RUN_WARNING_S = 24 * 3600.0
"""Projected sampling time (s) beyond which :func:`sample_to_folder` warns after its first
batch: a run of more than a day is more often a mistyped ``--n`` than an intended one."""

MAX_SAMPLE_ATOMS = 200
"""Largest cell (atoms) the sampler accepts: the denoiser's in-cell graph grows as N²."""

VALIDITY_CHECKS = {"csp": ("structure", "density"), "denovo": ("structure", "density", "charge")}
"""The :data:`~diffcrystal.sample_writer.CHECKS` that make a sample ``valid``, per mode. In CSP
the composition is the user's, so its SMACT charge neutrality is reported in ``summary.csv``
but is no verdict on the sampled structure."""

RESUME_OPTIONS = {
    "checkpoint_sha256": "--checkpoint",
    "composition": "--composition",
    "formula_units": "--formula-units",
    "seed": "--seed",
    "n": "--n",
    "num_steps": "--steps",
    "corrector_steps": "--corrector-steps",
    "corrector_min_t": "--corrector-min-t",
    "coord_noise_scale": "--noise-scale",
    "batch_size": "--batch-size",
    "spacegroup": "--spacegroup",
    "wyckoff": "--wyckoff",
    "analogue_table_sha256": "--analogues",
    "max_analogue_distance": "--max-analogue-distance",
}
"""Fields of ``run.json`` a resumed run must share with the original, and their options."""

SAMPLER_DEFAULTS = {"corrector_steps": ("sampling", None), "corrector_min_t": ("sampling", 0),
                    "coord_noise_scale": ("diffusion", 1.0)}
"""Sampler settings a ``run.json`` written before their option lacks: read from the section of
its recorded config, or (when the config predates the setting too) the value the sampler then used."""


@dataclass
class SampleRun:
    """What a sampling run produced: its records (earlier ones too when resumed), the
    :data:`~diffcrystal.sample_writer.CHECKS` that made up ``valid``, and how many of the
    records a resumed run kept from before (the first ``num_kept``)."""

    out_dir: Path
    records: list[SampleRecord]
    validity_checks: tuple[str, ...] = ()
    num_kept: int = 0

    @property
    def num_valid(self) -> int:
        return sum(r.valid for r in self.records)

    @property
    def num_cif_problems(self) -> int:
        """Samples with a CIF that did not read back and was not kept."""
        return sum(bool(r.cif_problem) for r in self.records)

    def valid_by_formula_units(self) -> dict[int, tuple[int, int, int]]:
        """Z -> (valid, total, atoms per cell) for CSP records; empty de novo."""
        table: dict[int, tuple[int, int, int]] = {}
        for r in self.records:
            if r.formula_units:
                valid, total, atoms = table.get(r.formula_units, (0, 0, 0))
                table[r.formula_units] = (valid + r.valid, total + 1, max(atoms, r.n_atoms))
        return dict(sorted(table.items()))

    def space_group_counts(self) -> Counter:
        return Counter(
            f"{r.spacegroup_symbol} ({r.spacegroup_number})" if r.spacegroup_number else "none found"
            for r in self.records
        )


def batch_generator(seed: int, batch_index: int, device: torch.device) -> torch.Generator:
    """The noise generator of batch ``batch_index`` of a run seeded with ``seed``."""
    state = np.random.SeedSequence([seed, batch_index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & ((1 << 63) - 1))


def plan_requests(
    generator: Generator,
    n: int,
    composition: Composition | None,
    formula_units: list[int],
    seed: int,
) -> list[tuple[int, list[int] | None]]:
    """(atom count, species or None) for each of the ``n`` requested crystals.

    CSP: the composition times Z, cycling through ``formula_units``. De novo: atom counts drawn
    from the training histogram with a generator seeded by ``seed``.
    """
    if composition is not None:
        if generator.mode != "csp":
            raise InputError("this checkpoint generates de novo; drop --composition or pass a CSP checkpoint")
        plans = []
        for z in formula_units:
            species = to_atomic_numbers(multiply(composition, z))
            if len(species) > MAX_SAMPLE_ATOMS:
                raise InputError(
                    f"{format_composition(composition)} x {z} has {len(species)} atoms; at most "
                    f"{MAX_SAMPLE_ATOMS} atoms per cell are supported"
                )
            plans.append((len(species), species))
        unseen = sorted(set(composition) - set(generator.statistics.species))
        if unseen:
            names = ", ".join(Element.from_Z(z).symbol for z in unseen)
            log.warning("the checkpoint never saw %s in training; expect poor structures", names)
        largest = max(p[0] for p in plans)
        if largest > generator.statistics.max_atoms:
            log.warning(
                "%d atoms per cell is more than the largest training cell (%d atoms); expect poor structures",
                largest,
                generator.statistics.max_atoms,
            )
        return [plans[i % len(plans)] for i in range(n)]
    if generator.mode == "csp":
        raise InputError("this checkpoint predicts structures for a given composition: pass --composition")
    histogram = generator.statistics.num_atoms_histogram
    sizes = torch.tensor(list(histogram), dtype=torch.long)
    weights = torch.tensor(list(histogram.values()), dtype=torch.double)
    draws = torch.multinomial(weights, n, replacement=True, generator=torch.Generator().manual_seed(seed))
    return [(int(sizes[i]), None) for i in draws.tolist()]


def plan_spacegroup_requests(
    generator: Generator,
    n: int,
    composition: Composition,
    spacegroup: int,
    wyckoff: str = "auto",
    formula_units: list[int] | None = None,
) -> list:
    """The :class:`~diffcrystal.spacegroup.WyckoffAssignment` of each of the ``n`` requested
    crystals on space group ``spacegroup`` (CSP), cycling through the assignments.

    ``wyckoff``: ``'auto'`` (every assignment of the composition that realises the group,
    :func:`~diffcrystal.spacegroup.enumerate_assignments`, fewest orbits first) or a list such
    as ``'Na:4a,Cl:4b'``. ``formula_units``: the Z to try; None: every Z whose conventional
    cell has at most the checkpoint's largest training cell of atoms, or, if none fits, the
    smallest Z that does (cells up to :data:`MAX_SAMPLE_ATOMS`). :class:`InputError` (one line)
    when the group cannot host the composition.
    """
    from diffcrystal.spacegroup import check_spacegroup, enumerate_assignments, parse_assignment

    if generator.mode != "csp":
        raise InputError("--spacegroup needs a CSP checkpoint and --composition")
    spacegroup = check_spacegroup(spacegroup)
    per_unit = sum(composition.values())
    if wyckoff != "auto":
        assignment, z = parse_assignment(wyckoff, spacegroup, composition)
        if formula_units is not None and z not in formula_units:
            raise InputError(f"--wyckoff {assignment.label!r} has Z = {z}, not one of --formula-units "
                             f"{','.join(map(str, formula_units))}")
        assignments = [assignment]
    elif formula_units is not None:
        assignments = enumerate_assignments(composition, spacegroup, formula_units)
    else:
        within = list(range(1, max(generator.statistics.max_atoms // per_unit, 1) + 1))
        try:
            assignments = enumerate_assignments(composition, spacegroup, within)
        except InputError:
            larger = list(range(within[-1] + 1, MAX_SAMPLE_ATOMS // per_unit + 1))
            assignments = enumerate_assignments(composition, spacegroup, within + larger)
            smallest = min(a.num_atoms for a in assignments)
            assignments = [a for a in assignments if a.num_atoms == smallest]
    largest = max(a.num_atoms for a in assignments)
    if largest > MAX_SAMPLE_ATOMS:
        raise InputError(f"--wyckoff {assignments[0].label!r} has {largest} atoms; at most "
                         f"{MAX_SAMPLE_ATOMS} atoms per cell are supported")
    if largest > generator.statistics.max_atoms:
        log.warning("%d atoms per conventional cell is more than the largest training cell (%d atoms); "
                    "expect poor structures", largest, generator.statistics.max_atoms)
    return [assignments[i % len(assignments)] for i in range(n)]


def plan_analogue_requests(generator: Generator, n: int, composition: Composition, library,
                           max_distance: float | None = None) -> tuple[list, list]:
    """The Wyckoff assignments of the ``n`` requested crystals on the groups of the
    composition's nearest chemical analogues in ``library`` (an
    :class:`~diffcrystal.analogues.AnalogueLibrary`): up to ``n`` analogues of distinct
    structure type within Mendeleev distance ``max_distance`` (None: any), nearest first,
    cycled. Returns ``(assignments, analogues used)``; :class:`InputError` (one line) when the
    library has no analogue of the formula type, or none that near."""
    from diffcrystal.analogues import formula_type

    if generator.mode != "csp":
        raise InputError("--analogues needs a CSP checkpoint and --composition")
    found = library.distinct_analogues(composition, n, max_distance=max_distance)
    if not found:
        kind = "".join(f"{chr(ord('A') + i)}{c if c > 1 else ''}" for i, c in enumerate(formula_type(composition)))
        nearest = library.analogues(composition)
        if nearest:
            raise InputError(f"no analogue of {format_composition(composition)} within Mendeleev distance "
                             f"{max_distance:g}: the nearest, {nearest[0].template.label}, is at {nearest[0].distance:.3g} "
                             f"(--max-analogue-distance sets the limit)")
        raise InputError(f"no analogue of {format_composition(composition)}: the table holds no {kind} compound")
    assignments = [found[i % len(found)].assignment() for i in range(n)]
    largest = max(a.num_atoms for a in assignments)
    if largest > MAX_SAMPLE_ATOMS:
        raise InputError(f"an analogue's conventional cell has {largest} atoms; at most {MAX_SAMPLE_ATOMS} are supported")
    return assignments, found


def check_options(generator: Generator, n: int, num_steps: int, batch_size: int) -> None:
    """Refuse a request the sampler cannot run (:class:`InputError` naming the option)."""
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if num_steps < 1 or num_steps > generator.joint.num_timesteps:
        raise InputError(f"--steps must be in 1..{generator.joint.num_timesteps}, got {num_steps}")


def generate_batches(
    generator: Generator,
    plans: list[tuple[int, list[int] | None]],
    *,
    num_steps: int,
    batch_size: int,
    seed: int,
    first_batch: int = 0,
    progress: bool = True,
    assignments: list | None = None,
) -> Iterator[tuple[int, list[Crystal | CrystalError]]]:
    """Sample ``plans`` (from :func:`plan_requests`) batch by batch, from ``first_batch`` on;
    with ``assignments`` (one per plan, :func:`plan_spacegroup_requests`) on their space groups.

    Batch ``b`` holds ``plans[b * batch_size:(b + 1) * batch_size]`` and draws its noise from
    :func:`batch_generator` ``(seed, b)``. Yields ``(index of its first plan, crystals)``.
    """
    num_batches = -(-len(plans) // batch_size)
    bar = tqdm(total=(num_batches - first_batch) * num_steps, desc="sampling", unit="step", disable=not progress)
    try:
        for batch_index in range(first_batch, num_batches):
            start = batch_index * batch_size
            batch_plans = plans[start:start + batch_size]
            crystals = generator.sample(
                [p[0] for p in batch_plans],
                [p[1] for p in batch_plans] if generator.mode == "csp" else None,
                num_steps=num_steps,
                generator=batch_generator(seed, batch_index, generator.device),
                progress=lambda _step: bar.update(1),
                assignments=None if assignments is None else assignments[start:start + batch_size],
            )
            yield start, crystals
            bar.set_postfix(done=start + len(batch_plans))
    finally:
        bar.close()


def composition_label(composition: str | Composition) -> str:
    """How ``run.json`` names a composition: the user's formula as typed (whitespace removed,
    so ``'YBa2Cu3O7'`` stays ``'YBa2Cu3O7'``), or for a ``{Z: count}`` mapping pymatgen's
    formula without unit counts (``'Ba2YCu3O7'``).

    >>> composition_label("Y Ba2Cu3O7"), composition_label({8: 7, 29: 3, 39: 1, 56: 2})
    ('YBa2Cu3O7', 'Ba2YCu3O7')
    """
    if isinstance(composition, str):
        return "".join(composition.split())
    from pymatgen.core import Composition as PymatgenComposition

    tokens = PymatgenComposition({Element.from_Z(z).symbol: n for z, n in composition.items()}).formula.split()
    return "".join(t[:-1] if t.endswith("1") and not t[-2].isdigit() else t for t in tokens)


def _resume_differences(previous: dict, current: dict) -> list[str]:
    """Options of ``current`` that differ from the ``previous`` run.json, in words."""
    differences = []
    for key, option in RESUME_OPTIONS.items():
        old, new = previous.get(key), current.get(key)
        if key in SAMPLER_DEFAULTS and old is None:  # run.json from before the option: its config
            section, default = SAMPLER_DEFAULTS[key]
            old = previous.get("experiment", {}).get(section, {}).get(key, default)
        if key == "checkpoint_sha256" and old != new:  # name the files, not their hashes
            differences.append(f"{option} {current.get('checkpoint')} (the run used {previous.get('checkpoint')}, "
                               "a different file)")
            continue
        if key == "composition" and old is not None and new is not None:
            same = parse_composition(old) == parse_composition(new)
        else:
            same = old == new
        if not same:
            differences.append(f"{option} {new if new is not None else '(none)'} "
                               f"(the run used {old if old is not None else '(none)'})")
    return differences


def _check_resume(out_dir: Path, record: dict) -> bool:
    """With ``--resume``: ``True`` when ``out_dir`` holds a run with the same options as
    ``record``, ``False`` when it holds no run yet; :class:`InputError` when they differ."""
    if not (out_dir / SUMMARY_NAME).exists():
        return False
    try:
        previous = json.loads((out_dir / RUN_RECORD_NAME).read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"cannot resume {out_dir}: its {RUN_RECORD_NAME} is missing or unreadable "
                         f"({type(error).__name__}), so the options cannot be checked") from None
    differences = _resume_differences(previous, record)
    if differences:
        raise InputError(f"cannot resume {out_dir} with other options: {'; '.join(differences)}")
    return True


def _warn_if_long(first_batch_s: float, num_batches: int, n: int) -> None:
    """Warn when ``num_batches`` batches of ``first_batch_s`` seconds each pass :data:`LONG_RUN_WARNING_S`."""
    projected_s = first_batch_s * num_batches
    if projected_s > LONG_RUN_WARNING_S:
        log.warning("--n %s: the first batch took %.1f s, so the %s batches take about %s h; Ctrl-C stops "
                    "the run, --resume continues it", f"{n:,}", first_batch_s, f"{num_batches:,}",
                    f"{projected_s / 3600:,.0f}")


def sample_to_folder(
    generator: Generator,
    *,
    n: int,
    out_dir: str | Path,
    composition: str | Composition | None = None,
    formula_units: list[int] | None = (1,),
    num_steps: int,
    batch_size: int = 100,
    seed: int = 0,
    resume: bool = False,
    checkpoint_path: str | Path | None = None,
    progress: bool = True,
    spacegroup: int | None = None,
    wyckoff: str = "auto",
    analogue_table: str | Path | None = None,
    max_analogue_distance: float | None = DEFAULT_MAX_ANALOGUE_DISTANCE,
) -> SampleRun:
    """Generate ``n`` crystals into ``out_dir`` (CIFs, ``samples.extxyz``, ``summary.csv``,
    ``run.json``, and at the end ``overview.png``). See :class:`~diffcrystal.sample_writer.SampleWriter` for the layout.

    ``composition``: a formula string (kept as typed in ``run.json``) or ``{Z: count}``;
    ``None`` de novo. ``resume``: continue the run in ``out_dir``, refused (``InputError``
    naming the option) if its ``run.json`` records other options. The output folder is
    created and checked writable before anything is sampled.

    ``spacegroup``: sample every crystal on this space group (1..230) with ``wyckoff``
    ``'auto'`` or an assignment such as ``'Na:4a,Cl:4b'`` (:func:`plan_spacegroup_requests`;
    ``formula_units=None`` tries every Z that fits); a sample with more symmetry than the group
    is displaced within it until spglib finds the group
    (:func:`~diffcrystal.spacegroup.break_extra_symmetry`, column ``symmetry_break_A``).

    ``analogue_table``: instead of one group, sample on the groups and Wyckoff assignments of
    the composition's nearest chemical analogues in this table
    (:meth:`~diffcrystal.analogues.AnalogueLibrary.from_table`; :func:`plan_analogue_requests`);
    ``run.json`` lists the analogues used. ``max_analogue_distance``: only analogues within this
    Mendeleev distance (default :data:`~diffcrystal.analogues.DEFAULT_MAX_ANALOGUE_DISTANCE`;
    None: any).
    """
    check_options(generator, n, num_steps, batch_size)
    parsed = parse_composition(composition) if isinstance(composition, str) else composition
    if spacegroup is None:
        formula_units = list(formula_units or [1])
    assignments = used_analogues = None
    if analogue_table is not None:
        from diffcrystal.analogues import AnalogueLibrary

        if parsed is None or spacegroup is not None:
            raise InputError("--analogues needs --composition and no --spacegroup")
        assignments, used_analogues = plan_analogue_requests(
            generator, n, parsed, AnalogueLibrary.from_table(analogue_table), max_analogue_distance)
        plans = [(a.num_atoms, a.atomic_numbers()) for a in assignments]
    elif spacegroup is not None:
        if parsed is None:
            raise InputError("--spacegroup needs --composition (crystal-structure prediction)")
        assignments = plan_spacegroup_requests(generator, n, parsed, spacegroup, wyckoff,
                                               None if formula_units is None else list(formula_units))
        plans = [(a.num_atoms, a.atomic_numbers()) for a in assignments]
    else:
        plans = plan_requests(generator, n, parsed, formula_units, seed)
    out_dir = Path(out_dir)
    record = {
        "checkpoint": str(checkpoint_path) if checkpoint_path else None,
        "checkpoint_sha256": file_sha256(checkpoint_path) if checkpoint_path else None,
        "mode": generator.mode,
        "composition": composition_label(composition) if composition is not None else None,
        "formula_units": list(formula_units) if parsed is not None and formula_units is not None else None,
        "spacegroup": spacegroup,
        "wyckoff": wyckoff if spacegroup is not None else None,
        "analogue_table": str(analogue_table) if analogue_table is not None else None,
        "analogue_table_sha256": file_sha256(analogue_table) if analogue_table is not None else None,
        "max_analogue_distance": max_analogue_distance if analogue_table is not None else None,
        "analogues": None if used_analogues is None else [
            {"template": a.template.label, "formula": format_composition(a.template.composition),
             "spacegroup": assignment.spacegroup, "wyckoff": assignment.label,
             "mendeleev_distance": round(a.distance, 4)}
            for a, assignment in ((a, a.assignment()) for a in used_analogues)],
        "n": n,
        "num_steps": num_steps,
        "corrector_steps": generator.experiment.sampling.corrector_steps,
        "corrector_min_t": generator.experiment.sampling.corrector_min_t,
        "coord_noise_scale": generator.experiment.diffusion.coord_noise_scale,
        "batch_size": batch_size,
        "seed": seed,
        "validity_checks": list(VALIDITY_CHECKS[generator.mode]),
        "experiment": generator.experiment.to_dict(),
    }
    continuing = resume and _check_resume(out_dir, record)
    writer = SampleWriter(out_dir, resume=resume, validity_checks=VALIDITY_CHECKS[generator.mode])
    num_kept = writer.num_done
    if not continuing:
        atomic_write_text(writer.out_dir / RUN_RECORD_NAME, json.dumps(record, indent=2))

    atoms_per_unit = sum(parsed.values()) if parsed is not None else None
    units = [len(species) // atoms_per_unit if atoms_per_unit else 0 for _, species in plans]
    num_batches = -(-n // batch_size)
    first_batch = writer.num_done // batch_size if writer.num_done < n else num_batches
    batches = generate_batches(generator, plans, num_steps=num_steps, batch_size=batch_size, seed=seed,
                               first_batch=first_batch, progress=progress, assignments=assignments)
    started = time.perf_counter()
    for start, crystals in batches:
        stop = start + len(crystals)
        batch_assignments = breaks = None
        if assignments is not None:
            from diffcrystal.spacegroup import break_extra_symmetry

            batch_assignments = assignments[start:stop]
            broken = [break_extra_symmetry(c, a, seed=start + i) if isinstance(c, Crystal) else (c, 0.0)
                      for i, (c, a) in enumerate(zip(crystals, batch_assignments))]
            crystals, breaks = [c for c, _ in broken], [amplitude for _, amplitude in broken]
        writer.write_batch(crystals, [f"{i:06d}" for i in range(start, stop)], units[start:stop],
                           batch_assignments, breaks)
        if start == first_batch * batch_size:
            _warn_if_long(time.perf_counter() - started, num_batches - first_batch, n)
    write_sample_overview(writer.out_dir)
    return SampleRun(writer.out_dir, writer.records, VALIDITY_CHECKS[generator.mode], num_kept)
