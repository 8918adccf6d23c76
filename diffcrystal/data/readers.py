"""Reading crystal datasets: one entry point, :func:`read_crystals`, for every format.

Formats, chosen from the path:

=================  ============================================================================
``*.csv``          CDVAE-style table: one structure per row as a CIF string in the ``cif``
                   column (read with pandas, so multi-line quoted CIFs are safe). ``material_id``
                   becomes the label (as written: ``000123`` stays a string); other numeric
                   columns become ``properties`` (an unnamed index column is dropped,
                   missing values are left out).
folder             every ``*.cif`` file directly inside it (not recursive), in name order.
``*.cif``          one CIF file (each data block is one structure).
``*.extxyz/.xyz``  extended XYZ frames (ASE); numeric ``info`` entries and a stored energy
                   become properties; ``material_id`` or ``id`` (what ``diffcrystal sample``
                   writes) becomes the label, read as the string written (``000123`` stays
                   ``'000123'``). Frames without a full periodic cell are skipped.
``*.db``           an ASE database; numeric key-value pairs and a stored energy become
                   properties.
=================  ============================================================================

Every entry is parsed, checked (:class:`~diffcrystal.data.crystal.Crystal`), optionally
ordered (:func:`~diffcrystal.data.canonical.order_by_majority`) and reduced to its canonical
cell (:func:`~diffcrystal.data.canonical.canonicalize`) in a process pool. An entry that
fails (malformed CIF, empty file, degenerate lattice, NaN coordinates, unknown element,
partial occupancy without ``order_disorder``, two atoms or an atom and its own periodic
image closer than :data:`~diffcrystal.symmetry.MIN_DISTANCE_A`) becomes a
:class:`SkippedEntry` naming its file and row and the reason in one line; the loader logs a
warning with the count. Results are cached (:mod:`diffcrystal.data.cache`), keyed on the source bytes and the options.
"""

from __future__ import annotations

import io
import logging
import math
import multiprocessing
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from diffcrystal.data import cache as cache_store
from diffcrystal.data.canonical import canonicalize, order_by_majority
from diffcrystal.data.crystal import Crystal, CrystalError
from diffcrystal.errors import InputError

logger = logging.getLogger(__name__)

Format = Literal["csv", "cif", "cif_dir", "extxyz", "ase_db"]

SUFFIX_FORMATS: dict[str, Format] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".cif": "cif",
    ".extxyz": "extxyz",
    ".xyz": "extxyz",
    ".db": "ase_db",
}
"""File suffix (lower case) -> format; a folder is read as ``'cif_dir'``. A gzipped CSV
(``.csv.gz``, what pandas reads directly) is a fifth of the size, e.g. to carry MP-20."""

CIF_COLUMN = "cif"
"""Column holding the CIF text in a CDVAE-style CSV."""

ID_COLUMN = "material_id"
"""Column (CSV) or key (extxyz info, ASE db key-value pairs) used as the crystal's label."""

SAMPLE_ID_KEY = "id"
"""extxyz ``info`` key of the sample id written by ``diffcrystal sample``; the label when
there is no :data:`ID_COLUMN`."""

DEFAULT_MAX_WORKERS = 2
"""Default number of worker processes is ``min(DEFAULT_MAX_WORKERS, cpu count)``."""

MIN_ENTRIES_FOR_POOL = 64
"""Below this many entries the work is done in-process: starting workers (each imports
pymatgen, ~1 s) costs more than it saves."""

CHUNKS_PER_WORKER = 16
"""Entries are sent to workers in about this many chunks per worker (progress granularity)."""

MAX_REASON_CHARS = 300
"""A skip reason is cut to this many characters (one line)."""

MAX_WARNINGS_IN_REASON = 3
"""At most this many distinct parser warnings are appended to a skip reason."""


@dataclass(frozen=True)
class SkippedEntry:
    """An entry that could not be read: ``source`` (file name and row/frame/id, rows and
    frames counted from 0) and ``reason`` (one line)."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class ReadResult:
    """What :func:`read_crystals` returns.

    ``crystals`` in source order, ``skipped`` entries in source order, the ``source`` path,
    ``from_cache`` (whether the cache answered) and ``seconds`` (wall time of the load).
    """

    crystals: list[Crystal]
    skipped: list[SkippedEntry] = field(default_factory=list)
    source: Path | None = None
    from_cache: bool = False
    seconds: float = 0.0

    @property
    def num_entries(self) -> int:
        """Entries found in the source: read plus skipped."""
        return len(self.crystals) + len(self.skipped)


@dataclass(frozen=True)
class _Options:
    canonical: bool
    order_disorder: bool


@dataclass(frozen=True)
class _RawEntry:
    """One unparsed entry: ``kind`` says what ``payload`` is (CIF text, a CIF file path, an
    extxyz frame's text, an ASE ``Atoms``)."""

    source: str
    label: str
    properties: dict[str, Any]
    kind: Literal["cif_text", "cif_file", "xyz_frame", "atoms"]
    payload: Any


# ---------------------------------------------------------------------------------- helpers
def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 3] + "..."


def _error_reason(error: BaseException, caught: list) -> str:
    message = str(error).strip() or type(error).__name__
    if not isinstance(error, (InputError, ValueError)):
        message = f"{type(error).__name__}: {message}"
    notes = list(dict.fromkeys(_one_line(w.message) for w in caught))[:MAX_WARNINGS_IN_REASON]
    if notes:
        message += f" (parser warnings: {'; '.join(notes)})"
    return _one_line(message)


def _scalar_number(value: Any) -> int | float | bool | None:
    """``value`` as a Python int/float/bool if it is a finite scalar number, else ``None``."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    return None


def _numeric_items(mapping: dict, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    kept = {}
    for key, value in mapping.items():
        number = _scalar_number(value)
        if key not in exclude and number is not None:
            kept[str(key)] = number
    return kept


def detect_format(path: str | os.PathLike) -> Format:
    """The format of ``path``: a folder is ``'cif_dir'``, a file goes by its suffix
    (:data:`SUFFIX_FORMATS`)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file or folder: {path}")
    if path.is_dir():
        return "cif_dir"
    suffix = "".join(path.suffixes[-2:]) if path.suffix.lower() == ".gz" else path.suffix
    fmt = SUFFIX_FORMATS.get(suffix.lower())
    if fmt is None:
        raise InputError(
            f"cannot tell the format of {path.name}: expected a folder of .cif files or a file "
            f"ending in {', '.join(SUFFIX_FORMATS)}"
        )
    return fmt


def _source_files(path: Path, fmt: Format) -> list[tuple[str, Path]]:
    """``(name, file)`` pairs whose bytes define the dataset (and its cache key)."""
    if fmt == "cif_dir":
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".cif")
        return [(p.name, p) for p in files]
    return [(path.name, path)]


# ---------------------------------------------------------------------------- collecting
def _csv_entries(path: Path) -> tuple[list[_RawEntry], list[SkippedEntry]]:
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype={ID_COLUMN: str})  # ids as written: 000123 stays a string
    except Exception as error:  # pandas raises several types for malformed files
        raise InputError(f"{path.name}: cannot read as CSV: {_one_line(error)}") from error
    if CIF_COLUMN not in table.columns:
        raise InputError(
            f"{path.name}: no {CIF_COLUMN!r} column (columns: {', '.join(map(str, table.columns))})"
        )
    property_columns = [
        column for column in table.columns
        if column not in (CIF_COLUMN, ID_COLUMN)
        and not (str(column) == "" or str(column).startswith("Unnamed:"))
        and pd.api.types.is_numeric_dtype(table[column])
    ]
    cifs = table[CIF_COLUMN].tolist()
    ids = table[ID_COLUMN].tolist() if ID_COLUMN in table.columns else [None] * len(table)
    columns = {str(c): table[c].to_numpy() for c in property_columns}
    entries = []
    for row, (cif, material_id) in enumerate(zip(cifs, ids)):
        has_id = material_id is not None and not (isinstance(material_id, float) and math.isnan(material_id))
        source = f"{path.name} row {row}" + (f" ({ID_COLUMN} {material_id})" if has_id else "")
        label = str(material_id) if has_id else f"{path.name} row {row}"
        properties = _numeric_items({name: values[row] for name, values in columns.items()})
        text = cif if isinstance(cif, str) else ""
        entries.append(_RawEntry(source, label, properties, "cif_text", text))
    return entries, []


def _cif_dir_entries(path: Path) -> tuple[list[_RawEntry], list[SkippedEntry]]:
    entries = [
        _RawEntry(name, Path(name).stem, {}, "cif_file", str(file))
        for name, file in _source_files(path, "cif_dir")
    ]
    return entries, []


def _extxyz_entries(path: Path) -> tuple[list[_RawEntry], list[SkippedEntry]]:
    """Split an (ext)xyz file into frames (count line, comment line, one line per atom), so
    that a malformed frame is skipped alone; a broken count line ends the splitting."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path.name}: cannot read: {_one_line(error)}") from error
    entries, skipped = [], []
    line, frame = 0, 0
    while line < len(lines):
        if not lines[line].strip():
            line += 1
            continue
        source = f"{path.name} frame {frame} (line {line + 1})"
        try:
            count = int(lines[line].strip())
            if count < 1:
                raise ValueError
        except ValueError:
            skipped.append(SkippedEntry(
                source,
                _one_line(f"expected a positive atom count, found {lines[line].strip()!r}; "
                          "the rest of the file cannot be split into frames"),
            ))
            break
        block = lines[line: line + count + 2]
        if len(block) < count + 2:
            skipped.append(SkippedEntry(
                source, f"truncated frame: {count} atoms announced, file ends after {len(block) - 2}"
            ))
            break
        text = "\n".join(block) + "\n"
        entries.append(_RawEntry(source, f"{path.name} frame {frame}", {}, "xyz_frame", text))
        line += count + 2
        frame += 1
    return entries, skipped


def _ase_db_entries(path: Path) -> tuple[list[_RawEntry], list[SkippedEntry]]:
    import ase.db

    try:
        database = ase.db.connect(str(path), type="db")
        rows = list(database.select())
    except Exception as error:
        raise InputError(f"{path.name}: cannot open as an ASE database: {_one_line(error)}") from error
    entries, skipped = [], []
    for row in rows:
        source = f"{path.name} id {row.id}"
        try:
            atoms = row.toatoms()
        except Exception as error:
            skipped.append(SkippedEntry(source, _error_reason(error, [])))
            continue
        pairs = dict(row.key_value_pairs)
        label = str(pairs[ID_COLUMN]) if ID_COLUMN in pairs else source
        properties = _numeric_items(pairs, exclude=(ID_COLUMN,))
        energy = _scalar_number(row.get("energy"))
        if energy is not None:
            properties.setdefault("energy", energy)
        entries.append(_RawEntry(source, label, properties, "atoms", atoms))
    return entries, skipped


def _cif_file_entries(path: Path) -> tuple[list[_RawEntry], list[SkippedEntry]]:
    return [_RawEntry(path.name, path.stem, {}, "cif_file", str(path))], []


_COLLECTORS = {
    "csv": _csv_entries,
    "cif": _cif_file_entries,
    "cif_dir": _cif_dir_entries,
    "extxyz": _extxyz_entries,
    "ase_db": _ase_db_entries,
}


# ---------------------------------------------------------------------------- converting
def _raw_value(line: str, key: str) -> str | None:
    """The text of ``key=value`` in an extxyz comment line, quotes removed, unconverted."""
    match = re.search(rf'(?:^|\s){re.escape(key)}=(?:"([^"]*)"|\'([^\']*)\'|(\S*))', line)
    if match is None:
        return None
    return next(group for group in match.groups() if group is not None)


def _comment_line_values(line: str) -> dict[str, Any]:
    """ASE's parse of an extxyz comment line, but with the id keys kept as the strings
    written: ASE reads ``id=000123`` as the integer 123."""
    from ase.io.extxyz import key_val_str_to_dict

    values = key_val_str_to_dict(line)
    for key in (ID_COLUMN, SAMPLE_ID_KEY):
        raw = _raw_value(line, key) if key in values else None
        if raw is not None:
            values[key] = raw
    return values


def _check_distances(structure, min_distance_A: float) -> None:
    """Raise :class:`CrystalError` when two atoms, or an atom and its own periodic image,
    are closer than ``min_distance_A`` (Å).

    An LLL-reduced basis vector shorter than the bound is an image distance below it; when
    there is none, the shortest lattice vector is at least half the bound (LLL, 3-D), so the
    neighbour search within the bound stays small even for a degenerate cell.
    """
    import numpy as np

    lengths = np.linalg.norm(structure.lattice.lll_matrix, axis=1)  # (3,), Å
    if lengths.min() < min_distance_A:
        raise CrystalError(
            f"atoms too close to their own periodic image: {lengths.min():.3g} Å (a lattice "
            f"vector shorter than the minimum interatomic distance {min_distance_A} Å)"
        )
    centers, neighbors, _, distances = structure.get_neighbor_list(r=min_distance_A)
    close = distances < min_distance_A
    if close.any():
        k = int(np.argmin(np.where(close, distances, np.inf)))
        i, j = int(centers[k]), int(neighbors[k])
        pair = (f"atom {i} ({structure[i].specie}) and its own periodic image" if i == j else
                f"atom {i} ({structure[i].specie}) and atom {j} ({structure[j].specie})")
        raise CrystalError(
            f"atoms too close: {pair} {distances[k]:.3g} Å apart (minimum interatomic "
            f"distance {min_distance_A} Å)"
        )


def _parse_cif(text: str) -> list:
    """pymatgen ``Structure``s of every data block of ``text``, as given (no reduction)."""
    from pymatgen.io.cif import CifParser

    if not text.strip():
        raise CrystalError("empty CIF")
    return CifParser.from_str(text).parse_structures(primitive=False, on_error="raise")


def _from_atoms(atoms, entry: _RawEntry, label: str) -> tuple[list, dict, str]:
    crystal = Crystal.from_atoms(atoms, label=label)
    properties = dict(entry.properties)
    properties.update(_numeric_items(atoms.info, exclude=(ID_COLUMN, SAMPLE_ID_KEY)))
    if atoms.calc is not None:
        properties.update(_numeric_items(atoms.calc.results))
    return [crystal.to_structure()], properties, label


def _to_structures(entry: _RawEntry) -> tuple[list, dict, str]:
    """Parse ``entry`` into pymatgen structures, its properties and its label."""
    if entry.kind == "cif_text":
        return _parse_cif(entry.payload), entry.properties, entry.label
    if entry.kind == "cif_file":
        file = Path(entry.payload)
        if file.stat().st_size == 0:
            raise CrystalError("empty file")
        return _parse_cif(file.read_text(errors="replace")), entry.properties, entry.label
    if entry.kind == "xyz_frame":
        import ase.io

        atoms = ase.io.read(io.StringIO(entry.payload), format="extxyz",
                            properties_parser=_comment_line_values)
        label = atoms.info.get(ID_COLUMN, atoms.info.get(SAMPLE_ID_KEY, entry.label))
        return _from_atoms(atoms, entry, str(label))
    return _from_atoms(entry.payload, entry, entry.label)


def _structure_to_crystal(structure, label: str, properties: dict, options: _Options) -> Crystal:
    from pymatgen.core import DummySpecies

    from diffcrystal.symmetry import MIN_DISTANCE_A

    unknown = sorted({sp.symbol for sp in structure.composition if isinstance(sp, DummySpecies)})
    if unknown:
        raise CrystalError(f"unknown element {', '.join(map(repr, unknown))}")
    if not structure.is_ordered:
        if not options.order_disorder:
            raise CrystalError(
                f"partial occupancy (disorder, composition {structure.composition.formula}); "
                "read with order_disorder=True to order it"
            )
        structure = order_by_majority(structure)
    crystal = Crystal.from_structure(structure, label=label, properties=properties)
    _check_distances(structure, MIN_DISTANCE_A)
    return canonicalize(crystal) if options.canonical else crystal


def _convert(entry: _RawEntry, options: _Options) -> list[Crystal | SkippedEntry]:
    """Parse, check and (optionally) canonicalise one entry; never raises for bad data."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            structures, properties, label = _to_structures(entry)
            results: list[Crystal | SkippedEntry] = []
            for block, structure in enumerate(structures):
                suffix = f"#{block}" if len(structures) > 1 else ""
                try:
                    results.append(_structure_to_crystal(structure, label + suffix, properties, options))
                except Exception as error:
                    results.append(SkippedEntry(entry.source + suffix, _error_reason(error, [])))
            return results
        except Exception as error:
            return [SkippedEntry(entry.source, _error_reason(error, caught))]


def default_workers() -> int:
    """``min(DEFAULT_MAX_WORKERS, cpu count)``."""
    return min(DEFAULT_MAX_WORKERS, os.cpu_count() or 1)


def _start_method() -> str:
    """``'fork'`` where it is safe (Linux): workers need no ``if __name__ == '__main__'``
    guard in the caller's script and do not re-import pymatgen. Elsewhere (macOS, Windows)
    the platform default, ``'spawn'``: scripts calling :func:`read_crystals` with more than
    one worker must then use that guard."""
    if sys.platform.startswith("linux"):
        return "fork"
    return multiprocessing.get_start_method()


def parallel_map(function: Callable, items: Sequence, *, workers: int | None = None,
                 progress: bool = True, description: str = "") -> list:
    """``[function(item) for item in items]`` in order, in a pool of ``workers`` processes
    (default :func:`default_workers`; 0 or 1, or fewer than :data:`MIN_ENTRIES_FOR_POOL`
    items, run in-process), with a tqdm bar when ``progress`` and stderr is a terminal.
    ``function`` must be picklable (a module-level function or a ``partial`` of one)."""
    from tqdm.auto import tqdm

    workers = default_workers() if workers is None else workers
    # progress=True shows the bar on a terminal only (tqdm's disable=None).
    bar = tqdm(total=len(items), desc=description, unit="item", disable=None if progress else True)
    results = []
    try:
        if workers <= 1 or len(items) < MIN_ENTRIES_FOR_POOL:
            for item in items:
                results.append(function(item))
                bar.update()
        else:
            context = multiprocessing.get_context(_start_method())
            chunksize = max(1, len(items) // (workers * CHUNKS_PER_WORKER))
            with context.Pool(workers) as pool:
                for result in pool.imap(function, items, chunksize=chunksize):
                    results.append(result)
                    bar.update()
    finally:
        bar.close()
    return results


# ---------------------------------------------------------------------------- entry point
def read_crystals(
    path: str | os.PathLike,
    *,
    canonical: bool = True,
    order_disorder: bool = False,
    workers: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> ReadResult:
    """Read every structure of a dataset (CSV, CIF folder or file, extxyz, ASE db).

    Parameters
    ----------
    path : the dataset; its format comes from :func:`detect_format`.
    canonical : reduce each structure to its primitive, Niggli-reduced cell; ``False``
        keeps the cell as given.
    order_disorder : order partially occupied structures by majority species
        (:func:`~diffcrystal.data.canonical.order_by_majority`) instead of skipping them.
    workers : worker processes; default ``min(2, cpu count)``; 0 or 1 works in-process.
    cache : read from / write to the cache (keyed on the source bytes and these options).
    cache_dir : cache folder; default ``$DIFFCRYSTAL_CACHE`` or ``~/.cache/diffcrystal``.
    progress : show a progress bar (on a terminal).

    Returns
    -------
    ReadResult
        ``crystals`` (lattice (3, 3) Å, frac (N, 3), numbers (N,)) and ``skipped`` entries.

    Raises
    ------
    InputError
        When the path is missing or of an unknown format, the file cannot be read at all,
        it holds no entries, or no entry could be read.
    """
    start = time.perf_counter()
    path = Path(path)
    fmt = detect_format(path)
    options = _Options(canonical=bool(canonical), order_disorder=bool(order_disorder))
    files = _source_files(path, fmt)
    if fmt == "cif_dir" and not files:
        raise InputError(f"folder {path} holds no .cif files")

    entry_file = None
    if cache:
        key = cache_store.cache_key(
            files, {"format": fmt, "canonical": options.canonical, "order_disorder": options.order_disorder}
        )
        entry_file = cache_store.cache_file(Path(cache_dir) if cache_dir else cache_store.default_cache_dir(),
                                            path, key)
        cached = cache_store.load(entry_file, key)
        if cached is not None:
            crystals, pairs = cached
            result = ReadResult(crystals, [SkippedEntry(*pair) for pair in pairs], path, True)
            return _finish(result, start)

    entries, skipped = _COLLECTORS[fmt](path)
    if not entries and not skipped:
        raise InputError(f"{path.name}: no structures found")
    converted = [
        item
        for items in parallel_map(partial(_convert, options=options), entries, workers=workers,
                                  progress=progress, description=f"reading {path.name}")
        for item in items
    ]
    crystals = [item for item in converted if isinstance(item, Crystal)]
    # Entries the collector could not split off (a broken extxyz tail) go last.
    skipped = [item for item in converted if isinstance(item, SkippedEntry)] + skipped
    if not crystals:
        first = skipped[0] if skipped else SkippedEntry(path.name, "no entries")
        raise InputError(
            f"{path.name}: none of the {len(skipped)} entries could be read; first: {first}"
        )
    result = ReadResult(crystals, skipped, path, False)
    if entry_file is not None:
        try:
            cache_store.save(entry_file, key, crystals, [(s.source, s.reason) for s in skipped])
        except OSError as error:
            logger.warning("could not write cache file %s: %s", entry_file, error)
    return _finish(result, start)


def _finish(result: ReadResult, start: float) -> ReadResult:
    result.seconds = time.perf_counter() - start
    if result.skipped:
        logger.warning(
            "%s: skipped %d of %d entries (first: %s)",
            result.source.name, len(result.skipped), result.num_entries, result.skipped[0],
        )
    return result
