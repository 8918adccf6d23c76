"""Reading candidate structures and writing relaxation outputs safely.

Inputs (:func:`read_candidates`), each path one of:

- a *sample folder*: a ``summary.csv`` with an ``id`` column; each row's structure is the file
  its ``cif`` column names, relative to the folder (``cif/<id>.cif`` as ``diffcrystal sample``
  writes it, ``<id>.cif`` as ``diffcrystal relax`` does), or ``<id>.cif`` when there is no
  ``cif`` column. A row with an empty ``cif`` (a sample that is no crystal) has no structure:
  it is skipped, or kept as a :class:`MissingStructure` with ``include_missing``;
- a folder of ``*.cif`` files (no summary): every CIF, sorted by name;
- a ``.cif`` file;
- an extended-XYZ file (``.xyz``/``.extxyz``; every frame, labelled by its ``label``/``id``
  info key or ``<stem>-<index>``).

A CIF that cannot be read is an :class:`InputError` naming the file and why (sites listed on
top of each other are named); with ``include_missing`` it becomes a :class:`MissingStructure`
with that reason instead, so one bad file does not stop the others.

Outputs are written atomically (a temporary file in the same folder, then ``os.replace``),
never onto an input path (:func:`check_not_input`), and into folders checked to be writable
before any work starts (:func:`check_output_folder`).
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from diffcrystal.atomic_write import atomic_write_text, probe_writable
from diffcrystal.errors import InputError

SUMMARY_NAME = "summary.csv"
"""The table of a sample folder; column ``id`` names each ``<id>.cif``."""

EXTXYZ_SUFFIXES = (".xyz", ".extxyz")

CIF_COLUMN = "cif"
"""Summary column holding each structure's CIF path, relative to the summary's folder."""

REASON_COLUMN = "invalid_reason"
"""Summary column (``diffcrystal sample``'s) saying why a sample is invalid or no crystal."""

RELAXATION_REASON_COLUMN = "reason"
"""Summary column (``diffcrystal relax``'s) saying why a relaxation left no structure."""


@dataclass(frozen=True)
class MissingStructure:
    """Stands in for the structure of a summary row that has none; ``reason`` says why."""

    reason: str


OVERLAP_DISTANCE_A = 0.5
"""Listed CIF sites closer than this (Å; :data:`~diffcrystal.symmetry.MIN_DISTANCE_A`) are
reported as sitting on top of each other when a CIF does not read."""


def _cif_number(text: str) -> float:
    """A CIF number without its uncertainty: ``'0.1234(5)'`` → 0.1234."""
    return float(re.sub(r"\(\d+\)$", "", text))


def overlapping_sites(path: Path) -> list[tuple[str, str, float]]:
    """``(label, label, distance in Å)`` of the sites listed in the CIF ``path`` that lie closer
    than :data:`OVERLAP_DISTANCE_A` (minimum image, before symmetry expansion); empty when the
    file has no such pairs or no readable site list."""
    import numpy as np
    from pymatgen.core import Lattice
    from pymatgen.io.cif import CifFile

    try:
        block = next(iter(CifFile.from_file(str(path)).data.values()))
        lattice = Lattice.from_parameters(*(_cif_number(block[f"_cell_{name}"]) for name in (
            "length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma")))
        labels = list(block["_atom_site_label"])
        frac = np.array([[_cif_number(v) for v in block[f"_atom_site_fract_{axis}"]] for axis in "xyz"]).T
    except Exception:  # no site list to inspect
        return []
    distances = lattice.get_all_distances(frac, frac)  # (N, N) minimum image, Å
    return [(labels[a], labels[b], float(distances[a, b])) for a in range(len(labels))
            for b in range(a + 1, len(labels)) if distances[a, b] < OVERLAP_DISTANCE_A]


def _read_cif(path: Path):
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen's parse warnings; the error below says why
            structure = Structure.from_file(str(path))
    except Exception as error:  # pymatgen raises many kinds on bad CIFs
        overlaps = overlapping_sites(path)
        if overlaps:
            pairs = ", ".join(f"{a} and {b} ({d:.2f} Å apart)" for a, b, d in overlaps[:3])
            raise InputError(f"{path}: cannot read CIF: sites on top of each other: {pairs}"
                             + (f" and {len(overlaps) - 3} more pairs" if len(overlaps) > 3 else "")) from None
        raise InputError(f"{path}: cannot read CIF ({type(error).__name__}: {error})") from None
    if not structure.is_ordered:
        raise InputError(f"{path}: structure has partial occupancies (disorder)")
    return AseAtomsAdaptor.get_atoms(structure)


def _read_cif_or_missing(path: Path, include_missing: bool):
    """The structure of the CIF ``path``; with ``include_missing`` a :class:`MissingStructure`
    giving the reason when it cannot be read (else the :class:`InputError`)."""
    try:
        return _read_cif(path)
    except InputError as error:
        if not include_missing:
            raise
        return MissingStructure(str(error))


def _read_sample_folder(folder: Path, include_missing: bool) -> list[tuple[str, object]]:
    summary = folder / SUMMARY_NAME
    with open(summary, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        rows = list(reader)
    if "id" not in columns:
        raise InputError(f"{summary}: no 'id' column")
    out = []
    for row_number, row in enumerate(rows, start=2):
        relative = row.get(CIF_COLUMN) if CIF_COLUMN in columns else f"{row['id']}.cif"
        if not relative:
            if include_missing:
                why = row.get(REASON_COLUMN) or row.get(RELAXATION_REASON_COLUMN) or "no reason given"
                out.append((str(row["id"]), MissingStructure(f"no structure in {summary.name}: {why}")))
            continue
        cif = folder / relative
        if not cif.is_file():
            raise InputError(f"{summary} row {row_number}: {relative} not found")
        out.append((str(row["id"]), _read_cif_or_missing(cif, include_missing)))
    return out


def _read_extxyz(path: Path) -> list[tuple[str, object]]:
    from ase.io import read

    try:
        frames = read(str(path), index=":")
    except Exception as error:
        raise InputError(f"{path}: cannot read extxyz ({type(error).__name__}: {error})") from None
    out = []
    for i, atoms in enumerate(frames):
        name = atoms.info.get("label", atoms.info.get("id", f"{path.stem}-{i}"))
        atoms.calc = None
        out.append((str(name), atoms))
    return out


def read_candidates(paths: Sequence[str | Path], include_missing: bool = False) -> list[tuple[str, object]]:
    """``(label, ase.Atoms)`` pairs from sample folders, CIF folders/files or extxyz files;
    with ``include_missing``, sample rows without a structure and CIFs that cannot be read
    come as ``(label,`` :class:`MissingStructure` ``)`` (without it they raise).

    Labels are made unique by suffixing ``-2``, ``-3``... when two inputs share one.
    """
    out: list[tuple[str, object]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            if (path / SUMMARY_NAME).is_file():
                out.extend(_read_sample_folder(path, include_missing))
            else:
                cifs = sorted(path.glob("*.cif"))
                if not cifs:
                    raise InputError(f"{path}: no {SUMMARY_NAME} and no *.cif files")
                out.extend((cif.stem, _read_cif_or_missing(cif, include_missing)) for cif in cifs)
        elif path.is_file() and path.suffix.lower() == ".cif":
            out.append((path.stem, _read_cif_or_missing(path, include_missing)))
        elif path.is_file() and path.suffix.lower() in EXTXYZ_SUFFIXES:
            out.extend(_read_extxyz(path))
        elif not path.exists():
            raise InputError(f"{path}: no such file or folder")
        else:
            raise InputError(f"{path}: expected a sample folder, a CIF folder, a .cif or an extxyz file")
    seen: dict[str, int] = {}
    unique = []
    for name, atoms in out:
        seen[name] = seen.get(name, 0) + 1
        unique.append((name if seen[name] == 1 else f"{name}-{seen[name]}", atoms))
    return unique


def input_paths(paths: Iterable[str | Path]) -> set[Path]:
    """Every file an input path stands for (resolved), to be protected from writes."""
    protected: set[Path] = set()
    for raw in paths:
        path = Path(raw).resolve()
        protected.add(path)
        if path.is_dir():
            protected.update(p.resolve() for p in path.iterdir())
    return protected


def check_output_folder(folder: Path) -> None:
    """Raise :class:`InputError` unless ``folder`` is, or can be created as, a writable folder,
    so an unusable ``--out`` fails before the work, not after it. Creates nothing: writability is
    proven with an anonymous temporary file in ``folder`` or its nearest existing parent."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == folder and not folder.is_dir():
        raise InputError(f"output folder {folder} is a file")
    if not existing.is_dir():
        raise InputError(f"cannot create output folder {folder}: {existing} is a file")
    try:
        probe_writable(existing)
    except OSError as error:
        where = "" if existing == folder else f" (in {existing})"
        raise InputError(f"output folder {folder} is not writable{where}: {error.strerror or error}") from None


def check_not_input(target: Path, protected: set[Path]) -> None:
    """Refuse to write ``target`` when it is one of the inputs."""
    if Path(target).resolve() in protected:
        raise InputError(f"refusing to overwrite input {target}; choose another --out")


def write_csv_atomic(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Write ``rows`` (dicts) with ``columns`` as a CSV, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())


def cif_text(atoms) -> str:
    """CIF text of an ASE ``Atoms`` (via pymatgen's writer, lattice kept)."""
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifWriter

    return str(CifWriter(AseAtomsAdaptor.get_structure(atoms)))

