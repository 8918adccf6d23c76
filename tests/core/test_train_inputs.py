"""``diffcrystal train`` with bad input: a mistyped config, an unwritable or occupied run
folder, a bad resume file, Trainer settings Lightning rejects, unreadable data rows. Each is
one line on stderr, exit code 1, and nothing written; resuming keeps the loss history."""

import csv
import os

import lightning as L
import pytest
import torch
import yaml
from ase.io import write
from pymatgen.core import Lattice, Structure

from diffcrystal.cli.main import main
from diffcrystal.data.crystal import Crystal
from diffcrystal.training.config import ExperimentConfig
from tests.core.conftest import Interrupt


def write_config(folder, values, name: str = "config.yaml") -> str:
    path = folder / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def train_cli(config: str, out, *extra) -> int:
    return main(["train", "--config", config, "--out", str(out), "--quiet", *map(str, extra)])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("diffcrystal train: error: ") and "\n" not in err, err
    return err.removeprefix("diffcrystal train: error: ")


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("data", "batch_size", "lots", "invalid config value data.batch_size: 'lots' (str); expected int"),
        ("train", "learning_rate", "fast", "invalid config value train.learning_rate: 'fast' (str); expected float"),
        ("train", "max_steps", 2.5, "invalid config value train.max_steps: 2.5 (float); expected int"),
        ("data", "canonical", "yes", "invalid config value data.canonical: 'yes' (str); expected bool (true/false)"),
        ("data", "train", ["a.csv", 3], "invalid config value data.train: ['a.csv', 3] (list); expected str or list of str"),
        ("model", "l_max", "two", "invalid config value model.l_max: 'two' (str); expected int"),
        ("diffusion", "lattice_clip_x0", "big", "invalid config value diffusion.lattice_clip_x0: 'big' (str); "
                                                "expected float or null"),
        ("train", "precision", 32, "invalid config value train.precision: 32 (int); expected one of '32-true', "
                                   "'bf16-mixed', '16-mixed', '64-true'"),
        ("train", "ema_decay", 1.5, "invalid config value train.ema_decay: 1.5; expected in [0, 1)"),
        ("data", "batch_size", 0, "invalid config value data.batch_size: 0; expected >= 1"),
        ("sampling", "corrector_min_t", -1, "invalid config value sampling.corrector_min_t: -1; expected >= 0"),
        ("sampling", "corrector_max_t", 0, "invalid config value sampling.corrector_max_t: 0; "
                                           "expected null or > sampling.corrector_min_t (0)"),
    ],
)
def test_mistyped_config_value_is_one_line_and_writes_nothing(
    tmp_path, capsys, tiny_data, make_config, section, key, value, expected
):
    values = make_config(tiny_data)
    values.setdefault(section, {})[key] = value
    out = tmp_path / "run"
    assert train_cli(write_config(tmp_path, values), out) == 1
    assert one_line_error(capsys) == expected
    assert not out.exists()


def test_yaml_1_1_numbers_written_as_strings_are_converted(tmp_path, tiny_data, make_config):
    """PyYAML reads ``1e-3`` and ``1e4`` (no decimal point) as strings; float fields and whole
    int fields convert them, and the run's saved config holds the numbers."""
    values = make_config(tiny_data)
    text = yaml.safe_dump(values).replace("learning_rate: 0.003", "learning_rate: 3e-3")
    text = text.replace("max_epochs: 1000", "max_epochs: 1e3")
    assert "3e-3" in text and "1e3" in text
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert yaml.safe_load(text)["train"]["learning_rate"] == "3e-3"  # the trap
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run"), "--max-steps", "1", "--quiet"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["learning_rate"] == 0.003 and saved["train"]["max_epochs"] == 1000
    values["train"]["max_epochs"] = "1.5e0"
    with pytest.raises(ValueError, match=r"train.max_epochs: '1.5e0' \(str\); expected int"):
        ExperimentConfig.from_dict(values)


def test_command_line_overrides_are_checked(tmp_path, capsys, tiny_data, make_config):
    assert train_cli(write_config(tmp_path, make_config(tiny_data)), tmp_path / "run", "--max-steps", "0") == 1
    assert one_line_error(capsys) == "invalid config value train.max_steps: 0; expected >= 1 or -1 (no limit)"
    assert not (tmp_path / "run").exists()


def test_missing_data_leaves_no_run_folder(tmp_path, capsys, tiny_data, make_config):
    config = write_config(tmp_path, make_config(tiny_data))
    assert train_cli(config, tmp_path / "run", "--data", tmp_path / "absent.csv") == 1
    assert one_line_error(capsys) == f"no such file or folder: {tmp_path / 'absent.csv'}"
    assert not (tmp_path / "run").exists()


def test_run_folder_under_a_file_is_refused_before_any_work(tmp_path, capsys, tiny_data, make_config):
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("a file, not a folder")
    config = write_config(tmp_path, make_config(tiny_data))
    assert train_cli(config, blocker / "run") == 1
    assert one_line_error(capsys) == f"cannot create run folder {blocker / 'run'}: {blocker} is a file, not a folder"
    assert train_cli(config, blocker) == 1
    assert one_line_error(capsys) == f"run folder {blocker} is an existing file, not a folder; choose another --out"
    assert blocker.read_text() == "a file, not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_run_folder_is_refused_before_any_work(tmp_path, capsys, tiny_data, make_config):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert train_cli(write_config(tmp_path, make_config(tiny_data)), locked / "run") == 1
        assert one_line_error(capsys).startswith(f"cannot write run folder {locked / 'run'}: {locked} is not writable")
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


def test_read_only_file_system_is_refused(tmp_path, capsys, tiny_data, make_config):
    """/proc refuses new files even to root: the probe write finds it, not the permission bits."""
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc on this platform")
    assert train_cli(write_config(tmp_path, make_config(tiny_data)), "/proc/diffcrystal-run") == 1
    assert one_line_error(capsys).startswith("cannot write run folder /proc/diffcrystal-run: /proc is not writable")


def test_trainer_settings_lightning_rejects_are_one_line(tmp_path, capsys, tiny_data, make_config):
    values = make_config(tiny_data, strategy="no-such-strategy")
    assert train_cli(write_config(tmp_path, values), tmp_path / "run") == 1
    message = one_line_error(capsys)
    assert message.startswith("invalid train settings (accelerator/devices/strategy/precision): ")
    assert "no-such-strategy" in message
    assert not (tmp_path / "run").exists()



def interrupted_run(tmp_path, monkeypatch, config_values, at_step: int):
    """A run of ``config_values`` in ``tmp_path / 'run'`` stopped after ``at_step`` steps."""
    import diffcrystal.training.train as training

    original = L.Trainer

    def make(*args, callbacks=(), **kwargs):
        return original(*args, callbacks=list(callbacks) + [Interrupt(at_step)], **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(training.L, "Trainer", make)
        with pytest.raises(SystemExit):  # Lightning shuts down gracefully, then exits
            training.train(ExperimentConfig.from_dict(config_values), tmp_path / "run", progress=False)
    return tmp_path / "run"


def logged_steps(run) -> list[int]:
    with open(run / "logs" / "metrics.csv", newline="") as stream:
        return [int(row["step"]) for row in csv.DictReader(stream) if row["train/loss"]]


def test_resume_keeps_the_loss_history(tmp_path, monkeypatch, capsys, tiny_data, make_config):
    values = make_config(tiny_data, max_steps=10, checkpoint_every_n_steps=4)
    run = interrupted_run(tmp_path, monkeypatch, values, at_step=6)
    assert logged_steps(run)[:4] == [0, 1, 2, 3]
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4
    assert train_cli(write_config(tmp_path, values), run, "--resume", last) == 0
    assert "trained 10 steps" in capsys.readouterr().out
    assert logged_steps(run) == list(range(10))  # steps before the checkpoint kept, later ones once


def test_occupied_run_folder_needs_resume(tmp_path, capsys, tiny_data, make_config):
    values = make_config(tiny_data, max_steps=1)
    config = write_config(tmp_path, values)
    assert train_cli(config, tmp_path / "run") == 0
    generator = (tmp_path / "run" / "generator.safetensors").read_bytes()
    capsys.readouterr()
    assert train_cli(config, tmp_path / "run") == 1
    assert one_line_error(capsys) == (
        f"{tmp_path / 'run'} already holds a training run (generator.safetensors); pass --resume "
        f"{tmp_path / 'run' / 'checkpoints' / 'last.ckpt'} to continue it, or choose another --out"
    )
    assert (tmp_path / "run" / "generator.safetensors").read_bytes() == generator


def test_bad_resume_files_are_one_line(tmp_path, capsys, tiny_data, make_config):
    values = make_config(tiny_data, max_steps=2)
    config = write_config(tmp_path, values)
    assert train_cli(config, tmp_path / "first") == 0
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[:1000])
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    other_model = dict(values, model=dict(values["model"], num_layers=2))
    cases = [
        (tmp_path / "absent.ckpt", config, f"resume checkpoint not found: {tmp_path / 'absent.ckpt'}"),
        (truncated, config, f"cannot resume from {truncated}: not a readable Lightning checkpoint ("),
        (tmp_path / "first" / "generator.safetensors", config,
         f"cannot resume from {tmp_path / 'first' / 'generator.safetensors'}: not a Lightning checkpoint of "
         "diffcrystal train (missing ['state_dict', 'global_step', 'loops', 'hyper_parameters']); resume from "
         "a run's checkpoints/last.ckpt"),
        (foreign, config, f"cannot resume from {foreign}: not a Lightning checkpoint of diffcrystal train (missing "),
        (last, write_config(tmp_path, other_model, "other_model.yaml"),
         f"cannot resume from {last}: it was trained with model.num_layers = 1, the config says 2"),
    ]
    capsys.readouterr()
    for resume, config_path, expected in cases:
        assert train_cli(config_path, tmp_path / "second", "--resume", resume) == 1
        message = one_line_error(capsys)
        assert message.startswith(expected), message
        assert not (tmp_path / "second").exists()


def test_unreadable_rows_are_listed_in_the_run_folder(tmp_path, capsys, tiny_data, make_config):
    """A structure with c = 0.01 Å (atoms 0.01 Å from their own images) is skipped, counted
    on stdout and listed with its frame and reason in skipped.csv."""
    from ase.io import read

    flat = Crystal.from_structure(Structure(Lattice.orthorhombic(5.0, 5.0, 0.01), ["Cu"], [[0, 0, 0]]))
    data = tmp_path / "with_flat.extxyz"
    write(data, read(tiny_data, ":") + [flat.to_atoms()], format="extxyz")
    values = make_config(data, max_steps=1)
    assert train_cli(write_config(tmp_path, values), tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert f"skipped 1 data entry (unreadable, or filtered by the config; each with its reason): {tmp_path / 'run' / 'skipped.csv'}" in out
    with open(tmp_path / "run" / "skipped.csv", newline="") as stream:
        (row,) = list(csv.DictReader(stream))
    assert row["source"].startswith("with_flat.extxyz frame 4")
    assert row["reason"].startswith("atoms too close to their own periodic image: 0.01 Å")


def test_e_above_hull_filter_lists_the_structures_it_drops(tmp_path, capsys, make_config):
    """data.max_e_above_hull keeps rows at or below the cut, lists each dropped row with its
    value in skipped.csv, and is a one-line error for data without the column."""
    import pandas as pd

    structures = [Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
                  for a in (3.2, 3.3, 3.4, 3.5, 3.6)]
    table = pd.DataFrame({
        "material_id": [f"x-{i}" for i in range(5)],
        "cif": [s.to(fmt="cif") for s in structures],
        "e_above_hull": [0.0, 0.08, 0.081, 0.5, 0.01],
    })
    data = tmp_path / "hull.csv"
    table.to_csv(data, index=False)
    values = make_config(data, max_steps=1)
    values["data"]["max_e_above_hull"] = 0.08
    values["data"]["val_fraction"] = 0.0
    assert train_cli(write_config(tmp_path, values), tmp_path / "run") == 0
    assert "skipped 2 data entries" in capsys.readouterr().out
    with open(tmp_path / "run" / "skipped.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["source"], row["reason"]) for row in rows] == [
        ("hull.csv x-2", "e_above_hull 0.081 eV/atom > data.max_e_above_hull 0.08"),
        ("hull.csv x-3", "e_above_hull 0.500 eV/atom > data.max_e_above_hull 0.08"),
    ]

    table.drop(columns="e_above_hull").to_csv(data, index=False)
    assert train_cli(write_config(tmp_path, values), tmp_path / "run_no_column") == 1
    assert one_line_error(capsys) == (
        "data.max_e_above_hull is set but x-0 of hull.csv has no e_above_hull property"
    )


def test_init_from_warm_starts_de_novo_from_a_csp_generator(tmp_path, capsys, tiny_data, tiny_generators,
                                                             make_config):
    """train.init_from copies every tensor a CSP generator shares with a de novo model (all but
    the species head), leaves the species head fresh, and is recorded in the run's config."""
    from diffcrystal.checkpoint import load_checkpoint
    from diffcrystal.models import Denoiser
    from diffcrystal.training.init_weights import read_initial_weights

    config = ExperimentConfig.from_dict(make_config(tiny_data, "denovo"))
    source, _ = load_checkpoint(tiny_generators["csp"])
    initial = read_initial_weights(str(tiny_generators["csp"]), config.model)
    model = Denoiser(config.model)
    initial.apply(model)
    state = model.state_dict()
    assert set(initial.tensors) == set(source) and all(torch.equal(state[k], v) for k, v in source.items())
    assert initial.fresh and all(name.startswith("species_head.") for name in initial.fresh)
    assert set(state) == set(source) | set(initial.fresh)

    values = make_config(tiny_data, "denovo", max_steps=1)
    values["train"]["init_from"] = str(tiny_generators["csp"])
    assert train_cli(write_config(tmp_path, values), tmp_path / "run") == 0
    run_config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert run_config["train"]["init_from"] == str(tiny_generators["csp"])


def test_bad_init_from_is_one_line_and_writes_nothing(tmp_path, capsys, tiny_data, tiny_generators, make_config):
    values = make_config(tiny_data, "csp")
    values["model"]["num_scalars"] = 2 * values["model"]["num_scalars"]
    config = write_config(tmp_path, values)
    assert train_cli(config, tmp_path / "run", "--init-from", tiny_generators["csp"]) == 1
    error = one_line_error(capsys)
    assert error.startswith(f"train.init_from: {tiny_generators['csp']} has ") and "model sections" in error

    # a de novo checkpoint into a CSP model would drop its species head: refused
    config = write_config(tmp_path, make_config(tiny_data, "csp"))
    assert train_cli(config, tmp_path / "run", "--init-from", tiny_generators["denovo"]) == 1
    assert "tensors this model lacks (first: species_head." in one_line_error(capsys)

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    assert train_cli(config, tmp_path / "run", "--init-from", broken) == 1
    assert one_line_error(capsys).startswith(f"train.init_from: corrupt or unreadable checkpoint {broken}")
    assert not (tmp_path / "run").exists()
