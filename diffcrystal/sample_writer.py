"""Streaming output of generated crystals: CIFs, one extxyz, and ``summary.csv``.

The extxyz frames hold each cell in pymatgen's standard orientation (c along z, a in the xz
plane), the frame its CIF reads back in, not the arbitrary rotation the sampler ends in.

Written batch by batch so that a run of any size uses flat memory and an interrupted run
keeps every structure it finished:

- each CIF is written to a temporary name and renamed into place, so no half-written CIF
  ever carries a final name; it is first read back with pymatgen, and a CIF that does not
  read back to the same atoms is not kept: the row's ``cif_problem`` says why;
- a batch's rows are appended to ``summary.csv`` (and its frames to ``samples.extxyz``) only
  after all of its CIFs exist, and the files are flushed; on resume, rows are trusted only up
  to the last complete line.

Columns of ``summary.csv`` are :data:`SUMMARY_COLUMNS`. Each sample gets three separate
checks (:data:`CHECKS`): ``structure_valid`` (distances and cell volume,
:func:`~diffcrystal.symmetry.structural_validity`), ``density_plausible`` (volume per atom
against the elements' van der Waals volumes, :func:`~diffcrystal.symmetry.density_plausibility`)
and ``charge_neutral`` (SMACT, :func:`~diffcrystal.charge_neutrality.smact_validity`); ``valid``
is the conjunction of the checks the run uses (``validity_checks``).
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from diffcrystal.atomic_write import atomic_write_text, probe_writable
from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError
from diffcrystal.charge_neutrality import smact_validity
from diffcrystal.symmetry import (
    MAX_VDW_VOLUME_RATIO,
    MAX_VOLUME_PER_ATOM_A3,
    MIN_DISTANCE_A,
    MIN_VDW_VOLUME_RATIO,
    SYMPREC_LOOSE,
    SYMPREC_TIGHT,
    density_plausibility,
    min_distance,
    space_group,
    structural_validity,
    symmetrized,
)

SUMMARY_NAME = "summary.csv"
EXTXYZ_NAME = "samples.extxyz"
CIF_DIR = "cif"
SYMMETRIZED_DIR = "cif_symmetrized"

CHECKS = {
    "structure": f"atoms more than {MIN_DISTANCE_A} Å apart, cell volume at most "
    f"{MAX_VOLUME_PER_ATOM_A3:g} Å³ per atom",
    "density": f"volume per atom {MIN_VDW_VOLUME_RATIO}-{MAX_VDW_VOLUME_RATIO} x the elements' "
    "van der Waals volume",
    "charge": "charge neutral with SMACT's oxidation states",
}
"""The validity checks by name, with what each one requires (printed by ``diffcrystal sample``)."""

CHECK_COLUMNS = {"structure": "structure_valid", "density": "density_plausible", "charge": "charge_neutral"}
"""The ``summary.csv`` column (and :class:`SampleRecord` field) holding each check's verdict."""

SYMMETRIZED_CIF_SYMPREC_A = 1e-3
"""Tolerance (Å) with which a symmetrised cell is written as CIF. Its symmetry is already exact
(spglib-idealised at :data:`~diffcrystal.symmetry.SYMPREC_LOOSE`), so a tight tolerance finds
exactly that group; at 0.1 Å pymatgen can pick up extra near-symmetries and write operations
that expand to more atoms (seen here: a Pm LiCoNO2 sample read back as 9 atoms, not 5)."""

SUMMARY_COLUMNS = (
    "id",
    "formula",
    "n_atoms",
    "formula_units",  # Z of a CSP request; empty de novo
    "spacegroup_symbol",  # spglib at symprec = SYMPREC_LOOSE (0.1 Å)
    "spacegroup_number",
    "spacegroup_symbol_tight",  # spglib at symprec = SYMPREC_TIGHT (0.01 Å)
    "spacegroup_number_tight",
    "crystal_system",
    "volume_per_atom_A3",
    "density_g_cm3",
    "min_distance_A",
    "structure_valid",  # CHECKS["structure"]
    "density_plausible",  # CHECKS["density"]
    "charge_neutral",  # CHECKS["charge"]
    "valid",  # all of the run's validity_checks
    "invalid_reason",
    "cif",
    "symmetrized_cif",  # only for valid structures spglib finds above P1
    "cif_problem",  # why a CIF was not kept (it did not read back), else empty
    "requested_spacegroup",  # --spacegroup number; empty without it
    "wyckoff",  # the sample's Wyckoff assignment, e.g. 'Na:4a,Cl:4b' (--wyckoff syntax)
    "symmetry_break_A",  # amplitude (Å) of the symmetric displacement that removed extra symmetry; 0 none
)


@dataclass(frozen=True)
class SampleRecord:
    """One row of ``summary.csv`` (:data:`SUMMARY_COLUMNS`); ``formula_units`` is 0 de novo."""

    id: str
    formula: str
    n_atoms: int
    formula_units: int
    spacegroup_symbol: str
    spacegroup_number: int
    spacegroup_symbol_tight: str
    spacegroup_number_tight: int
    crystal_system: str
    volume_per_atom_A3: float
    density_g_cm3: float
    min_distance_A: float
    structure_valid: bool
    density_plausible: bool
    charge_neutral: bool
    valid: bool
    invalid_reason: str
    cif: str = ""
    symmetrized_cif: str = ""
    cif_problem: str = ""
    requested_spacegroup: int = 0
    wyckoff: str = ""
    symmetry_break_A: float = 0.0

    @classmethod
    def from_row(cls, row: dict[str, str]) -> "SampleRecord":
        """The record of a ``summary.csv`` row (as :class:`csv.DictReader` gives it)."""
        values = {}
        for name, kind in cls.__annotations__.items():
            text = row[name]
            if kind == "bool":
                values[name] = text == "True"
            elif kind == "int":
                values[name] = int(text) if text else 0
            elif kind == "float":
                values[name] = float(text) if text else 0.0
            else:
                values[name] = text
        return cls(**values)

    def as_row(self) -> list:
        return [
            self.id,
            self.formula,
            self.n_atoms,
            self.formula_units or "",
            self.spacegroup_symbol,
            self.spacegroup_number,
            self.spacegroup_symbol_tight,
            self.spacegroup_number_tight,
            self.crystal_system,
            f"{self.volume_per_atom_A3:.4f}",
            f"{self.density_g_cm3:.4f}",
            f"{self.min_distance_A:.4f}",
            self.structure_valid,
            self.density_plausible,
            self.charge_neutral,
            self.valid,
            self.invalid_reason,
            self.cif,
            self.symmetrized_cif,
            self.cif_problem,
            self.requested_spacegroup or "",
            self.wyckoff,
            f"{self.symmetry_break_A:g}" if self.requested_spacegroup else "",
        ]


def _check_names(validity_checks) -> tuple[str, ...]:
    unknown = sorted(set(validity_checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown validity checks {unknown}; known: {', '.join(CHECKS)}")
    return tuple(validity_checks)


def describe(
    crystal: Crystal,
    sample_id: str,
    formula_units: int = 0,
    validity_checks: tuple[str, ...] = tuple(CHECKS),
) -> SampleRecord:
    """Analyse one generated crystal (symmetry, the three checks, density) without writing
    files; ``valid`` combines the checks named in ``validity_checks`` (keys of :data:`CHECKS`)."""
    validity_checks = _check_names(validity_checks)
    with warnings.catch_warnings():
        # pymatgen warns (once per element) that noble gases have no Pauling
        # electronegativity when it orders a formula; the formula is still right.
        warnings.filterwarnings("ignore", message="No Pauling electronegativity", category=UserWarning)
        formula = crystal.formula
        density = float(crystal.to_structure().density)
    loose = space_group(crystal, SYMPREC_LOOSE)
    tight = space_group(crystal, SYMPREC_TIGHT)
    verdicts = {
        "structure": structural_validity(crystal),
        "density": density_plausibility(crystal),
    }
    charge_neutral = smact_validity(crystal.atomic_numbers)
    failed = [verdicts[name].reason for name in validity_checks if name in verdicts and not verdicts[name].valid]
    if "charge" in validity_checks and not charge_neutral:
        failed.append(f"{formula} is not charge neutral with SMACT's oxidation states")
    return SampleRecord(
        id=sample_id,
        formula=formula,
        n_atoms=crystal.num_atoms,
        formula_units=formula_units,
        spacegroup_symbol=loose.symbol,
        spacegroup_number=loose.number,
        spacegroup_symbol_tight=tight.symbol,
        spacegroup_number_tight=tight.number,
        crystal_system=loose.crystal_system,
        volume_per_atom_A3=crystal.volume / crystal.num_atoms,
        density_g_cm3=density,
        min_distance_A=min_distance(crystal),
        structure_valid=verdicts["structure"].valid,
        density_plausible=verdicts["density"].valid,
        charge_neutral=charge_neutral,
        valid=not failed,
        invalid_reason="; ".join(failed),
    )


def failed_record(sample_id: str, reason: str, formula_units: int = 0) -> SampleRecord:
    """The summary row of a sample that could not be made into a crystal."""
    nan = float("nan")
    return SampleRecord(
        id=sample_id, formula="", n_atoms=0, formula_units=formula_units, spacegroup_symbol="",
        spacegroup_number=0, spacegroup_symbol_tight="", spacegroup_number_tight=0,
        crystal_system="unknown", volume_per_atom_A3=nan, density_g_cm3=nan, min_distance_A=nan,
        structure_valid=False, density_plausible=False, charge_neutral=False, valid=False,
        invalid_reason=reason,
    )


def cif_reading_problem(cif_text: str, written) -> str:
    """Why ``cif_text`` does not read back (pymatgen) to the atoms of ``written`` (a pymatgen
    Structure), or ``''`` when it does: same number of atoms and same composition."""
    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the parser's complaints become the returned reason
        try:
            structures = CifParser.from_str(cif_text).parse_structures(primitive=False)
        except Exception as error:  # noqa: BLE001 - any parser failure is the answer
            return f"does not parse ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
    if len(structures) != 1:
        return f"reads back as {len(structures)} structures"
    back = structures[0]
    if len(back) != len(written) or back.composition != written.composition:
        return (
            f"reads back as {back.composition.formula.replace(' ', '')} "
            f"({len(back)} atoms), not {written.composition.formula.replace(' ', '')} ({len(written)} atoms)"
        )
    return ""


class SampleWriter:
    """Writes generated crystals under ``out_dir`` (see the module docstring).

    Parameters
    ----------
    out_dir : folder to write into; created if missing, and checked to be writable.
    resume : continue a run whose folder already holds a ``summary.csv`` (its rows become the
        first :attr:`records`); without it such a folder is refused so that saved samples are
        never overwritten.
    validity_checks : the :data:`CHECKS` that make up ``valid`` (all three by default).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        resume: bool = False,
        validity_checks: tuple[str, ...] = tuple(CHECKS),
    ):
        self.out_dir = Path(out_dir)
        self.validity_checks = _check_names(validity_checks)
        prepare_output_folder(self.out_dir)
        self.summary_path = self.out_dir / SUMMARY_NAME
        self.extxyz_path = self.out_dir / EXTXYZ_NAME
        self.records: list[SampleRecord] = []
        self.num_done = 0
        if self.summary_path.exists():
            if not resume:
                raise InputError(
                    f"{self.out_dir} already holds samples ({SUMMARY_NAME}); choose another "
                    "--out or pass --resume to continue that run"
                )
            self.records = self._read_complete_rows()
            self.num_done = len(self.records)
        else:
            with open(self.summary_path, "w", newline="") as stream:
                csv.writer(stream).writerow(SUMMARY_COLUMNS)

    def _read_complete_rows(self) -> list[SampleRecord]:
        """The records already in ``summary.csv``; a partial last line (an interrupted append)
        is dropped from the file."""
        with open(self.summary_path, newline="") as stream:
            text = stream.read()
        rows = list(csv.reader(text.splitlines()))
        if not rows or tuple(rows[0]) != SUMMARY_COLUMNS:
            raise InputError(
                f"{self.summary_path} has other columns than this diffcrystal version writes; "
                "it cannot be resumed, sample into a new --out"
            )
        if not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
            atomic_write_text(self.summary_path, text)
            rows = rows[:-1]
        return [SampleRecord.from_row(dict(zip(SUMMARY_COLUMNS, row))) for row in rows[1:]]

    def _write_checked_cif(self, rel_path: str, cif_text: str, structure) -> str:
        """Write ``cif_text`` to ``rel_path`` if it reads back to ``structure``; returns ``''``
        or the problem (and then writes nothing)."""
        problem = cif_reading_problem(cif_text, structure)
        if not problem:
            atomic_write_text(self.out_dir / rel_path, cif_text)
        return problem

    def write_batch(
        self,
        crystals: list[Crystal | Exception],
        ids: list[str],
        formula_units: list[int] | None = None,
        assignments: list | None = None,
        symmetry_breaks: list[float] | None = None,
    ) -> list[SampleRecord]:
        """Write CIFs (and, for valid structures above P1, symmetrised CIFs), then append the
        batch's summary rows and extxyz frames. ``formula_units``: Z of each request (CSP).
        ``assignments``: each sample's :class:`~diffcrystal.spacegroup.WyckoffAssignment` when
        sampled on a space group; its symmetrised CIF is then written (valid or not) in the
        group's standard setting at spglib's tight tolerance (0.01 Å), and
        ``symmetry_breaks`` gives the amplitude of each one's symmetry-breaking displacement.
        An exception in place of a crystal (a sample that is no crystal, e.g. a collapsed
        lattice) gets a row with ``valid = False`` and the reason, and no files.
        Returns the batch's records."""
        from ase.io import write as ase_write
        from pymatgen.io.cif import CifWriter

        units = formula_units or [0] * len(ids)
        assignments = assignments or [None] * len(ids)
        breaks = symmetry_breaks or [0.0] * len(ids)
        records = []
        frames = []
        for crystal, sample_id, z, assignment, amplitude in zip(crystals, ids, units, assignments, breaks):
            requested = {} if assignment is None else {
                "requested_spacegroup": assignment.spacegroup, "wyckoff": assignment.label,
                "symmetry_break_A": amplitude}
            if isinstance(crystal, Exception):
                records.append(replace(failed_record(sample_id, str(crystal), z), **requested))
                continue
            record = replace(describe(crystal, sample_id, z, self.validity_checks), **requested)
            structure = crystal.to_structure()
            cif_rel = f"{CIF_DIR}/{sample_id}.cif"
            problems = []
            problem = self._write_checked_cif(cif_rel, str(CifWriter(structure)), structure)
            if problem:
                problems.append(f"CIF {problem}")
                cif_rel = ""
            sym_rel = ""
            if assignment is not None:
                refined = symmetrized(crystal, SYMPREC_TIGHT) if record.spacegroup_number_tight > 1 else None
            else:
                refined = symmetrized(crystal) if record.valid and record.spacegroup_number > 1 else None
            if refined is not None:
                sym_rel = f"{SYMMETRIZED_DIR}/{sample_id}.cif"
                refined_structure = refined.to_structure()
                cif_text = str(CifWriter(refined_structure, symprec=SYMMETRIZED_CIF_SYMPREC_A))
                problem = self._write_checked_cif(sym_rel, cif_text, refined_structure)
                if problem:
                    problems.append(f"symmetrised CIF {problem}")
                    sym_rel = ""
            record = replace(record, cif=cif_rel, symmetrized_cif=sym_rel, cif_problem="; ".join(problems))
            records.append(record)
            atoms = crystal.in_standard_orientation().to_atoms()  # the frame of the CIF, not the sampler's
            atoms.info.update({"id": sample_id, "spacegroup": record.spacegroup_number, "valid": record.valid})
            frames.append(atoms)
        if frames:
            ase_write(self.extxyz_path, frames, format="extxyz", append=True)
        with open(self.summary_path, "a", newline="") as stream:
            writer = csv.writer(stream)
            for record in records:
                writer.writerow(record.as_row())
            stream.flush()
            os.fsync(stream.fileno())
        self.records.extend(records)
        self.num_done += len(records)
        return records


def prepare_output_folder(out_dir: Path) -> None:
    """Create ``out_dir`` with its CIF folder and prove both writable by writing and removing
    a probe file (permission bits alone can mislead); ``InputError`` naming the folder else.
    ``cif_symmetrized/`` is made with its first file (none in a run of P1 or invalid samples)."""
    try:
        (out_dir / CIF_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create output folder {out_dir}: {error.strerror}") from None
    for folder in (out_dir, out_dir / CIF_DIR):
        try:
            probe_writable(folder)
        except OSError as error:
            raise InputError(f"output folder {folder} is not writable: {error.strerror}") from None
