"""A fitted NequIP/Allegro student as one safe file: weights in safetensors, its design as JSON.

``nequip-train`` checkpoints are pickles (loading one runs code) and compiled models are native
code built for one machine. A student that ships with diffcrystal, or that a user passes around,
is instead written by :func:`bundle_student` as a safetensors file whose header holds

- ``format``: :data:`STUDENT_FORMAT`;
- ``model``: the ``nequip`` model builder's keyword arguments (its ``model`` config section, with
  ``_target_`` the builder, one of :data:`MODEL_BUILDERS`);
- ``card``: a JSON object describing it (teacher, training frames, held-out errors...),

and the tensors are the evaluation model's state dict (EMA weights when the fit kept them).
:func:`load_student_calculator` rebuilds the model from the builder and loads the tensors: no
pickle is read and no code but the named builder runs. The model runs eagerly (no compilation),
under nequip's float64 default dtype as :mod:`~diffcrystal.potential.nequip_state` arranges.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffcrystal.errors import InputError

STUDENT_FORMAT = "diffcrystal-student/1"
"""Value of the ``format`` header field of a student bundle."""

STUDENT_SUFFIX = ".safetensors"
"""File ending of a student bundle."""

MODEL_BUILDERS = ("nequip.model.NequIPGNNModel", "allegro.model.AllegroModel")
"""The only model builders a bundle may name (those :mod:`~diffcrystal.potential.fit` trains)."""


def read_header(path: str | Path) -> dict:
    """``{'format', 'model', 'card'}`` of the bundle at ``path``, parsed; reads the header only.
    Raises :class:`InputError` naming the problem for anything that is not a student bundle."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such student file: {path}")
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises several kinds on a corrupt header
        raise InputError(f"{path}: not a safetensors file ({type(error).__name__}: {error})") from None
    if metadata.get("format") != STUDENT_FORMAT:
        raise InputError(f"{path}: not a diffcrystal student (format {metadata.get('format')!r}, "
                         f"expected {STUDENT_FORMAT!r})")
    try:
        header = {"format": metadata["format"], "model": json.loads(metadata["model"]),
                  "card": json.loads(metadata.get("card", "{}"))}
    except (KeyError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: the student's header is damaged ({type(error).__name__}: {error})") from None
    builder = header["model"].get("_target_")
    if builder not in MODEL_BUILDERS:
        raise InputError(f"{path}: unknown model builder {builder!r}; allowed: {', '.join(MODEL_BUILDERS)}")
    if not header["model"].get("type_names"):
        raise InputError(f"{path}: the student's header names no element types")
    return header


def student_elements(path: str | Path) -> frozenset[str]:
    """The chemical symbols the student at ``path`` has parameters for (its ``type_names``)."""
    return frozenset(read_header(path)["model"]["type_names"])


def bundle_student(checkpoint: str | Path, out: str | Path, card: dict | None = None) -> Path:
    """Write the ``nequip-train`` checkpoint ``checkpoint`` (a ``best.ckpt`` of
    :func:`~diffcrystal.potential.fit.train_student`) as a student bundle ``out`` with ``card``.

    The model section of the checkpoint's hyper-parameters (plain data, read with
    ``weights_only=True``) becomes the header's ``model``. The evaluation model (EMA weights) is
    taken through nequip's own checkpoint loader, which unpickles: bundle only checkpoints you
    trained yourself; the bundle it writes is then safe to pass on."""
    import torch
    from safetensors.torch import save

    from diffcrystal.atomic_write import atomic_write_bytes
    from diffcrystal.potential.nequip_state import load_checkpoint_calculator, preserved_torch_state

    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_file():
        raise InputError(f"no such nequip checkpoint: {checkpoint}")
    if out.suffix != STUDENT_SUFFIX:
        raise InputError(f"{out}: a student bundle must end in {STUDENT_SUFFIX}")
    try:
        config = torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]["model"]
    except Exception as error:  # torch raises many kinds on a damaged or foreign file
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise InputError(f"{checkpoint}: not a nequip-train checkpoint ({type(error).__name__}: {first_line})") from None
    if config.get("_target_") not in MODEL_BUILDERS:  # refused before nequip unpickles anything
        raise InputError(f"{checkpoint}: model builder {config.get('_target_')!r} is not one of {', '.join(MODEL_BUILDERS)}")
    with preserved_torch_state():
        model = load_checkpoint_calculator(checkpoint).model
        tensors = {name: value.detach().clone().contiguous() for name, value in model.state_dict().items()}
    metadata = {"format": STUDENT_FORMAT, "model": json.dumps(config), "card": json.dumps(card or {})}
    atomic_write_bytes(out, save(tensors, metadata=metadata))
    return out


def load_student_model(path: str | Path):
    """The student's ``nequip`` ``GraphModel`` in eval mode, rebuilt from its header and weights.
    Call under :func:`~diffcrystal.potential.nequip_state.preserved_torch_state` (nequip sets its
    global dtype and seeds)."""
    import torch
    from hydra.utils import get_method
    from nequip.utils.global_dtype import _GLOBAL_DTYPE
    from nequip.utils.global_state import set_global_state
    from safetensors.torch import load_file

    header = read_header(path)
    set_global_state()
    torch.set_default_dtype(_GLOBAL_DTYPE)
    arguments = dict(header["model"])
    model = get_method(arguments.pop("_target_"))(**arguments)
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as error:
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise InputError(f"{path}: the student's weights do not fit its design ({first_line})") from None
    return model.eval()


def load_student_calculator(path: str | Path, device: str = "cpu"):
    """An ASE calculator (nequip's, float64 inputs) for the student bundle at ``path``; torch's
    default dtype and RNG states are restored afterwards."""
    from nequip.integrations.utils import basic_transforms, handle_chemical_species_map
    from nequip.nn import graph_model

    from diffcrystal.potential.nequip_state import isolated_nequip_calculator_class, preserved_torch_state

    with preserved_torch_state():
        model = load_student_model(path)
        r_max = float(model.metadata[graph_model.R_MAX_KEY])
        type_names = model.metadata[graph_model.TYPE_NAMES_KEY].split(" ")
        species = handle_chemical_species_map(True, type_names)
        return isolated_nequip_calculator_class()(
            model=model, device=device,
            transforms=basic_transforms(model.metadata, r_max, type_names, species))
