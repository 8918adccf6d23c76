"""Active learning of a student potential: an ensemble's disagreement picks the frames a teacher labels.

:func:`learn` runs the loop (units: energies eV, forces eV/Å; records in meV/atom and meV/Å):

- **Split by structure.** The candidates are shuffled and a share ``held_out_share`` of them is
  held out: rattled + strained copies of those and snapshots of the teacher relaxing them (never
  frames of a training candidate), labelled by the teacher, are the evaluation set.
- **Round 0.** ``initial`` frames drawn at random from rattled + strained copies of the training
  candidates are labelled; an ensemble of ``ensemble`` students (seeds ``seed + 1 ...``) is fitted.
- **Round r >= 1.** The first student relaxes every training candidate (FIRE on a
  FrechetCellFilter, a few steps), and its snapshots plus fresh rattled copies form the unlabelled
  pool (exploded frames dropped). The ensemble ranks the pool by :func:`force_disagreement`; the
  teacher labels the ``per_round`` highest (in rank order, skipping frames it cannot label and,
  with ``max_per_candidate``, frames of a candidate that already gave that many this round), they
  join the training set and every member is refitted from scratch.
- **Control** (``control=True``): one student per round (seed of the first member) on the initial
  frames plus as many frames per round, chosen at random from the same pools; at round 0 it is
  the first member itself. Same frame count, so the difference is the choice of frames.

After every round ``<out>/learn.json`` is rewritten atomically with the per-round record
(:func:`evaluate`): frames, energy/force MAE of the first member and of the control against the
teacher on the held-out frames, and how well the ensemble's disagreement ranks the first
member's true max-atom force error there.

With ``resume=True`` a stopped run goes on after its last completed round: the held-out and
training frames are read back from their extxyz files (8 decimals, so the continuation matches
an uninterrupted run to round-off), the students are reloaded and the random draws replayed.

The fitter is injected (:class:`Fitter`): :class:`NequipFitter` trains NequIP/Allegro students
with ``nequip-train`` and serves their checkpoints uncompiled.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.errors import InputError
from diffcrystal.potential.fit import (
    FitSettings,
    label_frames,
    make_frames,
    relaxation_snapshots,
    train_student,
    write_frames,
)
from diffcrystal.potential.results import explosion_reason

RECORD_NAME = "learn.json"
HELD_OUT_NAME = "held_out.extxyz"
POOL_NAME = "pool.extxyz"
TRAIN_NAME = "train.extxyz"
CONTROL_TRAIN_NAME = "control_train.extxyz"
TOP_SHARE = 0.1
"""Share of held-out frames with the highest disagreement compared with the rest (top decile)."""

LEARN_EPOCHS = 20
"""Training epochs of each fit in the loop (every round refits every member from scratch)."""

class Fitter(Protocol):
    """Makes the loop's students: ``fit`` one on labelled frames in ``folder`` (an ASE calculator
    back), or ``load`` the one fitted there before (for ``resume``)."""

    def fit(self, frames: Sequence, folder: Path, seed: int): ...

    def load(self, folder: Path): ...


def force_disagreement(force_sets) -> float:
    """Max-atom force uncertainty of an ensemble on one frame, eV/Å.

    ``force_sets``: the members' forces, shape (members, atoms, 3), eV/Å. With the ensemble mean
    ``F̄_i`` of atom ``i``, the spread of atom ``i`` is ``σ_i = sqrt(mean_m |F_mi - F̄_i|²)``
    (RMS over members of the vector deviation); the frame's disagreement is ``max_i σ_i``.
    """
    forces = np.asarray(force_sets, dtype=float)
    if forces.ndim != 3 or forces.shape[2] != 3 or forces.shape[0] < 2:
        raise InputError(f"force sets must have shape (members >= 2, atoms, 3), got {forces.shape}")
    deviation = forces - forces.mean(axis=0)
    spread = np.sqrt((deviation ** 2).sum(axis=2).mean(axis=0))
    return float(spread.max())


def most_disagreeing(disagreements: Sequence[float], count: int) -> list[int]:
    """Indices of the ``count`` largest ``disagreements``, largest first (ties: lower index first)."""
    order = np.argsort(-np.asarray(disagreements, dtype=float), kind="stable")
    return [int(i) for i in order[:count]]


@dataclass(frozen=True)
class LearnSettings:
    """Loop sizes: ``rounds`` after round 0; ``ensemble`` members (>= 2); ``initial`` random
    frames; ``per_round`` frames added per round; ``held_out_share`` of candidates held out, with
    ``held_out_copies`` rattled copies and ``relax_snapshots`` teacher-relaxation snapshots each;
    pool per training candidate per round: ``relax_snapshots`` snapshots every ``snapshot_every``
    FIRE steps plus ``pool_copies`` rattled copies; ``seed`` of every random choice; ``control`` fits the random-frames arm."""

    rounds: int = 3
    ensemble: int = 3
    initial: int = 40
    per_round: int = 20
    held_out_share: float = 0.2
    held_out_copies: int = 3
    relax_snapshots: int = 4
    snapshot_every: int = 5
    pool_copies: int = 1
    seed: int = 0
    control: bool = True
    max_per_candidate: int | None = None

    def __post_init__(self) -> None:
        if self.ensemble < 2:
            raise InputError(f"an ensemble needs at least 2 members to disagree, got {self.ensemble}")
        for name in ("rounds", "relax_snapshots", "pool_copies"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.initial < 3:
            raise InputError(f"initial must be at least 3 (a fit holds out a validation frame), got {self.initial}")
        for name in ("per_round", "held_out_copies", "snapshot_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_per_candidate is not None and self.max_per_candidate < 1:
            raise InputError(f"max_per_candidate must be at least 1, got {self.max_per_candidate}")
        if not 0 < self.held_out_share < 1:
            raise InputError(f"held-out share must be in (0, 1), got {self.held_out_share}")


class NequipFitter:
    """:class:`Fitter` training a NequIP/Allegro student with ``nequip-train`` (``settings`` with
    the member's seed) over species ``type_names``; returns an eager calculator on its best
    checkpoint (:func:`~diffcrystal.potential.nequip_state.load_checkpoint_calculator`)."""

    def __init__(self, settings: FitSettings, type_names: Sequence[str]):
        self.settings = settings
        self.type_names = sorted(type_names)

    def fit(self, frames: Sequence, folder: Path, seed: int):
        frames_path = write_frames(frames, Path(folder) / TRAIN_NAME)
        train_student(frames_path, folder, replace(self.settings, seed=seed), self.type_names)
        return self.load(folder)

    def load(self, folder: Path):
        from diffcrystal.potential.nequip_state import load_checkpoint_calculator

        checkpoint = self.checkpoint(folder)
        if not checkpoint.is_file():
            raise InputError(f"cannot resume: no student checkpoint {checkpoint}")
        return load_checkpoint_calculator(checkpoint)

    @staticmethod
    def checkpoint(folder: Path) -> Path:
        """The best checkpoint of the student fitted in ``folder``."""
        return Path(folder) / "train" / "best.ckpt"


@dataclass
class LearnResult:
    """The loop's record (as in ``learn.json``) and the folder of the final first member."""

    record: dict
    final_student: Path


# ---------------------------------------------------------------------- helpers
def _tagged(frames: Sequence, **info) -> list:
    for frame in frames:
        frame.info.update(info)
    return list(frames)


def _label_in_order(frames: Sequence, count: int, teacher_name: str, teacher,
                    per_candidate: int | None = None) -> tuple[list, list[int]]:
    """Teacher labels of the first ``count`` frames of ``frames`` it can label, and their
    positions in ``frames`` (frames it cannot label, and with ``per_candidate`` frames of a
    candidate already labelled that many times, are passed over)."""
    labelled, positions, taken = [], [], {}
    for position, frame in enumerate(frames):
        if len(labelled) == count:
            break
        candidate = frame.info.get("candidate")
        if per_candidate is not None and taken.get(candidate, 0) >= per_candidate:
            continue
        done, _ = label_frames([frame], teacher_name, calculator=teacher)
        taken[candidate] = taken.get(candidate, 0) + len(done)
        if done:
            labelled.extend(done)
            positions.append(position)
    return labelled, positions


def _predict(calculator, frames: Sequence) -> tuple[np.ndarray, list[np.ndarray]]:
    """Energies (eV) and forces (eV/Å) of ``calculator`` on ``frames``."""
    energies, forces = [], []
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calculator
        energies.append(float(atoms.get_potential_energy()))
        forces.append(np.array(atoms.get_forces()))
    return np.array(energies), forces


def ensemble_disagreements(members: Sequence, frames: Sequence) -> list[float]:
    """:func:`force_disagreement` (eV/Å) of the ensemble ``members`` (ASE calculators) on each frame."""
    member_forces = [_predict(member, frames)[1] for member in members]
    return [force_disagreement([forces[i] for forces in member_forces]) for i in range(len(frames))]


def _finite_or_none(value: float):
    return None if not math.isfinite(value) else round(float(value), 2)


def evaluate(calculator, frames: Sequence, disagreements: Sequence[float] | None = None) -> dict:
    """Errors of ``calculator`` against the teacher labels of ``frames``: energy MAE (meV/atom),
    force MAE (meV/Å, per component), the 90th percentile over frames of the max-atom force
    error ``max_i |F_i - F_i^teacher|`` (meV/Å; the worst frames, which decide whether a
    relaxation goes astray) and, given the ensemble's ``disagreements`` (eV/Å) on the same
    frames, the Spearman rank correlation between disagreement and the max-atom force error and
    that error's mean (meV/Å) over the top decile of disagreement (at least one frame) and over
    the rest."""
    from scipy.stats import spearmanr

    energies, forces = _predict(calculator, frames)
    reference_energies = np.array([frame.calc.results["energy"] for frame in frames])
    sizes = np.array([len(frame) for frame in frames])
    errors = [predicted - frame.calc.results["forces"] for predicted, frame in zip(forces, frames)]
    max_errors = np.array([np.linalg.norm(e, axis=1).max() for e in errors])
    result = {
        "energy_mae_meV_atom": _finite_or_none(1000 * np.mean(np.abs(energies - reference_energies) / sizes)),
        "force_mae_meV_A": _finite_or_none(1000 * np.mean(np.concatenate([np.abs(e).ravel() for e in errors]))),
        "max_force_error_p90_meV_A": _finite_or_none(1000 * np.percentile(max_errors, 90)),
    }
    if disagreements is None:
        return result
    disagreements = np.asarray(disagreements, dtype=float)
    top = most_disagreeing(disagreements, max(1, math.ceil(TOP_SHARE * len(frames))))
    rest = np.setdiff1d(np.arange(len(frames)), top)
    rho = spearmanr(disagreements, max_errors).statistic if len(frames) > 1 else float("nan")
    result["uncertainty"] = {
        "spearman": None if not math.isfinite(rho) else round(float(rho), 3),
        "mean_disagreement_meV_A": _finite_or_none(1000 * disagreements.mean()),
        "top_decile_frames": len(top),
        "top_decile_max_error_meV_A": _finite_or_none(1000 * max_errors[top].mean()),
        "rest_max_error_meV_A": _finite_or_none(1000 * max_errors[rest].mean()) if len(rest) else None,
    }
    return result


def _select(pool: Sequence, members: Sequence, count: int, teacher_name: str, teacher,
            per_candidate: int | None = None) -> tuple[list, dict]:
    """Rank ``pool`` by the ``members``' :func:`force_disagreement` and label the ``count`` highest
    the teacher can label (at most ``per_candidate`` per candidate). Marks every pool frame's ``info`` with its ``disagreement`` (eV/Å) and
    ``selected``; returns (the labelled frames, the round's selection record)."""
    disagreements = ensemble_disagreements(members, pool)
    order = most_disagreeing(disagreements, len(pool))
    added, ranks = _label_in_order([pool[i] for i in order], count, teacher_name, teacher, per_candidate)
    selected = {order[rank] for rank in ranks}
    for i, frame in enumerate(pool):
        frame.info["disagreement"] = round(disagreements[i], 6)
        frame.info["selected"] = i in selected
    return added, {
        "pool": len(pool),
        "added": len(added),
        "passed_over": ranks[-1] + 1 - len(ranks) if ranks else 0,
        "pool_mean_disagreement_meV_A": _finite_or_none(1000 * np.mean(disagreements)),
        "selected_mean_disagreement_meV_A": _finite_or_none(
            1000 * np.mean([disagreements[i] for i in selected])) if selected else None,
    }


def split_candidates(candidates: Sequence, share: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of (training, held-out) candidates: a seeded shuffle, ``round(share * n)`` (at least
    one) held out, at least one kept for training."""
    if len(candidates) < 2:
        raise InputError(f"active learning needs at least 2 candidates (one held out), got {len(candidates)}")
    order = np.random.default_rng(seed).permutation(len(candidates))
    held = min(len(candidates) - 1, max(1, round(share * len(candidates))))
    return sorted(int(i) for i in order[held:]), sorted(int(i) for i in order[:held])


def _copies(candidates: Sequence, indices: Sequence[int], copies: int, seed: int, origin: str) -> list:
    frames = []
    for index in indices:
        label, atoms = candidates[index]
        frames += _tagged(make_frames([atoms], copies=copies, seed=seed * 100003 + index),
                          candidate=label, origin=origin)
    return frames


# ---------------------------------------------------------------------- the loop
def learn(candidates: Sequence, out_dir: str | Path, teacher, fitter: Fitter,
          settings: LearnSettings = LearnSettings(), teacher_name: str = "teacher",
          resume: bool = False, log: Callable[[str], None] = print) -> LearnResult:
    """Run the active-learning loop (module docstring) on ``candidates`` (``(label, Atoms)``
    pairs) with the ASE calculator ``teacher`` and students from ``fitter``, writing into
    ``out_dir`` (``learn.json``, ``held_out.extxyz``, ``round-<r>/`` with the training sets, the
    ranked pool with each frame's ``disagreement`` (eV/Å) and ``selected`` flag, and one folder
    per fitted student). ``resume``: go on after the last round recorded in ``out_dir`` (same
    teacher, candidates and settings; only ``rounds`` may grow)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(settings.seed)
    train_ids, held_ids = split_candidates(candidates, settings.held_out_share, settings.seed)
    record = {
        "teacher": teacher_name,
        "settings": asdict(settings),
        "candidates": len(candidates),
        "training_candidates": [candidates[i][0] for i in train_ids],
        "held_out_candidates": [candidates[i][0] for i in held_ids],
        "held_out_frames": None,
        "rounds": [],
    }
    per_candidate = math.ceil(settings.initial / len(train_ids))
    initial_pool = _copies(candidates, train_ids, per_candidate, settings.seed + 1, "initial")
    shuffled = [initial_pool[i] for i in rng.permutation(len(initial_pool))]
    if resume:
        record, held_out, train, control_train, members = _resumed(out_dir, record, fitter, settings, rng)
    else:
        held_out_frames = _copies(candidates, held_ids, settings.held_out_copies, settings.seed, "held-out")
        held_out_frames += _snapshots(candidates, held_ids, teacher, settings)
        held_out, unlabelled = label_frames(held_out_frames, teacher_name, calculator=teacher)
        if not held_out:
            raise InputError(f"the teacher labelled none of the {unlabelled} held-out frames")
        write_frames(held_out, out_dir / HELD_OUT_NAME)
        record["held_out_frames"] = len(held_out)
        train, _ = _label_in_order(shuffled, settings.initial, teacher_name, teacher)
        train = _tagged(train, round=0)
        if len(train) < settings.initial:
            raise InputError(f"the teacher labelled only {len(train)} of the {settings.initial} initial frames")
        control_train, members = list(train), []
    for round_index in range(len(record["rounds"]), settings.rounds + 1):
        start = time.perf_counter()
        folder = out_dir / f"round-{round_index}"
        entry = {"round": round_index}
        if round_index > 0:
            pool = _pool(candidates, train_ids, members[0], settings, round_index)
            added, selection = _select(pool, members, settings.per_round, teacher_name, teacher,
                                       settings.max_per_candidate)
            entry.update(selection)
            write_frames(pool, folder / POOL_NAME)
            train = train + _tagged(added, round=round_index)
            if settings.control:
                random_order = [pool[i] for i in rng.permutation(len(pool))]
                control_added, _ = _label_in_order(random_order, len(added), teacher_name, teacher)
                control_train = control_train + _tagged(control_added, round=round_index)
        write_frames(train, folder / TRAIN_NAME)
        members = [fitter.fit(train, folder / f"member-{m}", settings.seed + 1 + m) for m in range(settings.ensemble)]
        held_disagreements = ensemble_disagreements(members, held_out)
        entry["frames"] = len(train)
        entry["student"] = evaluate(members[0], held_out, held_disagreements)
        if settings.control:
            if round_index == 0:
                control = members[0]
            else:
                write_frames(control_train, folder / CONTROL_TRAIN_NAME)
                control = fitter.fit(control_train, folder / "control", settings.seed + 1)
            entry["control"] = {"frames": len(control_train), **evaluate(control, held_out)}
        entry["seconds"] = round(time.perf_counter() - start, 1)
        record["rounds"].append(entry)
        atomic_write_text(out_dir / RECORD_NAME, json.dumps(record, indent=2) + "\n")
        log(round_line(entry))
    return LearnResult(record, out_dir / f"round-{settings.rounds}" / "member-0")


def _resumed(out_dir: Path, fresh: dict, fitter: Fitter, settings: LearnSettings, rng) -> tuple:
    """State after the last round recorded in ``out_dir``: (record, held-out frames, training
    frames, control frames, students); replays the control's random draws on ``rng``."""
    from ase.io import read

    path = out_dir / RECORD_NAME
    if not path.is_file():
        raise InputError(f"cannot resume: no {path} (a run records its first round there)")
    record = json.loads(path.read_text())
    record["settings"] = {**record.get("settings", {}), "rounds": settings.rounds}
    for key in ("teacher", "settings", "training_candidates", "held_out_candidates"):
        if record.get(key) != fresh[key]:
            raise InputError(f"cannot resume {out_dir}: it was started with other {key.replace('_', ' ')} "
                             f"(only --rounds may change)")
    last = len(record["rounds"]) - 1
    folder = out_dir / f"round-{last}"
    control_file = folder / CONTROL_TRAIN_NAME if last > 0 else folder / TRAIN_NAME
    held_out, train = read(out_dir / HELD_OUT_NAME, index=":"), read(folder / TRAIN_NAME, index=":")
    control_train = read(control_file, index=":") if settings.control else []
    members = [fitter.load(folder / f"member-{m}") for m in range(settings.ensemble)]
    if settings.control:
        for entry in record["rounds"][1:]:
            rng.permutation(entry["pool"])
    return record, held_out, train, control_train, members


def _snapshots(candidates: Sequence, indices: Sequence[int], calculator, settings: LearnSettings) -> list:
    frames = []
    for index in indices:
        label, atoms = candidates[index]
        frames += _tagged(relaxation_snapshots(atoms, calculator, settings.relax_snapshots, settings.snapshot_every),
                          candidate=label, origin="relaxation")
    return frames


def _pool(candidates: Sequence, train_ids: Sequence[int], student, settings: LearnSettings,
          round_index: int) -> list:
    """Unlabelled frames of a round: snapshots of ``student`` relaxing each training candidate
    plus fresh rattled copies; exploded frames dropped."""
    pool = _snapshots(candidates, train_ids, student, settings)
    if settings.pool_copies:
        pool += _copies(candidates, train_ids, settings.pool_copies, settings.seed + 1 + round_index, "rattled")
    return [frame for frame in pool if not explosion_reason(frame)]


def round_line(entry: dict) -> str:
    """One progress line for a round's record."""
    student = entry["student"]
    text = (f"round {entry['round']}: {entry['frames']} frames"
            + (f" (+{entry['added']} of a pool of {entry['pool']})" if "pool" in entry else "")
            + f"; student force MAE {student['force_mae_meV_A']} meV/Å, energy {student['energy_mae_meV_atom']} meV/atom")
    if "control" in entry:
        text += f"; control (random frames) {entry['control']['force_mae_meV_A']} meV/Å"
    uncertainty = student["uncertainty"]
    text += (f"; disagreement vs error: Spearman {uncertainty['spearman']}, top-decile error "
             f"{uncertainty['top_decile_max_error_meV_A']} vs {uncertainty['rest_max_error_meV_A']} meV/Å"
             f" ({entry['seconds']:.0f} s)")
    return text
