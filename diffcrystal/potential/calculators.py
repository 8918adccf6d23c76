"""ASE calculators by name or path: the one door through which diffcrystal gets a potential.

Valid names (:data:`POTENTIAL_NAMES`):

- ``sevennet-0`` (default): SevenNet-0 (11 Jul 2024), a NequIP-architecture universal potential
  trained on MPtrj, package ``sevenn``. Its weights ship inside the wheel, so it loads offline.
- ``chgnet``: CHGNet, only when the optional package ``chgnet`` is installed.
- ``emt``: ASE's effective-medium theory (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O crudely).
  Exact and fast, meant for tests.
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
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import zipfile
from pathlib import Path

import numpy as np

from diffcrystal.errors import InputError

DEFAULT_POTENTIAL = "sevennet-0"
"""The potential used when none is named."""

POTENTIAL_NAMES = ("sevennet-0", "chgnet", "emt")
"""Named potentials; anything else must be a path to a fitted NequIP/Allegro model."""

SEVENNET_CHECKPOINT = "7net-0"
"""``sevenn``'s name of the SevenNet-0 (11Jul2024) checkpoint bundled in its wheel."""

COMPILED_MODEL_SUFFIXES = (".nequip.pth", ".nequip.pt2")
"""File endings ``nequip-compile`` requires (TorchScript, AOTInductor)."""

COMPILED_MODEL_NAME = "model.nequip.pt2"
"""Name of the compiled model inside a ``diffcrystal potential fit`` output folder."""

POTENTIAL_EXTRA_INSTALL = 'pip install "diffcrystal[potential]"'
"""How to install the packages of ``sevennet-0`` and fitted models (pyproject's ``potential`` extra)."""

REQUIRED_PACKAGES = {"sevennet-0": "sevenn", "nequip": "nequip"}
"""Package each potential kind imports (model paths are the ``nequip`` kind)."""


def _valid_names_text() -> str:
    return ", ".join(POTENTIAL_NAMES) + ", or a path to a fitted NequIP/Allegro model"


def _is_path_like(name: str) -> bool:
    return any(sep in name for sep in ("/", "\\")) or name.endswith(COMPILED_MODEL_SUFFIXES) or Path(name).exists()


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
    mixed: a lower-case name from :data:`POTENTIAL_NAMES`, or ``nequip:<absolute path>``."""
    name = DEFAULT_POTENTIAL if name is None else str(name)
    if name.lower() in POTENTIAL_NAMES:
        return name.lower()
    if _is_path_like(name):
        return f"nequip:{resolve_model_path(name)}"
    raise InputError(f"unknown potential {name!r}; valid: {_valid_names_text()}")


@contextlib.contextmanager
def preserved_torch_state():
    """Restore torch's default dtype and the torch, numpy and ``random`` RNG states on exit.

    Wraps anything that imports or loads ``nequip`` (which sets float64 and seeds every RNG).
    """
    import torch

    dtype = torch.get_default_dtype()
    torch_rng = torch.get_rng_state()
    numpy_rng = np.random.get_state()
    python_rng = random.getstate()
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_rng_state(torch_rng)
        np.random.set_state(numpy_rng)
        random.setstate(python_rng)


def _kind(label: str) -> str:
    return "nequip" if label.startswith("nequip:") else label


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


@contextlib.contextmanager
def _default_dtype(dtype):
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _load_nequip(path: Path, device: str):
    """A ``NequIPCalculator`` whose every call runs under nequip's float64 default dtype (its
    ``from_ase`` builds input tensors in the default dtype, and a compiled model fed float32
    positions returns NaN), with torch's previous default restored after loading and each call.

    Not restored (process-wide, harmless to the generator): nequip's JIT fusion strategy, e3nn
    optimisation flags, two ``torch._dynamo`` capture flags and torch.multiprocessing's sharing
    strategy (``nequip/utils/global_state.py``)."""
    with preserved_torch_state():
        from nequip.integrations.ase import NequIPCalculator
        from nequip.utils.global_dtype import _GLOBAL_DTYPE

        class IsolatedNequIPCalculator(NequIPCalculator):
            def calculate(self, *args, **kwargs):
                with _default_dtype(_GLOBAL_DTYPE):
                    return super().calculate(*args, **kwargs)

        try:
            calculator = IsolatedNequIPCalculator.from_compiled_model(
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
    path = Path(label.split(":", 1)[1])
    check_model_file(path)
    return _load_nequip(path, device)
