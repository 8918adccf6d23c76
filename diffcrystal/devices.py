"""Where models run: the device names every command accepts (no torch import here, so that
``--help`` and argument checks stay fast; :func:`diffcrystal.api.resolve_device` maps them)."""

DEVICES = ("auto", "cpu", "cuda")
"""``auto``: CUDA when available, else the CPU."""
