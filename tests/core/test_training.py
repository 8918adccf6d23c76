"""Training: a tiny model overfits, a killed run resumes at its checkpointed step, the
exported generator is safe and complete."""

import logging

import lightning as L
import pytest
import torch

from diffcrystal.checkpoint import load_checkpoint
from diffcrystal.data.graph import collate
from diffcrystal.data.readers import read_crystals
from diffcrystal.errors import InputError
from diffcrystal.generator import Generator
from diffcrystal.training.config import ExperimentConfig, load_config
from diffcrystal.training.train import train
from tests.core.conftest import Interrupt


def fixed_noise_loss(generator: Generator, data) -> float:
    """The joint loss on the tiny data averaged over a fixed set of noise draws."""
    batch = collate(read_crystals(data, canonical=False, cache=False, progress=False).crystals)
    losses = []
    with torch.no_grad():
        for seed in range(8):
            noise = torch.Generator().manual_seed(seed)
            losses.append(float(generator.joint.training_loss(generator.denoiser, batch, noise)["loss"]))
    return sum(losses) / len(losses)


def test_tiny_model_overfits(tmp_path, tiny_data, make_config):
    config = ExperimentConfig.from_dict(make_config(tiny_data, max_steps=1, ema_decay=0.0))
    start = fixed_noise_loss(Generator.from_checkpoint(train(config, tmp_path / "a", progress=False).generator_path), tiny_data)
    config.train.max_steps = 150
    trained = Generator.from_checkpoint(train(config, tmp_path / "b", progress=False).generator_path)
    end = fixed_noise_loss(trained, tiny_data)
    assert end < 0.5 * start, (start, end)



class FirstStep(L.Callback):
    def __init__(self):
        self.first = None

    def on_train_batch_start(self, trainer, *args):
        if self.first is None:
            self.first = trainer.global_step


def test_kill_and_resume(tmp_path, tiny_data, monkeypatch, make_config):
    import diffcrystal.training.train as training

    config = ExperimentConfig.from_dict(make_config(tiny_data, max_steps=12, checkpoint_every_n_steps=4))
    original = L.Trainer

    def trainer_with(extra):
        def make(*args, callbacks=(), **kwargs):
            return original(*args, callbacks=list(callbacks) + [extra], **kwargs)
        return make

    monkeypatch.setattr(training.L, "Trainer", trainer_with(Interrupt(at_step=6)))
    with pytest.raises(SystemExit):  # Lightning shuts down gracefully, then exits
        train(config, tmp_path, progress=False)
    last = tmp_path / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 4  # the last checkpoint before the interrupt
    clock = saved["callbacks"]["TrainingClock"]
    assert clock["time_elapsed"]["train"] > 0 and clock["cpu_time_s"] > 0
    clock["time_elapsed"]["train"] = clock["cpu_time_s"] = 1e6  # as if the first run had taken that long
    torch.save(saved, last)

    first = FirstStep()
    monkeypatch.setattr(training.L, "Trainer", trainer_with(first))
    result = train(config, tmp_path, resume=last, progress=False)
    assert first.first == 4
    assert result.global_step == 12
    _, exported = load_checkpoint(result.generator_path)
    assert 1e6 < exported["training"]["wall_time_s"] < 1e6 + 600  # earlier runs' time carried over
    assert 1e6 < exported["training"]["cpu_time_s"] < 1e6 + 600


def test_resume_of_a_run_older_than_the_clock_counts_its_wall_time(tmp_path, tiny_data, make_config):
    config = ExperimentConfig.from_dict(make_config(tiny_data, max_steps=2, checkpoint_every_n_steps=1))
    train(config, tmp_path, progress=False)
    last = tmp_path / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    del saved["callbacks"]["TrainingClock"]
    saved["callbacks"]["ExportGenerator"] = {"wall_time_s": 1e6}  # where such runs kept their time
    torch.save(saved, last)
    config.train.max_steps = 4
    result = train(config, tmp_path, resume=last, progress=False)
    assert result.global_step == 4 and 1e6 < result.wall_time_s < 1e6 + 600
    _, exported = load_checkpoint(result.generator_path)
    assert 0 < exported["training"]["cpu_time_s"] < 600  # unknown before the clock: this session's only


def test_exported_generator_records_config_and_data(tiny_generators):
    tensors, config = load_checkpoint(tiny_generators["denovo"])
    assert config["experiment"]["diffusion"]["mode"] == "denovo"
    assert config["statistics"]["species"] == [8, 11, 17, 22, 29, 38, 55]
    assert config["statistics"]["num_atoms_histogram"] == {"2": 1, "4": 1, "5": 1, "8": 1}
    assert config["training"]["global_step"] == 3
    assert all(torch.isfinite(t).all() for t in tensors.values())


def test_config_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain:\n  max_epoch: 3\n")
    with pytest.raises(InputError, match=r"unknown key\(s\) \['max_epoch'\] in config section 'train'"):
        load_config(bad)
    bad.write_text("name: x\nmodel:\n  l_max: 5\n")
    with pytest.raises(InputError, match="l_max"):
        load_config(bad)
    bad.write_text("name: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(bad)


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert len(configs) >= 6
    for path in configs:
        config = load_config(path)
        assert config.model.predict_species == (config.diffusion.mode == "denovo"), path


def test_shipped_warm_starts_fit_their_configs(monkeypatch):
    """Every shipped config that starts from other weights (``train.init_from``) names a file
    whose tensors fit its model: a bundled model replaced by a wider one must not break the
    configs that warm-started from the old one."""
    from pathlib import Path

    from diffcrystal.training.init_weights import read_initial_weights

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)  # configs name their files from the repository root, as they are run
    warm = [load_config(path) for path in sorted((root / "configs").rglob("*.yaml"))]
    warm = [config for config in warm if config.train.init_from]
    assert len(warm) >= 3
    for config in warm:
        initial = read_initial_weights(config.train.init_from, config.model)
        expected_fresh = {"species_head"} if config.model.predict_species else set()
        assert {name.split(".")[0] for name in initial.fresh} == expected_fresh, (config.name, initial.summary())



def test_several_training_sources_are_read_as_one_dataset(tmp_path, tiny_data):
    from ase.build import bulk
    from ase.io import write

    from diffcrystal.training.config import DataConfig
    from diffcrystal.training.datamodule import CrystalDataModule

    extra = tmp_path / "salts.extxyz"
    write(extra, [bulk("NaCl", "rocksalt", a=5.64), bulk("KCl", "rocksalt", a=6.29)], format="extxyz")
    single = CrystalDataModule(DataConfig(train=str(tiny_data), val_fraction=0.0))
    single.setup("fit")
    both = CrystalDataModule(DataConfig(train=[str(tiny_data), str(extra)], val_fraction=0.0))
    both.setup("fit")
    assert both.statistics.num_structures == single.statistics.num_structures + 2
    assert 19 in both.statistics.species and 19 not in single.statistics.species  # K comes from the 2nd file
    assert both.statistics.source == f"{tiny_data}, {extra}"


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_train_command_is_quiet_on_stderr(tmp_path, tiny_data, make_config, capfd, recwarn):
    import yaml

    from diffcrystal.cli.main import main

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(make_config(tiny_data, max_steps=1)))
    lightning_log, recorder = logging.getLogger("lightning.pytorch"), _Recorder()  # where its info lines go
    lightning_log.addHandler(recorder)
    try:
        assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    finally:
        lightning_log.removeHandler(recorder)
    assert recorder.messages == []  # no 'GPU available', no tip banner, no model summary
    out, err = capfd.readouterr()
    assert err == "" and "trained 1 step (" in out and "generator:" in out
    assert not [w for w in recwarn if "LeafSpec" in str(w.message)]
