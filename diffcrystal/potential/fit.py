"""Own potentials: make frames, label them with a teacher, fit a small NequIP/Allegro student.

The student is trained and compiled by the official packages, never re-implemented here:

1. :func:`make_frames` — rattled and strained copies of candidate crystals (and, with a
   calculator, snapshots along their relaxation), to be labelled.
2. :func:`label_frames` — energy (eV), forces (eV/Å) and stress (eV/Å³, ASE Voigt order) from
   a teacher potential (default SevenNet-0), written as extxyz.
3. :func:`fit_potential` — :func:`train_student` writes a ``nequip`` 0.19 hydra config from
   :func:`training_config` (a ``NequIPGNNModel`` or ``allegro.model.AllegroModel``,
   ``EnergyForceStressLoss``, Adam, EMA) and runs ``nequip-train`` **in a subprocess** (nequip
   switches torch's global default dtype to float64 and seeds every RNG; a subprocess keeps that
   out of this process), then :func:`compile_student` runs
   ``nequip-compile --mode aotinductor --target ase`` (TorchScript compilation is refused by
   nequip with torch >= 2.10) into ``<out>/model.nequip.pt2``, which
   :func:`~diffcrystal.potential.calculators.load_calculator` serves as an ASE calculator.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.errors import InputError
from diffcrystal.potential.calculators import COMPILED_MODEL_NAME, DEFAULT_POTENTIAL, load_calculator
from diffcrystal.potential.results import RelaxSettings, explosion_reason
from diffcrystal.potential.threads import limited_threads

RATTLE_STD_A = 0.05
"""Standard deviation of the Gaussian displacement of each atom in a rattled frame, Å."""

MAX_STRAIN = 0.04
"""Largest |component| of the random symmetric strain applied to a frame's cell."""

ARCHITECTURES = ("nequip", "allegro")

CONFIG_NAME = "train.yaml"
FIT_RECORD_NAME = "fit.json"


# ---------------------------------------------------------------------- frames
def make_frames(structures: Sequence, copies: int = 8, rattle_std_A: float = RATTLE_STD_A,
                max_strain: float = MAX_STRAIN, seed: int = 0, calculator=None,
                snapshots: int = 0, snapshot_every: int = 5) -> list:
    """Frames to label: ``copies`` rattled + strained copies of each structure.

    ``structures``: ASE ``Atoms`` or ``(label, Atoms)`` pairs. With ``calculator`` and
    ``snapshots > 0`` each structure is also relaxed (FIRE on a FrechetCellFilter) and up to
    ``snapshots`` frames taken every ``snapshot_every`` steps along the way. Strain ``ε`` is
    symmetric with entries uniform in [-max_strain, max_strain]; the cell becomes ``L (I + ε)``.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for item in structures:
        atoms = item[1] if isinstance(item, tuple) else item
        atoms = atoms.to_atoms() if hasattr(atoms, "to_atoms") else atoms
        for _ in range(copies):
            frame = atoms.copy()
            frame.calc = None
            strain = rng.uniform(-max_strain, max_strain, (3, 3))
            strain = (strain + strain.T) / 2
            frame.set_cell(frame.cell.array @ (np.eye(3) + strain), scale_atoms=True)
            frame.positions = frame.positions + rng.normal(0.0, rattle_std_A, frame.positions.shape)
            frames.append(frame)
        if calculator is not None and snapshots > 0:
            frames.extend(relaxation_snapshots(atoms, calculator, snapshots, snapshot_every))
    return frames


def relaxation_snapshots(atoms, calculator, count: int, every: int) -> list:
    """Up to ``count`` copies of ``atoms`` (the first one unrelaxed) taken every ``every`` steps
    while FIRE relaxes it on a FrechetCellFilter with ``calculator`` (at most ``count * every``
    steps); a relaxation that fails keeps the copies taken before."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    moving = atoms.copy()
    moving.calc = calculator
    taken: list = []
    optimizer = FIRE(FrechetCellFilter(moving), logfile=None)

    def take() -> None:
        if len(taken) < count:
            frame = moving.copy()
            frame.calc = None
            taken.append(frame)

    optimizer.attach(take, interval=every)
    try:
        optimizer.run(fmax=RelaxSettings().fmax, steps=count * every)
    except Exception:  # snapshots are a bonus; a failing relaxation still leaves earlier ones
        pass
    return taken


def label_frames(frames: Sequence, teacher: str = DEFAULT_POTENTIAL, calculator=None,
                 threads: int = 1) -> tuple[list, int]:
    """Label ``frames`` with ``teacher``: returns (labelled frames, number skipped).

    ``threads`` caps torch/BLAS threads while labelling (see
    :func:`~diffcrystal.potential.threads.limited_threads`).

    Each labelled frame carries a ``SinglePointCalculator`` with energy, forces and stress (so
    ``ase.io.write`` stores them in extxyz) and ``info['teacher']``. Frames that are exploded
    (:func:`~diffcrystal.potential.results.explosion_reason`) or give non-finite labels are skipped.
    """
    calculator = calculator if calculator is not None else load_calculator(teacher)
    with limited_threads(threads):
        return _label(frames, teacher, calculator)


def _label(frames: Sequence, teacher: str, calculator) -> tuple[list, int]:
    from ase.calculators.singlepoint import SinglePointCalculator

    labelled, skipped = [], 0
    for atoms in frames:
        frame = atoms.copy()
        if explosion_reason(frame):
            skipped += 1
            continue
        frame.calc = calculator
        try:
            energy = float(frame.get_potential_energy())
            forces = np.array(frame.get_forces())
            stress = np.array(frame.get_stress())
        except Exception:
            skipped += 1
            continue
        if explosion_reason(frame, energy, forces, stress):
            skipped += 1
            continue
        frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces, stress=stress)
        frame.info["teacher"] = str(teacher)
        labelled.append(frame)
    return labelled, skipped


def write_frames(frames: Sequence, path: Path) -> Path:
    """Write ``frames`` to an extxyz file atomically."""
    from ase.io import write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    write(str(temporary), list(frames), format="extxyz")
    temporary.replace(path)
    return path


# ---------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class FitSettings:
    """Hyperparameters of a small, fast student (every field is a config value).

    ``r_max`` cutoff (Å); ``num_layers`` interaction layers; ``num_features`` channels (NequIP)
    or scalar features (Allegro); ``l_max`` spherical-harmonic order; ``epochs`` of Adam at
    ``learning_rate``; ``val_fraction`` of frames held out for validation (and as test set);
    ``*_weight`` the loss coefficients of per-atom energy, forces and stress MSE. Stress labels
    (eV/Å³) are ~100x smaller than forces (eV/Å), so the stress weight is raised to make the
    student's equilibrium volume follow the teacher's (measured: Cu lattice constant off by
    0.8 % with weight 1, see the fit test).
    """

    arch: Literal["nequip", "allegro"] = "nequip"
    epochs: int = 50
    r_max: float = 4.5
    num_layers: int = 2
    num_features: int = 16
    l_max: int = 1
    batch_size: int = 4
    learning_rate: float = 0.01
    val_fraction: float = 0.1
    seed: int = 1
    model_dtype: Literal["float32", "float64"] = "float32"
    threads: int = 1
    energy_weight: float = 1.0
    force_weight: float = 1.0
    stress_weight: float = 10.0

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise InputError(f"unknown architecture {self.arch!r}; valid: {', '.join(ARCHITECTURES)}")
        if self.epochs < 1:
            raise InputError(f"epochs must be >= 1, got {self.epochs}")
        if not 0 < self.val_fraction < 1:
            raise InputError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


def composition_energy_shifts(frames: Sequence, type_names: Sequence[str]) -> dict[str, float]:
    """Per-species energies ``μ_s`` (eV/atom, keyed by the ``type_names``) from the least-squares fit
    ``E ≈ Σ_s n_s μ_s`` over the labelled ``frames`` (``n_s`` atoms of species ``s``; minimum-norm
    solution when species always occur together). A species absent from the frames gets the mean
    per-atom energy. As the student's per-type energy shifts they leave it only the part of the
    energy that composition does not explain (a single mean shift leaves errors of ~0.4 eV/atom
    across MP-20 chemistries)."""
    index = {name: i for i, name in enumerate(type_names)}
    counts = np.zeros((len(frames), len(type_names)))
    for row, frame in enumerate(frames):
        for symbol in frame.get_chemical_symbols():
            counts[row, index[symbol]] += 1
    energies = np.array([frame.calc.results["energy"] for frame in frames])
    shifts = np.linalg.lstsq(counts, energies, rcond=None)[0]
    absent = counts.sum(axis=0) == 0
    shifts[absent] = energies.sum() / counts.sum()
    return {name: float(value) for name, value in zip(type_names, shifts)}


def _model_block(settings: FitSettings, energy_shifts: dict[str, float] | None) -> dict:
    common = {
        "seed": "${seed}",
        "model_dtype": settings.model_dtype,
        "type_names": "${model_type_names}",
        "r_max": "${cutoff_radius}",
        "l_max": settings.l_max,
        "parity": True,
        "num_layers": settings.num_layers,
        "avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
        "per_type_energy_shifts": (dict(energy_shifts) if energy_shifts is not None
                                   else "${training_data_stats:per_atom_energy_mean}"),
        "per_type_energy_scales": "${training_data_stats:forces_rms}",
    }
    if settings.arch == "nequip":
        return {
            "_target_": "nequip.model.NequIPGNNModel",
            **common,
            "num_features": settings.num_features,
            "radial_mlp_depth": 1,
            "radial_mlp_width": settings.num_features,
        }
    return {
        "_target_": "allegro.model.AllegroModel",
        **common,
        "radial_chemical_embed": {
            "_target_": "allegro.nn.TwoBodyBesselScalarEmbed",
            "num_bessels": 8,
            "bessel_trainable": False,
            "polynomial_cutoff_p": 6,
        },
        "radial_chemical_embed_dim": settings.num_features,
        "scalar_embed_mlp_hidden_layers_depth": 1,
        "scalar_embed_mlp_hidden_layers_width": settings.num_features,
        "num_scalar_features": settings.num_features,
        "num_tensor_features": max(4, settings.num_features // 4),
        "allegro_mlp_hidden_layers_depth": 1,
        "allegro_mlp_hidden_layers_width": settings.num_features,
        "readout_mlp_hidden_layers_depth": 1,
        "readout_mlp_hidden_layers_width": settings.num_features,
    }


def training_config(frames_path: Path, type_names: Sequence[str], num_frames: int,
                    settings: FitSettings, energy_shifts: dict[str, float] | None = None) -> dict:
    """The ``nequip-train`` (hydra) config for ``num_frames`` labelled frames in
    ``frames_path`` with chemical species ``type_names``. Split: train / val / test, with the
    held-out part used for both validation and the final test. ``energy_shifts``: per-type
    energies (eV/atom by type name; see :func:`composition_energy_shifts`), default the
    data's mean per-atom energy for every type."""
    num_val = max(1, int(round(settings.val_fraction * num_frames)))
    num_train = num_frames - 2 * num_val
    if num_train < 1:
        raise InputError(f"{frames_path}: {num_frames} frames are too few to fit (need >= 3)")
    return {
        "run": ["train", "test"],
        "seed": settings.seed,
        "cutoff_radius": settings.r_max,
        "model_type_names": list(type_names),
        "chemical_species": "${model_type_names}",
        "dataloader": {"_target_": "torch.utils.data.DataLoader", "batch_size": settings.batch_size},
        "data": {
            "_target_": "nequip.data.datamodule.NequIPDataModule",
            "seed": "${seed}",
            "split_dataset": {
                "dataset": {
                    "_target_": "nequip.data.dataset.ASEDataset",
                    "file_path": str(Path(frames_path).resolve()),
                    "transforms": [
                        {
                            "_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                            "model_type_names": "${model_type_names}",
                            "chemical_species_to_atom_type_map":
                                "${list_to_identity_dict:${chemical_species}}",
                        },
                        {
                            "_target_": "nequip.data.transforms.NeighborListTransform",
                            "r_max": "${cutoff_radius}",
                        },
                    ],
                },
                "train": num_train,
                "val": num_val,
                "test": num_val,
            },
            "train_dataloader": "${dataloader}",
            "val_dataloader": "${dataloader}",
            "test_dataloader": "${dataloader}",
            "stats_manager": {
                "_target_": "nequip.data.CommonDataStatisticsManager",
                "type_names": "${model_type_names}",
            },
        },
        "trainer": {
            "_target_": "lightning.Trainer",
            "max_epochs": settings.epochs,
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "check_val_every_n_epoch": 1,
            "log_every_n_steps": 10,
            "logger": False,
            "callbacks": [
                {
                    "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "monitor": "val0_epoch/weighted_sum",
                    "dirpath": "${hydra:runtime.output_dir}",
                    "filename": "best",
                    "save_top_k": 1,
                }
            ],
        },
        "training_module": {
            "_target_": "nequip.train.EMALightningModule",
            "loss": {
                "_target_": "nequip.train.EnergyForceStressLoss",
                "per_atom_energy": True,
                "coeffs": {"total_energy": settings.energy_weight, "forces": settings.force_weight,
                           "stress": settings.stress_weight},
            },
            "val_metrics": {
                "_target_": "nequip.train.EnergyForceStressMetrics",
                "coeffs": {"total_energy_mae": 1.0, "forces_mae": 1.0, "stress_mae": 1.0},
            },
            "test_metrics": "${training_module.val_metrics}",
            "optimizer": {"_target_": "torch.optim.Adam", "lr": settings.learning_rate},
            "model": _model_block(settings, energy_shifts),
        },
    }


@dataclass
class FitResult:
    """A fitted student: ``model_path`` (compiled, load with ``load_calculator``), the
    ``config_path`` used, wall times in seconds, and the folder holding the training log."""

    model_path: Path
    config_path: Path
    train_seconds: float
    compile_seconds: float
    train_dir: Path


def _run_logged(command: list[str], log_path: Path, threads: int, what: str) -> float:
    environment = dict(os.environ)
    environment.update({name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                         "OPENBLAS_NUM_THREADS")})
    start = time.perf_counter()
    with open(log_path, "w") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        tail = log_path.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise InputError(f"{what} failed (exit {completed.returncode}): {tail[0]} — see {log_path}")
    return elapsed


def _script(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(found).exists():
        raise InputError(f"{name} not found; install the packages nequip and nequip-allegro")
    return found


@dataclass
class TrainedStudent:
    """A trained, uncompiled student: its best training ``checkpoint``, the training wall
    ``seconds``, the ``num_frames`` it was given and its species ``type_names``."""

    checkpoint: Path
    seconds: float
    num_frames: int
    type_names: list[str]


def train_student(frames_path: str | Path, out_dir: str | Path, settings: FitSettings = FitSettings(),
                  type_names: Sequence[str] | None = None) -> TrainedStudent:
    """Train (without compiling) a student on the labelled extxyz ``frames_path`` in ``out_dir``.

    ``type_names``: the student's chemical species (default: those in the frames); give a
    superset to let the student evaluate structures with species its frames lack. Per-type energy
    shifts come from :func:`composition_energy_shifts`. Writes
    ``out_dir/train.yaml``, ``out_dir/train.log`` and ``out_dir/train/``.
    """
    import yaml
    from ase.io import read

    frames_path = Path(frames_path)
    out_dir = Path(out_dir)
    if not frames_path.is_file():
        raise InputError(f"{frames_path}: no such frames file")
    frames = read(str(frames_path), index=":")
    for i, frame in enumerate(frames):
        if frame.calc is None or "forces" not in frame.calc.results:
            raise InputError(f"{frames_path} frame {i}: no energy/forces labels (run potential label)")
    present = {s for frame in frames for s in frame.get_chemical_symbols()}
    type_names = sorted(present | set(type_names or ()))
    config = training_config(frames_path, type_names, len(frames), settings,
                             composition_energy_shifts(frames, type_names))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / CONFIG_NAME, yaml.safe_dump(config, sort_keys=False))
    train_dir = out_dir / "train"
    if train_dir.exists():
        shutil.rmtree(train_dir)
    seconds = _run_logged(
        [_script("nequip-train"), "-cp", str(out_dir.resolve()), "-cn", CONFIG_NAME[:-5],
         f"hydra.run.dir={train_dir.resolve()}"],
        out_dir / "train.log", settings.threads, "nequip-train",
    )
    checkpoint = train_dir / "best.ckpt"
    if not checkpoint.is_file():
        raise InputError(f"nequip-train wrote no {checkpoint}; see {out_dir / 'train.log'}")
    return TrainedStudent(checkpoint, seconds, len(frames), type_names)


def compile_student(checkpoint: Path, out_dir: str | Path, threads: int = 1) -> tuple[Path, float]:
    """Compile a training ``checkpoint`` with ``nequip-compile --mode aotinductor`` into
    ``out_dir/model.nequip.pt2`` (written atomically; log in ``out_dir/compile.log``).
    Returns (model path, wall seconds)."""
    out_dir = Path(out_dir)
    model_path = out_dir / COMPILED_MODEL_NAME
    temporary = out_dir / f".tmp.{COMPILED_MODEL_NAME}"
    seconds = _run_logged(
        [_script("nequip-compile"), str(checkpoint), str(temporary), "--mode", "aotinductor",
         "--device", "cpu", "--target", "ase"],
        out_dir / "compile.log", threads, "nequip-compile",
    )
    temporary.replace(model_path)
    return model_path, seconds


def fit_potential(frames_path: str | Path, out_dir: str | Path,
                  settings: FitSettings = FitSettings()) -> FitResult:
    """Train and compile a student on the labelled extxyz ``frames_path`` into ``out_dir``.

    Writes ``out_dir/train.yaml``, ``out_dir/train/`` (checkpoints, logs),
    ``out_dir/model.nequip.pt2`` and ``out_dir/fit.json``. Raises :class:`InputError` with the
    failing step's last log line when training or compiling fails.
    """
    frames_path, out_dir = Path(frames_path), Path(out_dir)
    trained = train_student(frames_path, out_dir, settings)
    model_path, compile_seconds = compile_student(trained.checkpoint, out_dir, settings.threads)
    result = FitResult(model_path, out_dir / CONFIG_NAME, trained.seconds, compile_seconds, out_dir / "train")
    record = {
        "settings": asdict(settings), "frames": str(frames_path.resolve()), "num_frames": trained.num_frames,
        "type_names": trained.type_names, "model": str(model_path.resolve()),
        "train_seconds": round(trained.seconds, 1), "compile_seconds": round(compile_seconds, 1),
    }
    atomic_write_text(out_dir / FIT_RECORD_NAME, json.dumps(record, indent=2) + "\n")
    return result


def force_mae(calculator, frames: Sequence) -> dict:
    """Mean absolute errors of ``calculator`` against the labels of ``frames``: forces (eV/Å,
    per component), energy (eV/atom) and stress (eV/Å³, per Voigt component)."""
    force_errors, energy_errors, stress_errors = [], [], []
    for frame in frames:
        reference = frame.calc.results
        atoms = frame.copy()
        atoms.calc = calculator
        force_errors.append(np.abs(atoms.get_forces() - reference["forces"]).ravel())
        energy_errors.append(abs(atoms.get_potential_energy() - reference["energy"]) / len(atoms))
        if "stress" in reference:
            stress_errors.append(np.abs(atoms.get_stress() - reference["stress"]))
    return {
        "forces_mae_eV_A": float(np.mean(np.concatenate(force_errors))),
        "energy_mae_eV_atom": float(np.mean(energy_errors)),
        "stress_mae_eV_A3": float(np.mean(np.concatenate(stress_errors))) if stress_errors else float("nan"),
    }
