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

Outputs are written atomically (a temporary file in the same folder, then ``os.replace``),
never onto an input path (:func:`check_not_input`), and into folders checked to be writable
before any work starts (:func:`check_output_folder`).
"""

from __future__ import annotations

import csv
import io
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


@dataclass(frozen=True)
class MissingStructure:
    """Stands in for the structure of a summary row that has none; ``reason`` says why."""

    reason: str


def _read_cif(path: Path):
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.core import Structure

    try:
        structure = Structure.from_file(str(path))
    except Exception as error:  # pymatgen raises many kinds on bad CIFs
        raise InputError(f"{path}: cannot read CIF ({type(error).__name__}: {error})") from None
    if not structure.is_ordered:
        raise InputError(f"{path}: structure has partial occupancies (disorder)")
    return AseAtomsAdaptor.get_atoms(structure)


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
                why = row.get(REASON_COLUMN) or "no reason given"
                out.append((str(row["id"]), MissingStructure(f"no structure in {summary.name}: {why}")))
            continue
        cif = folder / relative
        if not cif.is_file():
            raise InputError(f"{summary} row {row_number}: {relative} not found")
        out.append((str(row["id"]), _read_cif(cif)))
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
    with ``include_missing``, sample rows without a structure come as ``(label,``
    :class:`MissingStructure` ``)``.

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
                out.extend((cif.stem, _read_cif(cif)) for cif in cifs)
        elif path.is_file() and path.suffix.lower() == ".cif":
            out.append((path.stem, _read_cif(path)))
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
