"""Checks on a ``--resume`` file before training starts: it must be a Lightning checkpoint
written by :func:`~diffcrystal.training.train.train` for the same model and diffusion.

A missing, truncated or foreign file (a generator ``.safetensors``, any other pickle) gives one
:class:`~diffcrystal.errors.InputError` naming the file, instead of a traceback from deep in
Lightning. The file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffcrystal.errors import InputError
from diffcrystal.training.config import ExperimentConfig

REQUIRED_KEYS = ("state_dict", "global_step", "loops", "hyper_parameters")
"""Entries every Lightning checkpoint of a diffcrystal run holds."""

MATCHED_SECTIONS = ("model", "diffusion")
"""Config sections that must equal the checkpoint's: they define the weights' shapes and
meaning (data, sampling and train settings may change on resume)."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def check_resume(path: str | Path, config: ExperimentConfig) -> int:
    """The optimiser step at which checkpoint ``path`` resumes; raises :class:`InputError`
    when it is missing, unreadable, not a diffcrystal Lightning checkpoint, or was trained
    with another model or diffusion config than ``config``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"resume checkpoint not found: {path}")
    hint = "resume from a run's checkpoints/last.ckpt"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise InputError(
            f"cannot resume from {path}: not a readable Lightning checkpoint ({_first_line(error)}); {hint}"
        ) from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(saved, dict) or key not in saved]
    saved_config = saved.get("hyper_parameters", {}).get("config") if not missing else None
    if missing or not isinstance(saved_config, dict):
        raise InputError(
            f"cannot resume from {path}: not a Lightning checkpoint of diffcrystal train "
            f"(missing {missing or ['hyper_parameters.config']}); {hint}"
        )
    try:  # fills defaults of keys added since the checkpoint was written
        saved_config = ExperimentConfig.from_dict(saved_config).to_dict()
    except InputError as error:
        raise InputError(f"cannot resume from {path}: its saved config is invalid ({error})") from None
    current = config.to_dict()
    for section in MATCHED_SECTIONS:
        theirs, ours = saved_config[section], current[section]
        differing = sorted(key for key in set(theirs) | set(ours) if theirs.get(key) != ours.get(key))
        if differing:
            key = differing[0]
            raise InputError(
                f"cannot resume from {path}: it was trained with {section}.{key} = "
                f"{theirs.get(key)!r}, the config says {ours.get(key)!r}"
                + (f" ({len(differing) - 1} more differences)" if len(differing) > 1 else "")
            )
    return int(saved["global_step"])
