"""Shared test options: ``--runslow`` runs tests marked ``slow`` (skipped by default and in CI).

Tests write nothing into ``$HOME``: the dataset cache (``~/.cache/diffcrystal``) and
matplotlib's config and font cache (``~/.config/matplotlib``, ``~/.cache/matplotlib``) are
temporary folders for the session (found by running the suite with an empty ``HOME``).
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from diffcrystal.data.cache import CACHE_ENV_VAR

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
"""The benchmark CSVs beside the checkout (``../shared/data``); tests that read them skip when
it is absent."""


MPL_ENV_VAR = "MPLCONFIGDIR"
"""matplotlib's config and cache folder; set before any test module can import matplotlib."""


def pytest_configure(config):
    if MPL_ENV_VAR not in os.environ:
        config.temporary_mpl_dir = tempfile.mkdtemp(prefix="diffcrystal-tests-matplotlib-")
        os.environ[MPL_ENV_VAR] = config.temporary_mpl_dir


def pytest_unconfigure(config):
    folder = getattr(config, "temporary_mpl_dir", None)
    if folder is not None:
        del os.environ[MPL_ENV_VAR]
        shutil.rmtree(folder, ignore_errors=True)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data folder {SHARED_DATA} not found")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def temporary_dataset_cache(tmp_path_factory) -> Path:
    """Points ``$DIFFCRYSTAL_CACHE`` (inherited by subprocesses) at a temporary folder for the
    whole session, so no test reads or writes the user's cache."""
    folder = tmp_path_factory.mktemp("diffcrystal_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV_VAR, str(folder))
        yield folder
