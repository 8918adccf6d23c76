"""Many compositions, each one ``predict``, as tasks on a Dask distributed cluster (``diffcrystal screen``).

    compositions -> one task each (a Dask worker process runs :func:`~diffcrystal.prediction.predict`)
                 -> <out>/<formula>/  (exactly the folder ``predict`` writes)
                 -> <out>/screen.csv  (each composition's best structure, or why there is none)

- **Cluster**: the caller's ``client``, else ``scheduler`` (the address of a running one, e.g.
  started by ``dask-jobqueue`` on SLURM/PBS), else an embedded ``LocalCluster`` of ``workers``
  processes with one thread each and ``OMP_NUM_THREADS=1``.
- **Once per worker process**: the potential, the template library and the generator are
  loaded on a worker's first task and reused by its later ones (:func:`_loaded`).
- **Failures stay local**: a formula that cannot be read, an element the potential lacks, a
  composition without candidates or any exception in its task is a ``failed`` row with a
  one-line reason; the other compositions go on. A worker that dies (killed, out of memory)
  costs its running task, which the scheduler gives to another worker (Dask's
  ``distributed.scheduler.allowed-failures`` times, 3 by default).
- **Complete or absent**: a composition is written into ``.<formula>.partial`` and renamed
  to ``<formula>`` when its ``ranked.csv`` is there; ``resume`` keeps the finished folders
  (status ``resumed``), drops partial ones and runs the rest (finished relaxations are read
  from the relaxation cache).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from diffcrystal.errors import InputError
from diffcrystal.potential.calculators import DEFAULT_POTENTIAL
from diffcrystal.prediction import PredictSettings, load_library, needs_generator, predict

SCREEN_NAME = "screen.csv"
SCREEN_COLUMNS = [
    "composition", "formula", "status", "reason", "ranked", "source", "energy_per_atom_eV", "score_eV_atom",
    "e_above_hull_eV_atom", "space_group", "matches_known", "cif",
]
"""screen.csv: one row per input line; ``status`` is ``done``, ``resumed`` (finished by an
earlier run), ``no_structure`` (nothing relaxed to rank), ``failed`` or ``duplicate`` (the
same formula as an earlier line); the structure columns are rank 1 of its ``ranked.csv``
(``cif`` relative to the screen folder)."""

PARTIAL_SUFFIX = ".partial"

_LOADED: dict = {}
"""Per worker process: (what, options...) -> the loaded potential, template library or generator."""


def read_compositions(path: str | Path) -> list[str]:
    """Compositions of a text file (one per line; blank lines and ``#`` comments skipped) or
    of a CSV file's ``composition`` column (a file whose first line names that column)."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such compositions file {path}")
    lines = path.read_text().splitlines()
    header = next((line for line in lines if line.strip() and not line.lstrip().startswith("#")), "")
    if "composition" in [cell.strip() for cell in header.split(",")]:
        with open(path, newline="") as handle:
            rows = csv.DictReader(line for line in handle if not line.lstrip().startswith("#"))
            compositions = [(row.get("composition") or "").strip() for row in rows]
        compositions = [c for c in compositions if c]
    elif "," in header:
        raise InputError(f"{path}: a CSV needs a 'composition' column; its header is {header.strip()!r}")
    else:
        compositions = [line.split("#", 1)[0].strip() for line in lines]
        compositions = [c for c in compositions if c]
    if not compositions:
        raise InputError(f"{path} lists no composition")
    return compositions


def _loaded(what: str, *key):
    """``what`` (``potential``, ``library``, ``generator``) for ``key``, loaded once per process."""
    if (what, *key) not in _LOADED:
        if what == "potential":
            from diffcrystal.potential.calculators import resolve_potential

            value = resolve_potential(key[0], key[1])
        elif what == "library":  # key[2]: the table's SHA-256, so an edited table is read again
            value = load_library(key[0], Path(key[1]))
        else:
            from diffcrystal.generator import Generator

            value = Generator.from_checkpoint(Path(key[0]), device="cpu")
        _LOADED[(what, *key)] = value
    return _LOADED[(what, *key)]


def predict_into(composition: str, folder: str, record: dict, options: dict) -> tuple[str, str]:
    """Task of one composition: ``predict`` it into ``folder`` (via its ``.partial`` sibling)
    and return ``(status, reason)``; every exception becomes a ``failed`` status with its
    first line, so one composition never stops the others."""
    import torch

    from diffcrystal.prediction_folder import prepare_folder, write_prediction

    torch.set_num_threads(1)
    folder = Path(folder)
    partial = folder.with_name(f".{folder.name}{PARTIAL_SUFFIX}")
    try:
        shutil.rmtree(partial, ignore_errors=True)  # a killed earlier attempt
        settings = options["settings"]
        potential = _loaded("potential", options["potential"], options["device"])
        library = _loaded("library", options["templates"], options["checkpoint"], record["templates_sha256"])
        from diffcrystal.data.composition import parse_composition

        sampled = needs_generator(parse_composition(composition), library, settings)
        generator = _loaded("generator", options["checkpoint"]) if sampled else None
        prepare_folder(partial, record, resume=False)
        prediction = predict(composition, checkpoint=options["checkpoint"], templates=library, potential=potential,
                             settings=settings, hull=options["hull"], device=options["device"],
                             cache_dir=options["cache_dir"], generator=generator)
        write_prediction(prediction, partial, record)
        partial.rename(folder)
    except Exception as error:  # noqa: BLE001 - reported as the composition's row
        shutil.rmtree(partial, ignore_errors=True)
        first = (str(error).strip().splitlines() or [""])[0]
        return "failed", first if isinstance(error, InputError) else f"{type(error).__name__}: {first}".rstrip(": ")
    return ("done", "") if prediction.ranked else ("no_structure", "; ".join(prediction.notes))


def _check_resumable(folder: Path, record: dict) -> None:
    """Refuse (one-line :class:`InputError`) to keep a finished ``folder`` made with other
    options than ``record``'s (``predict --resume``'s rule)."""
    import json

    from diffcrystal.prediction_folder import RESUME_KEYS, RUN_NAME

    try:
        previous = json.loads((folder / RUN_NAME).read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"cannot resume {folder}: {RUN_NAME} is unreadable ({error})") from None
    for key in RESUME_KEYS:
        if key != "composition" and previous.get(key) != record.get(key):
            raise InputError(f"cannot resume {folder} with another {key.replace('_', ' ')}: "
                             f"the run used {previous.get(key)!r}, now {record.get(key)!r}")


def _best_row(out: Path, formula: str) -> dict:
    """The structure columns of screen.csv from ``out/formula/ranked.csv`` (rank 1)."""
    import csv

    from diffcrystal.prediction_folder import RANKED_NAME

    with open(out / formula / RANKED_NAME, newline="") as handle:
        ranked = list(csv.DictReader(handle))
    if not ranked:
        return {"ranked": 0}
    best = ranked[0]
    return {"ranked": len(ranked), "source": best["source"], "energy_per_atom_eV": best["energy_per_atom_eV"],
            "score_eV_atom": best["score_eV_atom"], "e_above_hull_eV_atom": best["e_above_hull_eV_atom"],
            "space_group": best["space_group"], "matches_known": best["matches_known"],
            "cif": f"{formula}/{best['cif']}"}


def start_client(workers: int | None = None, scheduler: str | None = None):
    """A Dask client: of the cluster at ``scheduler``, else of a new ``LocalCluster`` with
    ``workers`` processes (None: one per core), one thread each, ``OMP_NUM_THREADS=1``."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            return Client(scheduler, timeout="30s")
        except OSError as error:
            raise InputError(f"--scheduler: cannot reach {scheduler} ({error})") from None
    workers = workers if workers is not None else os.cpu_count() or 1
    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return Client(cluster)


def screen(compositions, client=None, *, out: str | Path = "screen", resume: bool = False,
           workers: int | None = None, scheduler: str | None = None, checkpoint: str | Path | None = None,
           templates: str | Path | None = None, potential: str = DEFAULT_POTENTIAL,
           settings: PredictSettings = PredictSettings(), hull: str | Path | None = None, device: str = "cpu",
           cache_dir: str | Path | None = None, progress: bool = False):
    """Predict every composition on a Dask cluster (module docstring); returns screen.csv's
    table (a pandas ``DataFrame``, one row per composition, in the given order).

    Parameters
    ----------
    compositions : formulas, e.g. ``['CuAu', 'NiAl']``.
    client : a ``distributed.Client`` to run on (None: ``scheduler``, else a local cluster of
        ``workers`` processes, closed at the end).
    out : the screen folder (one sub-folder per composition and ``screen.csv``); a folder that
        holds a composition's results is refused unless ``resume``.
    checkpoint, templates, potential, settings, hull, device, cache_dir : as for
        :func:`~diffcrystal.prediction.predict` (``potential`` by name or path).
    """
    import pandas as pd

    try:
        from distributed import as_completed
    except ImportError:
        raise InputError("screen needs Dask: pip install 'diffcrystal[screen]' (dask[distributed])") from None

    from diffcrystal.checkpoint import bundled_analogue_table, resolve_checkpoint
    from diffcrystal.data.composition import format_composition, parse_composition
    from diffcrystal.potential.calculators import resolve_potential
    from diffcrystal.potential.io import check_output_folder, write_csv_atomic
    from diffcrystal.prediction_folder import RANKED_NAME, run_record

    compositions = [str(c).strip() for c in compositions]
    if not compositions:
        raise InputError("screen: no composition given")
    if client is not None and (workers is not None or scheduler is not None):
        raise InputError("screen: give a client, or workers / scheduler to make one, not both")
    out = Path(out)
    check_output_folder(out)
    resolve_potential(potential, device)  # an unknown potential fails before any cluster starts
    if hull is not None and not Path(hull).is_file():
        raise InputError(f"--hull: no such dataset {hull}")
    checkpoint = resolve_checkpoint(checkpoint, "csp")
    templates = Path(templates) if templates else bundled_analogue_table(checkpoint)
    if templates is not None and not templates.is_file():
        raise InputError(f"--templates: no such table file {templates}")
    options = {"checkpoint": str(checkpoint), "templates": str(templates) if templates else None,
               "potential": potential, "settings": settings, "hull": str(hull) if hull else None,
               "device": device, "cache_dir": str(cache_dir) if cache_dir else None}
    base = run_record("", potential, hull, settings, checkpoint, templates)

    rows, todo, first_line = [], {}, {}
    for composition in compositions:
        row = {"composition": composition}
        rows.append(row)
        try:
            row["formula"] = formula = format_composition(parse_composition(composition))
        except InputError as error:
            row.update(status="failed", reason=str(error))
            continue
        if formula in first_line:
            row.update(status="duplicate", reason=f"same formula as {first_line[formula]!r}")
            continue
        first_line[formula] = composition
        if (out / formula / RANKED_NAME).is_file():
            if not resume:
                raise InputError(f"{out / formula} already holds a result; choose another --out, "
                                 "or --resume to keep finished compositions")
            _check_resumable(out / formula, {**base, "composition": composition})
            row["status"] = "resumed"
        elif (out / formula).exists():
            raise InputError(f"{out / formula} is in the way: it is no finished composition's folder")
        else:
            todo[formula] = row
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f".*{PARTIAL_SUFFIX}"):
        shutil.rmtree(stale)

    if todo:
        own = client is None
        client = start_client(workers, scheduler) if own else client
        try:
            futures = {client.submit(predict_into, row["composition"], str(out / formula),
                                     {**base, "composition": row["composition"]}, options,
                                     key=f"screen-{formula}", pure=False): row for formula, row in todo.items()}
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(futures), desc="compositions", unit="composition")
            for future in as_completed(futures):
                row = futures[future]
                try:
                    row["status"], row["reason"] = future.result()
                except Exception as error:  # noqa: BLE001 - the task's worker kept dying
                    row["status"], row["reason"] = "failed", f"{type(error).__name__}: {error}".splitlines()[0]
                if bar is not None:
                    bar.update()
                    bar.set_postfix_str(f"{row['formula']} {row['status']}")
            if bar is not None:
                bar.close()
        finally:
            if own:
                cluster = client.cluster
                client.close()
                if cluster is not None:
                    cluster.close()
    for row in rows:
        if row["status"] in ("done", "resumed", "no_structure"):
            row.update(_best_row(out, row["formula"]))
            if row["status"] == "resumed" and not row["ranked"]:
                row.update(status="no_structure", reason="nothing ranked in the earlier run (see its candidates.csv)")
    write_csv_atomic(out / SCREEN_NAME, rows, SCREEN_COLUMNS)
    numbers = ("ranked", "energy_per_atom_eV", "score_eV_atom", "e_above_hull_eV_atom")
    return pd.read_csv(out / SCREEN_NAME, keep_default_na=False, na_values={c: [""] for c in numbers},
                       dtype={c: str for c in SCREEN_COLUMNS if c not in numbers})
