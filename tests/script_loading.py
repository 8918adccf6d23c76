"""Load a file of ``scripts/`` as a module: the scripts are command-line tools, not a package."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """A fresh module object of ``scripts/<name>.py`` (its module-level state is its own);
    ``name`` may name a subfolder, e.g. ``'studies/perov5_site_ambiguity'``."""
    path = SCRIPTS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
