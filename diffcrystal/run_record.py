"""The record of a ``diffcrystal sample`` run: ``run.json`` in its folder.

:mod:`diffcrystal.sampling` writes it (checkpoint and its SHA-256, composition as typed,
options, seed) and checks a resume against it; :mod:`diffcrystal.overview` reads the
checkpoint's hash from it. Both import the name from here, so neither imports the other for it.
"""

RUN_RECORD_NAME = "run.json"
"""File name of the run record in a sample folder."""
