"""Lightning without its start-up chatter on stderr.

Inside :func:`quiet_lightning`, Lightning's info lines (``GPU available: False``, the
cloud-logging tip, ``Loading `train_dataloader` ...``, ``Trainer.fit stopped``) and the
FutureWarning torch raises for Lightning's own use of ``LeafSpec`` are not shown; Lightning's
warnings about the run itself still are.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
"""The loggers Lightning writes its info lines to (children inherit their level)."""

LEAFSPEC_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
"""torch's FutureWarning for Lightning's pytree helper (lightning 2.6, torch 2.13)."""


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Raise Lightning's loggers to WARNING and hide the LeafSpec FutureWarning; restored after."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=LEAFSPEC_DEPRECATION, category=FutureWarning)
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
