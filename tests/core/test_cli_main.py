"""The command dispatcher: every subcommand is wired, help without one, lazy imports."""

import argparse
import subprocess
import sys

import pytest

from diffcrystal.cli.main import SUBCOMMANDS, build_parser, main


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


def _imports_torch(arguments: list[str]) -> tuple[bool, int]:
    """Whether ``diffcrystal ARGUMENTS`` imported torch, and its exit code (in a fresh process)."""
    code = ("import sys\nfrom diffcrystal.cli.main import main\n"
            f"try:\n    code = main({arguments!r})\nexcept SystemExit as exit:\n    code = exit.code\n"
            "print('torch' in sys.modules, code)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported, exit_code = result.stdout.split()[-2:]
    return imported == "True", int(exit_code)


@pytest.mark.parametrize("arguments, exit_code", [
    (["sample", "--help"], 0),
    (["sample", "--compositon", "NaCl"], 2),
    (["sample", "--composition", "XxO2"], 1),
    (["sample", "--composition", "NaCl", "--n", "0"], 1),
    (["sample", "--composition", "NaCl", "--formula-units", "0"], 1),
    (["evaluate", "--help"], 0),
    (["relax", "--help"], 0),
    (["rank", "--help"], 0),
    (["predict", "--help"], 0),
    (["predict", "--composition", "NaCl", "--sources", "magic"], 1),
    (["evaluate", "--data", "test.csv", "--k", "0"], 1),
    (["train", "--help"], 0),
    (["potential", "fit", "--help"], 0),
    (["potential", "frames", "a.cif", "--out", "f.extxyz", "--copies", "0"], 1),
])
def test_help_and_invalid_arguments_answer_before_torch_loads(arguments, exit_code):
    assert _imports_torch(arguments) == (False, exit_code)


def _walk(parser: argparse.ArgumentParser):
    """``(parser, action)`` for every action of ``parser`` and of its nested subparsers."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _walk(sub)
        else:
            yield parser, action


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_option_has_help_text(name):
    _, configured = build_parser(name)
    actions = list(_walk(configured[name][1]))
    shown = {(parser.prog, action.dest) for parser, action in actions if action.help and action.help != argparse.SUPPRESS}
    # a hidden option is allowed only as the old name of a shown one (e.g. --no-progress for --quiet)
    missing = [f"{parser.prog} {action.dest}" for parser, action in actions
               if not action.help or (action.help == argparse.SUPPRESS and (parser.prog, action.dest) not in shown)]
    assert not missing


@pytest.mark.parametrize("arguments, message", [
    (["sample", "--composition", "NaCl", "--formula-units", "0"], "--formula-units must be at least 1, got 0"),
    (["sample", "--composition", "NaCl", "--n", "0"], "--n must be at least 1, got 0"),
    (["evaluate", "--data", "test.csv", "--k", "0"], "--k must be at least 1, got 0"),
    (["evaluate", "--data", "test.csv", "--workers", "-1"], "--workers must be at least 0, got -1"),
    (["info", "data.csv", "--workers", "-1"], "--workers must be at least 0, got -1"),
    (["potential", "frames", "a.cif", "--out", "f.extxyz", "--copies", "0"], "--copies must be at least 1, got 0"),
    (["potential", "fit", "--frames", "f.extxyz", "--out", "o", "--epochs", "0"], "--epochs must be at least 1, got 0"),
])
def test_unusable_values_are_one_line_errors_with_exit_code_1(arguments, message, capsys):
    assert main(arguments) == 1
    assert capsys.readouterr().err == f"diffcrystal {arguments[0]}: error: {message}\n"


@pytest.mark.parametrize("arguments, message", [
    (["sample", "--compositon", "NaCl"],
     "diffcrystal sample: error: unrecognized arguments: --compositon NaCl (did you mean --composition?); "
     "see diffcrystal sample --help"),
    (["sample", "--n", "many"],
     "diffcrystal sample: error: argument --n: invalid int value: 'many'; see diffcrystal sample --help"),
    (["evaluate", "--k", "2"],
     "diffcrystal evaluate: error: the following arguments are required: --data; see diffcrystal evaluate --help"),
    (["sample", "--formula-units", "1,x"], "formula units must be integers like '1' or '1,2', got '1,x'"),
])
def test_unreadable_command_lines_are_one_line_errors_with_exit_code_2(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def _warn_like_sevennet() -> None:
    """What SevenNet does in each process that loads it (sevenn.util.warn_no_tp_accelerator)."""
    import warnings

    warnings.warn("No tensor product accelerator is enabled for SevenNetCalculator. SevenNet may run "
                  "much slower without a TP accelerator.", UserWarning)


def test_sevennet_accelerator_advice_is_hidden_in_the_command_and_its_workers(capfd, recwarn):
    import multiprocessing

    from diffcrystal.cli.quiet_warnings import hidden_third_party_warnings

    with hidden_third_party_warnings():
        _warn_like_sevennet()
        worker = multiprocessing.get_context("spawn").Process(target=_warn_like_sevennet)
        worker.start()
        worker.join()
    assert worker.exitcode == 0 and "accelerator" not in capfd.readouterr().err
    assert not [w for w in recwarn if "accelerator" in str(w.message)]


def test_labelling_with_sevennet_shows_no_accelerator_advice(tmp_path, capfd, recwarn):
    from ase.build import bulk
    from ase.io import write

    frames = tmp_path / "frames.extxyz"
    write(frames, [bulk("NaCl", "rocksalt", a=5.64)], format="extxyz")
    assert main(["potential", "label", "--teacher", "sevennet-0", "--frames", str(frames),
                 "--out", str(tmp_path / "labelled.extxyz")]) == 0
    assert "accelerator" not in capfd.readouterr().err
    assert not [w for w in recwarn if "accelerator" in str(w.message)]
