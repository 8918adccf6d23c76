"""Shared test options: ``--runslow`` runs tests marked ``slow`` (skipped by default and in CI);
every test uses a temporary dataset cache instead of the user's ``~/.cache/diffcrystal``."""

from pathlib import Path

import pytest

from diffcrystal.data.cache import CACHE_ENV_VAR

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
"""The benchmark CSVs beside the checkout (``../shared/data``); tests that read them skip when
it is absent."""


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
