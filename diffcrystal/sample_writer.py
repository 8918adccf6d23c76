"""Streaming output of generated crystals: CIFs, one extxyz, and ``summary.csv``.

Written batch by batch so that a run of any size uses flat memory and an interrupted run
keeps every structure it finished:

- each CIF is written to a temporary name and renamed into place, so no half-written CIF
  ever carries a final name;
- a batch's rows are appended to ``summary.csv`` (and its frames to ``samples.extxyz``) only
  after all of its CIFs exist, and the files are flushed; on resume, rows are trusted only up
  to the last complete line.

Columns of ``summary.csv`` are :data:`SUMMARY_COLUMNS`.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError
from diffcrystal.symmetry import (
    SYMPREC_LOOSE,
    SYMPREC_TIGHT,
    min_distance,
    space_group,
    structural_validity,
    symmetrized,
)

SUMMARY_NAME = "summary.csv"
EXTXYZ_NAME = "samples.extxyz"
CIF_DIR = "cif"
SYMMETRIZED_DIR = "cif_symmetrized"

SUMMARY_COLUMNS = (
    "id",
    "formula",
    "n_atoms",
    "spacegroup_symbol",  # spglib at symprec = SYMPREC_LOOSE (0.1 Å)
    "spacegroup_number",
    "spacegroup_symbol_tight",  # spglib at symprec = SYMPREC_TIGHT (0.01 Å)
    "spacegroup_number_tight",
    "crystal_system",
    "volume_per_atom_A3",
    "density_g_cm3",
    "min_distance_A",
    "valid",
    "invalid_reason",
    "cif",
    "symmetrized_cif",
)


@dataclass(frozen=True)
class SampleRecord:
    """One row of ``summary.csv``."""

    id: str
    formula: str
    n_atoms: int
    spacegroup_symbol: str
    spacegroup_number: int
    spacegroup_symbol_tight: str
    spacegroup_number_tight: int
    crystal_system: str
    volume_per_atom_A3: float
    density_g_cm3: float
    min_distance_A: float
    valid: bool
    invalid_reason: str
    cif: str
    symmetrized_cif: str

    def as_row(self) -> list:
        return [
            self.id,
            self.formula,
            self.n_atoms,
            self.spacegroup_symbol,
            self.spacegroup_number,
            self.spacegroup_symbol_tight,
            self.spacegroup_number_tight,
            self.crystal_system,
            f"{self.volume_per_atom_A3:.4f}",
            f"{self.density_g_cm3:.4f}",
            f"{self.min_distance_A:.4f}",
            self.valid,
            self.invalid_reason,
            self.cif,
            self.symmetrized_cif,
        ]


def describe(crystal: Crystal, sample_id: str) -> SampleRecord:
    """Analyse one generated crystal (symmetry, validity, density) without writing files."""
    structure = crystal.to_structure()
    loose = space_group(crystal, SYMPREC_LOOSE)
    tight = space_group(crystal, SYMPREC_TIGHT)
    validity = structural_validity(crystal)
    return SampleRecord(
        id=sample_id,
        formula=crystal.formula,
        n_atoms=crystal.num_atoms,
        spacegroup_symbol=loose.symbol,
        spacegroup_number=loose.number,
        spacegroup_symbol_tight=tight.symbol,
        spacegroup_number_tight=tight.number,
        crystal_system=loose.crystal_system,
        volume_per_atom_A3=crystal.volume / crystal.num_atoms,
        density_g_cm3=float(structure.density),
        min_distance_A=min_distance(crystal),
        valid=validity.valid,
        invalid_reason=validity.reason,
        cif="",
        symmetrized_cif="",
    )


def failed_record(sample_id: str, reason: str) -> SampleRecord:
    """The summary row of a sample that could not be made into a crystal."""
    nan = float("nan")
    return SampleRecord(
        id=sample_id, formula="", n_atoms=0, spacegroup_symbol="", spacegroup_number=0,
        spacegroup_symbol_tight="", spacegroup_number_tight=0, crystal_system="unknown",
        volume_per_atom_A3=nan, density_g_cm3=nan, min_distance_A=nan, valid=False,
        invalid_reason=reason, cif="", symmetrized_cif="",
    )


class SampleWriter:
    """Writes generated crystals under ``out_dir`` (see the module docstring).

    Parameters
    ----------
    out_dir : folder to write into; created if missing.
    resume : continue a run whose folder already holds a ``summary.csv``; without it such a
        folder is refused so that saved samples are never overwritten.
    """

    def __init__(self, out_dir: str | os.PathLike, resume: bool = False):
        self.out_dir = Path(out_dir)
        try:
            (self.out_dir / CIF_DIR).mkdir(parents=True, exist_ok=True)
            (self.out_dir / SYMMETRIZED_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(f"cannot create output folder {self.out_dir}: {error.strerror}") from None
        if not os.access(self.out_dir, os.W_OK):
            raise InputError(f"output folder {self.out_dir} is not writable")
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
            self.num_done = self._count_complete_rows()
        else:
            with open(self.summary_path, "w", newline="") as stream:
                csv.writer(stream).writerow(SUMMARY_COLUMNS)

    def _count_complete_rows(self) -> int:
        with open(self.summary_path, newline="") as stream:
            text = stream.read()
        if not text.endswith("\n"):  # an interrupted append: drop the partial last line
            text = text[: text.rfind("\n") + 1]
            atomic_write_text(self.summary_path, text)
        rows = list(csv.reader(text.splitlines()))
        return max(len(rows) - 1, 0)

    def write_batch(self, crystals: list[Crystal | Exception], ids: list[str]) -> list[SampleRecord]:
        """Write CIFs (and symmetrised CIFs above P1), then append the batch's summary rows and
        extxyz frames. An exception in place of a crystal (a sample that is no crystal, e.g.
        a collapsed lattice) gets a row with ``valid = False`` and the reason, and no files.
        Returns the batch's records."""
        from ase.io import write as ase_write
        from pymatgen.io.cif import CifWriter

        records = []
        written = []
        for crystal, sample_id in zip(crystals, ids):
            if isinstance(crystal, Exception):
                records.append(failed_record(sample_id, str(crystal)))
                continue
            written.append(crystal)
            record = describe(crystal, sample_id)
            cif_rel = f"{CIF_DIR}/{sample_id}.cif"
            atomic_write_text(self.out_dir / cif_rel, str(CifWriter(crystal.to_structure())))
            sym_rel = ""
            refined = symmetrized(crystal) if record.spacegroup_number > 1 else None
            if refined is not None:
                sym_rel = f"{SYMMETRIZED_DIR}/{sample_id}.cif"
                cif_text = str(CifWriter(refined.to_structure(), symprec=SYMPREC_LOOSE))
                atomic_write_text(self.out_dir / sym_rel, cif_text)
            records.append(
                SampleRecord(**{**record.__dict__, "cif": cif_rel, "symmetrized_cif": sym_rel})
            )
        frames = []
        for crystal, record in zip(written, [r for r in records if r.cif]):
            atoms = crystal.to_atoms()
            atoms.info.update(
                {"id": record.id, "spacegroup": record.spacegroup_number, "valid": record.valid}
            )
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
