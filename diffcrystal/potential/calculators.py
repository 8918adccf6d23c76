"""Potentials by name or path: the one door through which diffcrystal gets a potential.

:func:`resolve_potential` turns a name or path into a :class:`Potential` once, at the entry
point; relaxation (both engines), the relaxation cache and ranking receive that object: its
``label`` (recorded in every output), ``identity`` (label and weights' hash, for the cache),
``elements`` (the fixed element set, when it has one), ``calculator`` (loaded on first use) and
``evaluator()`` (batched calls). It crosses process boundaries as its label and device only.

Valid names (:data:`POTENTIAL_NAMES`):

- ``sevennet-0`` (default): SevenNet-0 (11 Jul 2024), a NequIP-architecture universal potential
  trained on MPtrj, package ``sevenn``. Its weights ship inside the wheel, so it loads offline.
- ``chgnet``: CHGNet, only when the optional package ``chgnet`` is installed.
- ``emt``: ASE's effective-medium theory (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O crudely).
  Exact and fast, meant for tests.
- ``mp20-student``: the NequIP student distilled from SevenNet-0 over the MP-20 chemistry that
  ships in ``checkpoints/`` (model card: ``checkpoints/README.md``), for ``--prerelax``; it
  refuses elements it was not trained on.
- a student bundle (``*.safetensors``, :mod:`~diffcrystal.potential.student_bundle`): weights and
  design only, safe to load from anyone.
- a path to a NequIP/Allegro model fitted by diffcrystal (``diffcrystal potential fit``): a
  compiled ``*.nequip.pt2`` (AOTInductor) or ``*.nequip.pth`` file, or the fit folder holding one.
  **Such a file is code**: an AOTInductor archive holds a compiled shared library and a
  TorchScript file a program, and loading either runs it with your permissions, as unpickling
  does. Load only models you fitted yourself or got from someone you trust.

``sevennet-0`` and model paths need the ``potential`` extra (``pip install "diffcrystal[potential]"``:
``sevenn``, ``nequip``, ``nequip-allegro``); a missing package or an unloadable model file is an
:class:`~diffcrystal.errors.InputError` that says so.

``nequip`` sets process-wide torch state when a model is loaded (default dtype float64, a global
seed, JIT fusion strategy; ``nequip/utils/global_state.py``). :func:`load_calculator` restores
torch's default dtype and the torch / numpy / ``random`` RNG states afterwards, so the generator
in the same process is unaffected.

>>> calc = load_calculator("emt")
>>> type(calc).__name__, potential_label("EMT")
('EMT', 'emt')
>>> emt = resolve_potential("EMT")
>>> emt.label, "Cu" in emt.elements, "Sr" in emt.elements
('emt', True, False)
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path
from typing import Iterable

from diffcrystal.errors import InputError
from diffcrystal.potential.nequip_state import (
    isolated_nequip_calculator_class,
    preserved_torch_state,
)
from diffcrystal.potential.student_bundle import STUDENT_SUFFIX

DEFAULT_POTENTIAL = "sevennet-0"
"""The potential used when none is named."""

POTENTIAL_NAMES = ("sevennet-0", "chgnet", "emt", "mp20-student")
"""Named potentials; anything else must be a path to a fitted NequIP/Allegro model or student bundle."""

BUNDLED_STUDENTS = ("mp20-student",)
"""Student bundles shipped in ``checkpoints/`` (file and hash in its ``manifest.json``'s
``potentials`` table), by potential name."""

STUDENT_LABEL_PREFIX = "student:"
"""Start of the label of a student bundle given by path, followed by its absolute path."""

SEVENNET_CHECKPOINT = "7net-0"
"""``sevenn``'s name of the SevenNet-0 (11Jul2024) checkpoint bundled in its wheel."""

COMPILED_MODEL_SUFFIXES = (".nequip.pth", ".nequip.pt2")
"""File endings ``nequip-compile`` requires (TorchScript, AOTInductor)."""

COMPILED_MODEL_NAME = "model.nequip.pt2"
"""Name of the compiled model inside a ``diffcrystal potential fit`` output folder."""

POTENTIAL_EXTRA_INSTALL = 'pip install "diffcrystal[potential]"'
"""How to install the packages of ``sevennet-0`` and fitted models (pyproject's ``potential`` extra)."""

NEQUIP_LABEL_PREFIX = "nequip:"
"""Start of the label of a fitted model, followed by its absolute path."""

REQUIRED_PACKAGES = {"sevennet-0": "sevenn", "nequip": "nequip", "student": "nequip"}
"""Package each potential kind imports (model paths are the ``nequip`` kind, student bundles the
``student`` kind)."""


def _valid_names_text() -> str:
    return ", ".join(POTENTIAL_NAMES) + ", or a path to a fitted NequIP/Allegro model or student bundle"


def _is_path_like(name: str) -> bool:
    return (any(sep in name for sep in ("/", "\\")) or name.endswith(COMPILED_MODEL_SUFFIXES + (STUDENT_SUFFIX,))
            or Path(name).exists())


def resolve_model_path(name: str | Path) -> Path:
    """The compiled model file for ``name`` (a compiled file, or a fit folder holding one).

    Raises :class:`InputError` when nothing loadable is there.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        candidates = [path / COMPILED_MODEL_NAME] + sorted(
            p for suffix in COMPILED_MODEL_SUFFIXES for p in path.glob(f"*{suffix}")
        )
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        raise InputError(f"no compiled NequIP/Allegro model (*.nequip.pt2) in folder {path}")
    if path.is_file():
        if not str(path).endswith(COMPILED_MODEL_SUFFIXES):
            raise InputError(
                f"{path}: expected a compiled model ending in {' or '.join(COMPILED_MODEL_SUFFIXES)}"
            )
        return path.resolve()
    raise InputError(f"unknown potential {str(name)!r}; valid: {_valid_names_text()}")


def potential_label(name: str | Path | None) -> str:
    """Canonical text recorded in every output, so energies from different potentials are never
    mixed: a lower-case name from :data:`POTENTIAL_NAMES`, or ``nequip:<absolute path>``
    (a label gives itself)."""
    name = DEFAULT_POTENTIAL if name is None else str(name)
    if name.lower() in POTENTIAL_NAMES:
        return name.lower()
    if name.startswith(STUDENT_LABEL_PREFIX):  # labels give themselves
        return f"{STUDENT_LABEL_PREFIX}{_student_file(name.removeprefix(STUDENT_LABEL_PREFIX))}"
    if name.endswith(STUDENT_SUFFIX) and _is_path_like(name):
        return f"{STUDENT_LABEL_PREFIX}{_student_file(name)}"
    if name.startswith(NEQUIP_LABEL_PREFIX):
        return f"{NEQUIP_LABEL_PREFIX}{resolve_model_path(name.removeprefix(NEQUIP_LABEL_PREFIX))}"
    if _is_path_like(name):
        return f"{NEQUIP_LABEL_PREFIX}{resolve_model_path(name)}"
    raise InputError(f"unknown potential {name!r}; valid: {_valid_names_text()}")


def _student_file(name: str) -> Path:
    path = Path(name).expanduser()
    if not path.is_file():
        raise InputError(f"no such student bundle: {path}")
    return path.resolve()


def student_path(label: str) -> Path:
    """The bundle file of a student potential ``label`` (a bundled name or ``student:<path>``)."""
    if label in BUNDLED_STUDENTS:
        from diffcrystal.checkpoint import bundled_potential

        return bundled_potential(label)
    return Path(label.removeprefix(STUDENT_LABEL_PREFIX))


def _kind(label: str) -> str:
    if label.startswith(STUDENT_LABEL_PREFIX) or label in BUNDLED_STUDENTS:
        return "student"
    return "nequip" if label.startswith(NEQUIP_LABEL_PREFIX) else label


def require_packages(label: str) -> None:
    """Raise :class:`InputError` naming the extra to install when the package potential
    ``label`` (a :func:`potential_label`) imports is missing. Imports nothing."""
    package = REQUIRED_PACKAGES.get(_kind(label))
    if package is not None and importlib.util.find_spec(package) is None:
        name = "a fitted model" if _kind(label) == "nequip" else f"potential {label!r}"
        raise InputError(f"{name} needs the package {package}, which is not installed: "
                         f"{POTENTIAL_EXTRA_INSTALL}")


def check_model_file(path: Path) -> None:
    """Raise :class:`InputError` when ``path`` cannot be a compiled model: both formats
    (AOTInductor ``.pt2`` and TorchScript ``.pth``) are zip archives. Cheap; a zip that is not a
    model is only found when loading it."""
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a compiled NequIP/Allegro model (not a .pt2/.pth archive)")


def _load_sevennet(device: str):
    from sevenn.calculator import SevenNetCalculator

    return SevenNetCalculator(model=SEVENNET_CHECKPOINT, file_type="checkpoint", device=device)


def _load_chgnet(device: str):
    if importlib.util.find_spec("chgnet") is None:
        raise InputError(
            "potential 'chgnet' needs the optional package chgnet (pip install chgnet); "
            f"valid here: {_valid_names_text()}"
        )
    from chgnet.model import CHGNetCalculator

    return CHGNetCalculator(use_device=device)


def _load_emt(device: str):
    from ase.calculators.emt import EMT

    return EMT()


def _load_nequip(path: Path, device: str):
    """A calculator for the compiled model ``path`` (see :func:`~diffcrystal.potential.nequip_state.isolated_nequip_calculator_class`),
    with torch's previous default dtype and RNG states restored after loading.

    Not restored (process-wide, harmless to the generator): nequip's JIT fusion strategy, e3nn
    optimisation flags, two ``torch._dynamo`` capture flags and torch.multiprocessing's sharing
    strategy (``nequip/utils/global_state.py``)."""
    with preserved_torch_state():
        try:
            calculator = isolated_nequip_calculator_class().from_compiled_model(
                str(path), device=device, chemical_species_to_atom_type_map=True
            )
        except Exception as error:  # torch/nequip raise many kinds on a bad archive
            first_line = (str(error).strip().splitlines() or [""])[0]
            raise InputError(f"{path}: cannot load as a compiled NequIP/Allegro model "
                             f"({type(error).__name__}: {first_line})") from None
    return calculator


_LOADERS = {"sevennet-0": _load_sevennet, "chgnet": _load_chgnet, "emt": _load_emt}


def load_calculator(name: str | Path | None = DEFAULT_POTENTIAL, device: str = "cpu"):
    """An ASE calculator for potential ``name`` (see the module docstring) on ``device``.

    Raises
    ------
    InputError
        Unknown name (the message lists the valid ones), missing optional package (naming
        the extra to install), a path with no compiled model, or a model that does not load.
    """
    label = potential_label(name)
    require_packages(label)
    if label in _LOADERS:
        return _LOADERS[label](device)
    if _kind(label) == "student":
        from diffcrystal.potential.student_bundle import load_student_calculator

        return load_student_calculator(student_path(label), device)
    path = Path(label.split(":", 1)[1])
    check_model_file(path)
    return _load_nequip(path, device)


def _sevennet_checkpoint() -> Path:
    from sevenn.util import pretrained_name_to_path

    return Path(pretrained_name_to_path(SEVENNET_CHECKPOINT))


class Potential:
    """A potential resolved once (:func:`resolve_potential`): what relaxation, the relaxation
    cache and ranking need of it.

    ``label``: the canonical :func:`potential_label`; ``device``: where its calculator runs.
    Direct construction trusts ``label`` (a ``calculator`` given is used as is, e.g. a test
    double); :func:`resolve_potential` checks it. Pickled (for worker processes) as label and
    device only: each process loads its own calculator.
    """

    def __init__(self, label: str, device: str = "cpu", calculator=None):
        self.label = label
        self.device = device
        self._calculator = calculator
        self._identity: str | None = None

    def __repr__(self) -> str:
        return f"Potential({self.label!r}, device={self.device!r})"

    def __getstate__(self) -> dict:
        return {"label": self.label, "device": self.device}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["label"], state["device"])

    @property
    def kind(self) -> str:
        """``'sevennet-0'``, ``'chgnet'``, ``'emt'``, ``'student'`` (a student bundle) or
        ``'nequip'`` (a compiled fitted model)."""
        return _kind(self.label)

    @property
    def short_name(self) -> str:
        """The label without a model file's folders, for progress bars and plot titles."""
        return self.label.split("/")[-1]

    @property
    def calculator(self):
        """The ASE calculator (:func:`load_calculator`), loaded on first use and kept."""
        if self._calculator is None:
            self._calculator = load_calculator(self.label, device=self.device)
        return self._calculator

    def evaluator(self):
        """Energies, forces and stresses of a list of structures at once
        (:func:`~diffcrystal.potential.evaluators.batch_evaluator`)."""
        from diffcrystal.potential.evaluators import batch_evaluator

        return batch_evaluator(self.kind, self.calculator)

    @property
    def identity(self) -> str:
        """``'<label> <weights>'``: the label and what fixes its energies — the SHA-256 of
        SevenNet-0's checkpoint or of a fitted model file, the package version of EMT
        (parameters in ASE's code) and CHGNet (weights in its wheel)."""
        if self._identity is None:
            from diffcrystal.checkpoint import file_sha256
            from diffcrystal.data.cache import package_versions

            if self.label == "sevennet-0":
                weights = f"sha256:{file_sha256(_sevennet_checkpoint())}"
            elif _kind(self.label) == "student":
                weights = f"sha256:{file_sha256(student_path(self.label))}"
            elif _kind(self.label) == "nequip":
                weights = f"sha256:{file_sha256(Path(self.label.split(':', 1)[1]))}"
            else:
                package = {"emt": "ase", "chgnet": "chgnet"}[self.label]
                weights = f"{package}=={package_versions((package,))[package]}"
            self._identity = f"{self.label} {weights}"
        return self._identity

    @property
    def elements(self) -> frozenset[str] | None:
        """Chemical symbols the potential has parameters for (SevenNet-0: from its loaded model,
        which is kept for the relaxation; a student bundle: its header's element types), or
        ``None`` when not known (CHGNet, a compiled fitted model)."""
        if self.label == "emt":
            from ase.calculators.emt import parameters

            return frozenset(parameters)
        if self.label == "sevennet-0":
            from ase.data import chemical_symbols

            # the calculator's own type map (atomic number -> model index), read from the loaded
            # model: no checkpoint is unpickled here, and the model is needed right after anyway
            return frozenset(chemical_symbols[int(z)] for z in self.calculator.type_map)
        if _kind(self.label) == "student":
            from diffcrystal.potential.student_bundle import student_elements

            return student_elements(student_path(self.label))
        return None

    def check_elements(self, items: Iterable[tuple[str, object]]) -> None:
        """Raise :class:`InputError` naming the elements (and the first structures holding
        them) that the potential has no parameters for; ``items`` are ``(label, structure)``
        pairs (ASE ``Atoms``, :class:`~diffcrystal.data.crystal.Crystal`; others are skipped)."""
        known = self.elements
        if known is None:
            return
        unknown: dict[str, list[str]] = {}
        for name, item in items:
            symbols = _symbols(item)
            for symbol in sorted(symbols - known):
                unknown.setdefault(symbol, []).append(name)
        if unknown:
            names = sorted({n for holders in unknown.values() for n in holders})
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise InputError(
                f"potential {self.label} has no parameters for {', '.join(sorted(unknown))} "
                f"(in {shown}); it covers {', '.join(sorted(known))}")


def _symbols(item) -> set[str]:
    """Chemical symbols of an ASE ``Atoms`` or :class:`~diffcrystal.data.crystal.Crystal`
    (empty for anything else, e.g. a missing structure)."""
    if hasattr(item, "get_chemical_symbols"):
        return set(item.get_chemical_symbols())
    if hasattr(item, "atomic_numbers"):
        from ase.data import chemical_symbols

        return {chemical_symbols[int(z)] for z in item.atomic_numbers}
    return set()


def resolve_potential(potential: str | Path | Potential | None = DEFAULT_POTENTIAL,
                      device: str = "cpu", calculator=None) -> Potential:
    """``potential`` as a :class:`Potential` on ``device``, checked cheaply (name or path,
    installed packages, model file format) without loading it; a :class:`Potential` is
    returned as it is. ``calculator``: an already loaded ASE calculator of that potential.

    Raises :class:`InputError` naming the problem (unknown name, with the valid ones; a
    missing package, with the extra to install; a file that is no compiled model)."""
    if isinstance(potential, Potential):
        return potential
    label = potential_label(potential)
    require_packages(label)
    if label == "chgnet" and importlib.util.find_spec("chgnet") is None:
        _load_chgnet(device)  # raises the clear InputError
    if _kind(label) == "nequip":
        check_model_file(Path(label.split(":", 1)[1]))
    if _kind(label) == "student":
        from diffcrystal.potential.student_bundle import read_header

        read_header(student_path(label))
    return Potential(label, device, calculator)
