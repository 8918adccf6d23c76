"""The folder ``diffcrystal predict`` writes, and resuming it.

- ``run.json``: composition, checkpoint, template table and potential (with their SHA-256),
  every setting, the analogues used, notes, wall seconds and potential steps. Written first
  (without results), so an interrupted run can be resumed with the same options.
- ``candidates.csv``: every candidate: source, the analogue behind it and its distance, what
  became of it (``duplicate`` of another before relaxing, ``pruned`` by the funnel,
  ``converged``, ``not_converged``, ``exploded``, ``failed``), steps, energy, score, rank.
- ``ranked.csv``: the distinct relaxed structures, best first (:data:`RANKED_COLUMNS`);
  written last, so its presence marks a finished run.
- ``cif/rank-NN_<label>.cif``: each ranked structure as relaxed.
- ``overview.png``: score and energy of the ranked structures, coloured by source.

Resuming (``--resume``) recomputes the candidates (same seed, same structures) and reads every
relaxation stage that finished from the relaxation cache, so only unfinished work is redone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.candidates import SOURCES
from diffcrystal.errors import InputError
from diffcrystal.output_folder import check_no_earlier_output, earlier_outputs, fresh_folder
from diffcrystal.potential.io import check_output_folder, write_csv_atomic

RUN_NAME = "run.json"
RANKED_NAME = "ranked.csv"
CANDIDATES_NAME = "candidates.csv"
CIF_FOLDER = "cif"
OVERVIEW_NAME = "overview.png"

RANKED_COLUMNS = [
    "rank", "label", "source", "sources", "energy_per_atom_eV", "score_eV_atom", "e_above_hull_eV_atom",
    "space_group", "space_group_number", "converged", "matches_known", "analogue", "analogue_distance",
    "num_atoms", "members", "cif",
]
CANDIDATE_COLUMNS = [
    "label", "source", "analogue", "analogue_distance", "template_e_above_hull_eV_atom", "type_vote", "status",
    "duplicate_of", "rank", "steps", "energy_per_atom_eV", "score_eV_atom", "space_group", "reason",
]

RESUME_KEYS = ("composition", "num_atoms", "checkpoint_sha256", "templates_sha256", "potential", "settings", "hull")
"""run.json entries that must agree for ``--resume``."""


def _number(value: float, digits: int = 6) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


PREDICTION_OUTPUTS = (RUN_NAME, CANDIDATES_NAME, RANKED_NAME)
"""Files whose presence marks a folder as holding a prediction (run.json comes first)."""


def default_folder(formula: str, root: Path = Path("predictions")) -> Path:
    """``predictions/<formula>``, or ``<formula>-2``, ``-3``, ... when that one holds a prediction."""
    return fresh_folder(root / formula, PREDICTION_OUTPUTS)


def prepare_folder(out_dir: Path, record: dict, resume: bool) -> None:
    """Check ``out_dir`` before any work and write ``record`` as its run.json. An earlier
    prediction there is refused unless ``resume``; a resumed one must have the same options
    (one-line :class:`InputError` naming the first difference)."""
    out_dir = Path(out_dir)
    check_output_folder(out_dir)
    run_path = out_dir / RUN_NAME
    if not resume:
        check_no_earlier_output(out_dir, PREDICTION_OUTPUTS, "a prediction (--resume continues it)")
    elif run_path.is_file():
        try:
            previous = json.loads(run_path.read_text())
        except ValueError as error:
            raise InputError(f"cannot resume {out_dir}: {RUN_NAME} is unreadable ({error})") from None
        for key in RESUME_KEYS:
            if previous.get(key) != record.get(key):
                raise InputError(f"cannot resume {out_dir} with another {key.replace('_', ' ')}: "
                                 f"the run used {previous.get(key)!r}, now {record.get(key)!r}")
    elif earlier_outputs(out_dir, PREDICTION_OUTPUTS):
        raise InputError(f"cannot resume {out_dir}: it holds prediction files but no {RUN_NAME}")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_path, json.dumps(record, indent=2) + "\n")


def json_safe(value):
    """``value`` with tuples as lists and NaN as ``"nan"`` (so run.json compares equal after a
    JSON round trip)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and value != value:
        return "nan"
    return value


def run_record(composition: str, potential: str, hull: Path | None, settings, checkpoint: Path,
               templates: Path | None, num_atoms: int | None = None) -> dict:
    """What run.json records before any work: the inputs with their SHA-256 and every setting
    (:data:`RESUME_KEYS` must agree for ``--resume``)."""
    from dataclasses import asdict

    from diffcrystal.checkpoint import file_sha256

    return {
        "composition": composition, "num_atoms": num_atoms, "checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint),
        "templates": str(templates) if templates else None,
        "templates_sha256": file_sha256(templates) if templates else None,
        "potential": str(potential), "hull": str(hull) if hull else None,
        "settings": json_safe(asdict(settings)),
    }


def candidate_rows(prediction) -> list[dict]:
    ranks = {label: entry.rank for entry in prediction.ranked for label in entry.members}
    rows = []
    for outcome in prediction.outcomes:
        c, r = outcome.candidate, outcome.result
        rows.append({
            "label": c.label, "source": c.source, "analogue": c.analogue,
            "analogue_distance": _number(c.analogue_distance, 4),
            "template_e_above_hull_eV_atom": _number(c.template_e_above_hull, 4),
            "type_vote": _number(c.type_vote, 3),
            "status": outcome.status, "duplicate_of": outcome.duplicate_of, "rank": ranks.get(c.label, ""),
            "steps": r.steps if r is not None else "", "energy_per_atom_eV": _number(r.energy_per_atom) if r else "",
            "score_eV_atom": _number(outcome.score), "space_group": r.space_group if r else "",
            "reason": r.reason if r else "",
        })
    return rows


def cif_name(entry) -> str:
    return f"rank-{entry.rank:02d}_{entry.best.candidate.label}.cif"


def ranked_rows(prediction) -> list[dict]:
    rows = []
    for entry in prediction.ranked:
        c, r = entry.best.candidate, entry.best.result
        rows.append({
            "rank": entry.rank, "label": c.label, "source": c.source, "sources": "+".join(entry.sources),
            "energy_per_atom_eV": _number(r.energy_per_atom), "score_eV_atom": _number(entry.score),
            "e_above_hull_eV_atom": _number(entry.e_above_hull), "space_group": r.space_group,
            "space_group_number": r.space_group_number, "converged": entry.converged,
            "matches_known": entry.matches_known, "analogue": c.analogue,
            "analogue_distance": _number(c.analogue_distance, 4), "num_atoms": r.num_atoms,
            "members": " ".join(entry.members), "cif": f"{CIF_FOLDER}/{cif_name(entry)}",
        })
    return rows


def plot_prediction(prediction, path: Path) -> None:
    """Score and energy per atom (relative to the best) against rank, by source (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    if prediction.ranked:
        best_score = prediction.ranked[0].score
        best_energy = min(e.energy_per_atom for e in prediction.ranked)
        for i, source in enumerate(SOURCES):
            points = [e for e in prediction.ranked if e.best.candidate.source == source]
            if points:
                colour = plt.get_cmap("tab10")(i)
                axes.scatter([e.rank for e in points], [1e3 * (e.score - best_score) for e in points],
                             color=colour, label=f"{source}: score", s=30)
                axes.scatter([e.rank for e in points], [1e3 * (e.energy_per_atom - best_energy) for e in points],
                             color=colour, marker="x", label=f"{source}: energy", s=20)
        known = [e for e in prediction.ranked if e.matches_known]
        if known:
            axes.scatter([e.rank for e in known], [1e3 * (e.score - best_score) for e in known], s=90,
                         facecolors="none", edgecolors="black", label="a known crystal")
        axes.legend(fontsize=7)
    axes.set_xlabel("rank")
    axes.set_ylabel("meV/atom above the best")
    axes.set_title(f"{prediction.composition}: {len(prediction.ranked)} distinct relaxed structures "
                   f"({prediction.potential.split('/')[-1]})", fontsize=9)
    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=120)
    plt.close(figure)
    temporary.replace(path)


def write_prediction(prediction, out_dir: Path, record: dict) -> None:
    """Write the results of ``prediction`` into ``out_dir`` (module docstring), ranked.csv last."""
    from pymatgen.io.cif import CifWriter

    out_dir = Path(out_dir)
    (out_dir / CIF_FOLDER).mkdir(parents=True, exist_ok=True)
    for entry in prediction.ranked:
        atomic_write_text(out_dir / CIF_FOLDER / cif_name(entry), str(CifWriter(entry.structure)))
    write_csv_atomic(out_dir / CANDIDATES_NAME, candidate_rows(prediction), CANDIDATE_COLUMNS)
    plot_prediction(prediction, out_dir / OVERVIEW_NAME)
    record = {**record, "analogues": [
        {"template": a.template.label, "mendeleev_distance": round(a.distance, 4),
         "spacegroup": a.assignment().spacegroup} for a in prediction.analogues],
        "notes": prediction.notes, "seconds": {k: round(v, 2) for k, v in prediction.seconds.items()},
        "relax_steps": prediction.relax_steps, "relax_steps_cap": prediction.relax_steps_cap}
    atomic_write_text(out_dir / RUN_NAME, json.dumps(record, indent=2) + "\n")
    write_csv_atomic(out_dir / RANKED_NAME, ranked_rows(prediction), RANKED_COLUMNS)
