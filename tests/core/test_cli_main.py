"""The command dispatcher: every subcommand is wired, help without one, lazy imports."""

import subprocess
import sys

import pytest

from diffcrystal.cli.main import SUBCOMMANDS, main


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(name in out for name in SUBCOMMANDS)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert f"diffcrystal {name}" in capsys.readouterr().out


def test_info_does_not_import_torch():
    code = "import sys; from diffcrystal.cli.main import build_parser; build_parser('info'); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
