"""Start a run from another generator's weights (fine-tuning, or CSP → de novo warm start).

``train.init_from`` names a generator checkpoint (a ``.safetensors`` file or a bundled model's
name). Every denoiser tensor whose name and shape it shares with the new model is copied; the
rest keep their fresh initialisation. That covers fine-tuning a bundled model on a user's own
data (same config) and starting a de novo model from a CSP one, whose only extra tensors are
the species head's. The optimiser, EMA and schedule start fresh: this is a new run, not a
``--resume``. Data statistics come from the new training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from diffcrystal.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from diffcrystal.errors import InputError
from diffcrystal.experts import split_expert_tensors
from diffcrystal.models import Denoiser, DenoiserConfig


@dataclass(frozen=True)
class InitialWeights:
    """The tensors of checkpoint ``source`` that a model shares (``tensors``), and the model's
    tensors it lacks (``fresh``: they keep their fresh initialisation)."""

    source: Path
    tensors: dict[str, torch.Tensor]
    fresh: tuple[str, ...]

    def apply(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.tensors, strict=False)

    def summary(self) -> str:
        parts = sorted({name.split(".")[0] for name in self.fresh})
        fresh = f"; {len(self.fresh)} fresh ({', '.join(parts)})" if self.fresh else ""
        return f"initialised {len(self.tensors)} tensors from {self.source}{fresh}"


def read_initial_weights(spec: str | Path, model_config: DenoiserConfig) -> InitialWeights:
    """Read generator checkpoint ``spec`` and check it against a denoiser of ``model_config``.

    Raises :class:`InputError` when the checkpoint cannot be read, when a tensor both hold has
    another shape (another architecture: e.g. a different ``num_scalars``), or when the
    checkpoint holds tensors the model lacks (its weights would be silently dropped).
    """
    try:
        path = resolve_checkpoint(str(spec), mode="csp")
        tensors, _ = split_expert_tensors(load_checkpoint(path)[0])  # a low-noise expert is not used
    except CheckpointError as error:
        raise InputError(f"train.init_from: {error}") from None
    own = Denoiser(model_config).state_dict()
    unused = sorted(set(tensors) - set(own))
    if unused:
        raise InputError(
            f"train.init_from: {path} holds {len(unused)} tensors this model lacks "
            f"(first: {unused[0]}); use a checkpoint of the same architecture"
        )
    for name, tensor in tensors.items():
        if tensor.shape != own[name].shape:
            raise InputError(
                f"train.init_from: {path} has {name} of shape {tuple(tensor.shape)}, this model "
                f"{tuple(own[name].shape)}; the model sections of the two configs differ"
            )
    return InitialWeights(path, tensors, tuple(sorted(set(own) - set(tensors))))
