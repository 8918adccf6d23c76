"""``scripts/calibrate_ranking.py``: a target stride it cannot take is refused in one line
before any model or data is read, and nothing is written."""

from __future__ import annotations

import pytest

from tests.script_loading import load_script


@pytest.mark.parametrize("stride", [["--every", "0"], ["--offset", "-1"]])
def test_a_bad_stride_is_refused_in_one_line(tmp_path, capsys, stride):
    calibrate = load_script("calibrate_ranking")
    out = tmp_path / "calibration"
    assert calibrate.main([*stride, "--out", str(out)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "--every must be >= 1 and --offset >= 0" in error
    assert not out.exists()
