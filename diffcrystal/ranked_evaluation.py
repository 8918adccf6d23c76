"""Scoring ``predict`` as a user meets it: does the top of the ranked answer match the real
structure? (``diffcrystal evaluate --ranked``, ``scripts/calibrate_ranking.py``.)

For every target crystal, ``predict`` runs on its composition alone, or, as the CSP benchmarks
pose the task, on its composition and its cell's atom count (``given_atoms``), and each ranked structure and each unrelaxed candidate is compared with the target by
the protocol's matcher (:func:`~diffcrystal.metrics.csp.compare_with_target`). One JSON record
per target is appended to ``records.jsonl`` as soon as it is done (an interrupted evaluation
resumes after the last finished target; records name the relaxation optimizer and the
candidate counts per source, and a resume with other ones is refused). A record keeps, per ranked structure, the score's
inputs (relaxed energy per atom, analogue distance, the template's energy above the hull, the
atom count of its cell, its structure type's vote), so
the ranking can be re-scored with other weights without relaxing again
(:func:`rescored_results`): this is how the weights are calibrated on validation targets.

Figures (:func:`ranked_metrics`):

- **ranked @k**: a target counts when one of the first ``k`` ranked structures matches it
  (``k = 1``: the answer); ``precise`` when that match has RMSE < 0.1. The ``metrics.json`` of
  :class:`~diffcrystal.metrics.csp.CSPMetrics` holds them (``per_target``: ``matched_at_k``,
  ``best_rms``).
- **unranked sources on the same targets**: the first candidate of each source before
  relaxation (the nearest template is the ``analogue`` baseline without the atom count), and
  whether any candidate of a source matched.
- **METRe / cRMSE** of the answers @1 (:mod:`diffcrystal.metrics.polymorph`; see
  :func:`answer_polymorph_metrics` for targets that share a composition).
- CPU seconds per target.
"""

from __future__ import annotations

import gzip
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from diffcrystal.candidates import SOURCE_COUNTS, SOURCES
from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError
from diffcrystal.metrics.csp import (
    MATCHER_ANGLE_TOL_DEG,
    MATCHER_LTOL,
    MATCHER_STOL,
    PRECISE_RMSE_THRESHOLDS,
    CSPMetrics,
    PairResult,
    TargetResult,
    compare_with_target,
)
from diffcrystal.ranking import RankingScore, fits_atom_count

RECORDS_NAME = "records.jsonl"


def _pair(result: PairResult) -> dict:
    return {"status": result.status, "rms": result.rms}


def held_out_validation(checkpoint: str | Path = "mp20_csp", train_data: Sequence[str] | None = None):
    """``(checkpoint path, generator, validation crystals)``: the structures a checkpoint held
    out of training (its recorded data section and seed, through
    :func:`~diffcrystal.training.datamodule.load_split`), where ``predict``'s settings are tuned
    and the study's arms compared. ``checkpoint``: a file or bundled CSP name; ``train_data``:
    its training files where the recorded paths are not found."""
    import dataclasses

    from diffcrystal.checkpoint import checkpoint_train_data, resolve_checkpoint
    from diffcrystal.generator import Generator
    from diffcrystal.training.datamodule import load_split

    path = resolve_checkpoint(checkpoint, "csp")
    generator = Generator.from_checkpoint(path)
    files = list(train_data) if train_data else [str(p) for p in checkpoint_train_data(path)]
    _, validation, _ = load_split(dataclasses.replace(generator.experiment.data, train=files),
                                  generator.experiment.train.seed)
    return path, generator, validation


def held_out_samples(checkpoint: str | Path, k: int, limit: int | None, seed: int):
    """``(checkpoint path, generator, validation crystals, samples)``: ``k`` samples of each of
    the first ``limit`` (None: all) structures a CSP checkpoint held out
    (:func:`held_out_validation`), drawn with the checkpoint's sampler in batches of 500 (the
    sampler calls of ``evaluate``; the same seed, k and limit give the same samples)."""
    from diffcrystal.evaluation import csp_candidates

    if k < 1 or (limit is not None and limit < 1):
        raise InputError(f"--k and --limit must be >= 1, got {k} and {limit}")
    path, generator, validation = held_out_validation(checkpoint)
    if generator.mode != "csp":
        raise InputError(f"{path} is a {generator.mode} checkpoint; this needs a CSP one")
    validation = validation[:limit] if limit else validation
    if not validation:
        raise InputError(f"{path}: its training data hold out no validation structures")
    samples = csp_candidates(generator, validation, k, num_steps=generator.experiment.sampling.num_steps,
                             batch_size=500, seed=seed, progress=True).predictions
    return path, generator, validation, samples


def target_record(target: Crystal, prediction, seconds: float, cpu_seconds: float,
                  given_atoms: int | None = None) -> dict:
    """The JSON record of one target (module docstring); ``given_atoms``: the atom count
    ``predict`` was told (None: composition only)."""
    from diffcrystal.data.composition import format_composition

    ranked = []
    for entry in prediction.ranked:
        c = entry.best.candidate
        ranked.append({
            "label": c.label, "source": c.source, "sources": entry.sources, "members": entry.members,
            "energy_per_atom": entry.energy_per_atom, "converged": entry.converged,
            "analogue_distance": None if math.isnan(c.analogue_distance) else c.analogue_distance,
            "template_e_above_hull": None if math.isnan(c.template_e_above_hull) else c.template_e_above_hull,
            "space_group": entry.space_group, "num_atoms": c.crystal.num_atoms, "type_vote": c.type_vote,
            **_pair(compare_with_target(entry.best.result.crystal, target)),
        })
    candidates = [{"label": o.candidate.label, "source": o.candidate.source, "state": o.status,
                   **_pair(compare_with_target(o.candidate.crystal, target))} for o in prediction.outcomes]
    return {"label": target.label, "formula": format_composition(target.composition), "num_atoms": target.num_atoms,
            "given_atoms": given_atoms, "seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2), "relax_steps": prediction.relax_steps,
            "relax_steps_cap": prediction.relax_steps_cap, "notes": prediction.notes, "ranked": ranked,
            "candidates": candidates}


def read_records(path: Path) -> list[dict]:
    """Records of ``records.jsonl`` (or a gzipped ``records.jsonl.gz``, as committed); a torn
    last line (an interrupted write) is ignored."""
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            break
    return records


def run_ranked(targets: Sequence[Crystal], out_dir: Path, *, library, generator, potential: str, settings,
               hold_out_self: bool = False, workers: int = 1, progress: bool = True, cache_dir=None,
               give_atom_count: bool = False) -> list[dict]:
    """``predict`` every target's composition; append each record to ``out_dir/records.jsonl``
    (targets already recorded there are skipped). ``hold_out_self``: leave the target's own
    label out of its templates (validation targets that sit in the template data);
    ``give_atom_count``: tell ``predict`` the target cell's atom count."""
    from tqdm.auto import tqdm

    from diffcrystal.data.composition import format_composition
    from diffcrystal.prediction import predict

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RECORDS_NAME
    records = read_records(path)
    done = {r["label"] for r in records}
    if len(done) != len(records):
        raise InputError(f"{path} records a target twice; targets need distinct labels")
    optimizer = settings.relax.optimizer
    if any(r.get("optimizer", "FIRE") != optimizer for r in records):  # records before the field: FIRE
        raise InputError(f"{path} holds targets relaxed with another optimizer than {optimizer}: use another --out")
    counts = dict(settings.counts)
    if any(r.get("candidate_counts", SOURCE_COUNTS) != counts for r in records):  # before the field: all three sources
        raise InputError(f"{path} holds targets predicted from other candidate sources than {counts}: use another --out")
    far = {"count": settings.far_free_samples, "distance": settings.far_distance} if settings.far_free_samples else None
    if any(r.get("far_samples") != far for r in records):  # before the field: none
        raise InputError(f"{path} holds targets predicted with other far samples than "
                         f"{far or 'none'}: use another --out")
    from diffcrystal.potential.calculators import resolve_potential

    potential = resolve_potential(potential)  # loaded once for every target
    bar = tqdm(total=len(targets), initial=sum(t.label in done for t in targets), desc="ranked prediction",
               unit="target", disable=not progress)
    for target in targets:
        if target.label in done:
            continue
        started, cpu_started = time.perf_counter(), time.process_time()
        templates = library.without({target.label}) if hold_out_self else library
        given = target.num_atoms if give_atom_count else None
        prediction = predict(format_composition(target.composition), templates=templates, generator=generator,
                             potential=potential, settings=settings, workers=workers, cache_dir=cache_dir,
                             num_atoms=given)
        record = target_record(target, prediction, time.perf_counter() - started, time.process_time() - cpu_started,
                               given)
        record["optimizer"] = optimizer
        record["candidate_counts"] = counts
        if far is not None:
            record["far_samples"] = far
        with path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        records.append(record)
        bar.update()
    bar.close()
    return records


def rescored_order(record: dict, score: RankingScore) -> list[dict]:
    """The record's ranked structures re-ordered by ``score`` (converged first)."""
    def key(entry: dict) -> tuple:
        distance = math.nan if entry["analogue_distance"] is None else entry["analogue_distance"]
        stability = math.nan if entry["template_e_above_hull"] is None else entry["template_e_above_hull"]
        fits = fits_atom_count(entry.get("num_atoms", 0), record.get("given_atoms"))
        vote = entry.get("type_vote", 1.0)  # records made before the votes: no charge
        return (not entry["converged"], score(entry["energy_per_atom"], distance, stability, fits, vote),
                entry["label"])

    return sorted(record["ranked"], key=key)


def rescored_results(records: Sequence[dict], score: RankingScore, k: int) -> list[TargetResult]:
    """Per record, its first ``k`` ranked structures re-ordered by ``score`` (converged first),
    as :class:`TargetResult` (missing ones pad the list)."""
    results = []
    for record in records:
        ranked = rescored_order(record, score)[:k]
        pairs = [PairResult(e["status"], rms=e["rms"]) for e in ranked]
        pairs += [PairResult("missing", reason="fewer ranked structures")] * (k - len(pairs))
        results.append(TargetResult(record["label"], tuple(pairs)))
    return results


def source_results(records: Sequence[dict], source: str, k: int) -> list[TargetResult]:
    """Per record, its first ``k`` unrelaxed candidates of ``source`` (before deduplication)."""
    results = []
    for record in records:
        chosen = [c for c in record["candidates"] if c["source"] == source][:k]
        pairs = [PairResult(c["status"], rms=c["rms"]) for c in chosen]
        pairs += [PairResult("missing", reason=f"no {source} candidate")] * (k - len(pairs))
        results.append(TargetResult(record["label"], tuple(pairs)))
    return results


@dataclass(frozen=True)
class RankedSummary:
    """Headline figures of a ranked evaluation (percentages of targets)."""

    targets: int
    at_1: dict
    at_k: dict
    k: int
    sources_at_1: dict
    sources_any: dict
    seconds_per_target: float
    cpu_seconds_per_target: float
    steps_share: float
    metre: float
    crmse: float
    shared_compositions: int


def protocol_metrics(results: Sequence[TargetResult]) -> CSPMetrics:
    """:class:`CSPMetrics` of ``results`` compared with the protocol's matcher tolerances."""
    return CSPMetrics.from_results(tuple(results), stol=MATCHER_STOL, angle_tol=MATCHER_ANGLE_TOL_DEG,
                                   ltol=MATCHER_LTOL)


def _rates(results: Sequence[TargetResult], at: str) -> dict:
    metrics = protocol_metrics(results)
    return {"matched": metrics.summary()[f"match_rate_at_{at}_percent"],
            **{f"precise_{t}": 100.0 * metrics.n_precise(at, t) / len(results) for t in PRECISE_RMSE_THRESHOLDS}}


def answer_polymorph_metrics(records: Sequence[dict], results: Sequence[TargetResult]) -> tuple[float, float, int]:
    """METRe (percent) and cRMSE of the answers @1 (:mod:`diffcrystal.metrics.polymorph`), and
    how many targets share their reduced composition with another target. Each answer was
    compared with its own target only, so within a shared composition the other pairs count
    as unmatched (a lower bound on METRe, an upper bound on cRMSE; exact when none is shared)."""
    from pymatgen.core import Composition

    from diffcrystal.metrics.polymorph import PolymorphMetrics

    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(Composition(record["formula"]).reduced_formula, []).append(index)
    matched, rms_total = 0, 0.0
    for members in groups.values():
        rms = np.full((len(members), len(members)), np.nan)
        for row, index in enumerate(members):
            answer = results[index].candidates[0]
            if answer.matched:
                rms[row, row] = min(answer.rms, MATCHER_STOL)
        metrics = PolymorphMetrics.from_rms_matrix(rms, stol=MATCHER_STOL)
        matched += metrics.n_matched
        rms_total += metrics.crmse * len(members)
    shared = sum(len(m) for m in groups.values() if len(m) > 1)
    return 100.0 * matched / len(records), rms_total / len(records), shared


def ranked_rates(records: Sequence[dict], score: RankingScore, k: int = 5) -> tuple[dict, dict]:
    """``(at_1, at_k)`` rates of ``records`` ranked by ``score``: the part of
    :func:`ranked_metrics` a search over weights needs."""
    results = rescored_results(records, score, k)
    return _rates(results, "1"), _rates(results, "k")


def ranked_metrics(records: Sequence[dict], score: RankingScore = RankingScore(), k: int = 5) -> RankedSummary:
    """The figures of the module docstring for ``records`` ranked by ``score``."""
    if not records:
        raise InputError("no ranked-evaluation records to summarise")
    results = rescored_results(records, score, k)
    n = len(records)
    metre, crmse, shared = answer_polymorph_metrics(records, results)
    return RankedSummary(
        n, _rates(results, "1"), _rates(results, "k"), k,
        {s: _rates(source_results(records, s, 1), "1") for s in SOURCES},
        {s: _rates(source_results(records, s, 64), "k") for s in SOURCES},
        sum(r["seconds"] for r in records) / n, sum(r["cpu_seconds"] for r in records) / n,
        sum(r["relax_steps"] for r in records) / max(sum(r["relax_steps_cap"] for r in records), 1),
        metre, crmse, shared,
    )


def summary_markdown(summary: RankedSummary, score: RankingScore) -> str:
    """The figures of :func:`ranked_metrics` as a Markdown table."""
    lines = [f"# Ranked prediction on {summary.targets} targets",
             "",
             f"Score: E/atom + {score.distance_weight:g} eV/atom x analogue distance (free samples at "
             f"{score.free_distance:g}) + {score.stability_weight:g} x template e_above_hull + "
             f"{score.atom_count_weight:g} eV/atom if the given atom count rules the cell out + "
             f"{score.vote_weight:g} eV/atom x (1 - structure-type vote).",
             "",
             "| what | matched | precise (RMSE < 0.1) | precise (< 0.05) |",
             "|---|---|---|---|"]

    def row(name: str, rates: dict) -> str:
        return (f"| {name} | {rates['matched']:.2f} % | {rates['precise_0.1']:.2f} % | "
                f"{rates['precise_0.05']:.2f} % |")

    matched = round(summary.at_1["matched"] * summary.targets / 100)
    lines.append(f"| ranked @1, targets matched | {matched} / {summary.targets} targets | | |")
    lines.append(row("ranked @1", summary.at_1))
    lines.append(row(f"ranked @{summary.k}", summary.at_k))
    for source in SOURCES:
        lines.append(row(f"first {source} candidate, unrelaxed", summary.sources_at_1[source]))
    for source in SOURCES:
        lines.append(row(f"any {source} candidate, unrelaxed", summary.sources_any[source]))
    lines += ["", f"Answers @1: METRe {summary.metre:.2f} %, cRMSE {summary.crmse:.4f} "
              f"({summary.shared_compositions} targets share a composition with another)."]
    lines += ["", f"Wall seconds per target: {summary.seconds_per_target:.1f}; CPU seconds: "
              f"{summary.cpu_seconds_per_target:.1f}; potential steps: {100 * summary.steps_share:.1f} % of relaxing "
              "every distinct candidate to the cap.", ""]
    return "\n".join(lines)


def evaluate_ranked(targets: Sequence[Crystal], out_dir: Path, *, library, generator, potential: str, settings,
                    k: int, extra: dict, progress: bool = True, give_atom_count: bool = False) -> tuple[Path, str]:
    """Run (or resume) the ranked evaluation of ``targets`` into ``out_dir`` and write
    ``metrics.json`` (:class:`CSPMetrics` of the top ``k`` under ``settings.score``, with the
    summary of :func:`ranked_metrics` under ``ranked``) and ``metrics.md``."""
    from dataclasses import asdict

    from diffcrystal.atomic_write import atomic_write_text

    records = run_ranked(targets, out_dir, library=library, generator=generator, potential=potential,
                         settings=settings, progress=progress, give_atom_count=give_atom_count)
    if any((r.get("given_atoms") is not None) != give_atom_count for r in records):
        raise InputError(f"{Path(out_dir) / RECORDS_NAME} holds records "
                         f"{'without' if give_atom_count else 'with'} the atom count given: use another --out")
    wanted = {t.label for t in targets}
    records = [r for r in records if r["label"] in wanted]
    summary = ranked_metrics(records, settings.score, k)
    metrics = protocol_metrics(rescored_results(records, settings.score, k))
    payload = {**metrics.to_dict(), "ranked": asdict(summary), "score": asdict(settings.score),
               "atom_count_given": give_atom_count, **extra}
    atomic_write_text(Path(out_dir) / "metrics.json", json.dumps(payload, indent=1) + "\n")
    text = summary_markdown(summary, settings.score)
    atomic_write_text(Path(out_dir) / "metrics.md", text)
    return Path(out_dir) / "metrics.json", text
