"""Lightning DataModule: read a dataset once, split it, batch crystals of mixed sizes."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch_geometric.loader import DataLoader

from diffcrystal.data.crystal import Crystal
from diffcrystal.data.graph import crystal_to_data
from diffcrystal.data.readers import SkippedEntry, read_crystals
from diffcrystal.data.statistics import DataStatistics
from diffcrystal.errors import InputError
from diffcrystal.training.config import DataConfig


def _sources(paths: str | list[str]) -> list[str]:
    return [paths] if isinstance(paths, str) else list(paths)


def _load(paths: str | list[str], canonical: bool) -> tuple[list[Crystal], list[SkippedEntry]]:
    """The crystals of one dataset or of several, concatenated in the order given, and the
    entries the reader skipped (each names its file and row and the reason)."""
    results = [read_crystals(path, canonical=canonical) for path in _sources(paths)]
    return [c for r in results for c in r.crystals], [s for r in results for s in r.skipped]


def filter_by_e_above_hull(
    crystals: list[Crystal], max_eV_atom: float | None, source: str
) -> tuple[list[Crystal], list[SkippedEntry]]:
    """The crystals with property ``e_above_hull`` <= ``max_eV_atom`` (all when it is None),
    and one :class:`SkippedEntry` for each of the others. A crystal without the property is
    an :class:`InputError`: the filter cannot be applied to it."""
    if max_eV_atom is None:
        return crystals, []
    kept, dropped = [], []
    for crystal in crystals:
        value = crystal.properties.get("e_above_hull")
        if value is None:
            raise InputError(
                f"data.max_e_above_hull is set but {crystal.label or 'a structure'} of {source} "
                "has no e_above_hull property"
            )
        if value <= max_eV_atom:
            kept.append(crystal)
        else:
            dropped.append(SkippedEntry(
                f"{source} {crystal.label}",
                f"e_above_hull {value:.3f} eV/atom > data.max_e_above_hull {max_eV_atom:g}",
            ))
    return kept, dropped


def load_split(config: DataConfig, seed: int) -> tuple[list[Crystal], list[Crystal], list[SkippedEntry]]:
    """(train, validation, skipped) as training sees them: ``config.train`` read and filtered
    by ``max_e_above_hull``; validation is ``config.val`` or, without it, a held-out
    ``val_fraction`` of the training crystals drawn by ``torch.randperm`` seeded with ``seed``
    (the train config's seed), so the same held-out set can be rebuilt after training."""
    crystals, skipped = _load(config.train, config.canonical)
    crystals, unstable = filter_by_e_above_hull(
        crystals, config.max_e_above_hull, ", ".join(Path(source).name for source in _sources(config.train)),
    )
    skipped += unstable
    if config.val:
        val, skipped_val = _load(config.val, config.canonical)
        return crystals, val, list(dict.fromkeys(skipped + skipped_val))  # val may be train
    order = torch.randperm(len(crystals), generator=torch.Generator().manual_seed(seed))
    num_val = max(1, round(config.val_fraction * len(crystals))) if len(crystals) > 1 else 0
    return [crystals[i] for i in order[num_val:].tolist()], [crystals[i] for i in order[:num_val].tolist()], skipped


class CrystalDataModule(L.LightningDataModule):
    """Reads ``config.train`` (and ``config.val``, or holds out ``config.val_fraction`` of the
    training file with a seeded split) and serves torch-geometric batches. ``skipped``: the
    entries of both that could not be read, after :meth:`setup`."""

    def __init__(self, config: DataConfig, seed: int = 0):
        super().__init__()
        if not config.train:
            raise InputError("no training data: set data.train in the config or pass --data")
        self.config = config
        self.seed = seed
        self.train_set: list = []
        self.val_set: list = []
        self.statistics: DataStatistics | None = None
        self.skipped: list[SkippedEntry] = []

    def prepare_data(self) -> None:
        # Runs once per node: fills the reader's cache so that every rank's setup() is fast.
        _load(self.config.train, self.config.canonical)
        if self.config.val:
            _load(self.config.val, self.config.canonical)

    def setup(self, stage: str | None = None) -> None:
        if self.statistics is not None:
            return
        train, val, self.skipped = load_split(self.config, self.seed)
        if not train:
            raise InputError(f"no training structures left in {self.config.train}")
        self.statistics = DataStatistics.from_crystals(train, ", ".join(_sources(self.config.train)))
        self.train_set = [crystal_to_data(c) for c in train]
        self.val_set = [crystal_to_data(c) for c in val]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.config.batch_size,
            shuffle=True,
            drop_last=len(self.train_set) > self.config.batch_size,
            num_workers=self.config.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set,
            batch_size=self.config.batch_size,
            shuffle=False,
            num_workers=self.config.num_workers,
        )
