"""A Dask worker plugin for the killed-worker test: the first task of one composition, on
whichever worker runs it, writes its process id to a file and then waits (so the test can
kill that process mid-task); later attempts run normally."""

import os
import time
from pathlib import Path

from distributed import WorkerPlugin

WAIT_LIMIT_S = 300
"""How long the first attempt waits to be killed before giving up (a broken test, not a pass)."""


class BlockFirstAttempt(WorkerPlugin):
    """Makes :func:`diffcrystal.screening.predict` of ``formula`` block once; ``marker``: the
    file that receives the blocked process's id (its existence means 'already blocked once')."""

    def __init__(self, formula: str, marker: str):
        self.formula, self.marker = formula, marker

    def setup(self, worker):
        import diffcrystal.screening as screening

        original = screening.predict
        formula, marker = self.formula, Path(self.marker)

        def predict(composition, **options):
            if composition == formula and not marker.exists():
                marker.with_suffix(".tmp").write_text(str(os.getpid()))
                marker.with_suffix(".tmp").replace(marker)
                started = time.monotonic()
                while time.monotonic() - started < WAIT_LIMIT_S:
                    time.sleep(0.2)
                raise RuntimeError("the blocked attempt was never killed")
            return original(composition, **options)

        screening.predict = predict
