"""The bundled checkpoints: present, registered, loadable, and the README's command works."""

import csv

import pytest

from diffcrystal.checkpoint import bundled_checkpoint, bundled_models, load_checkpoint
from diffcrystal.cli.main import main


@pytest.mark.parametrize("name", sorted(bundled_models()))
def test_bundled_checkpoint_is_registered_and_loads(name):
    from diffcrystal.generator import Generator

    mode = bundled_models()[name]["mode"]
    path = bundled_checkpoint(name)
    assert path.stat().st_size < 20e6
    _, config = load_checkpoint(path)
    assert config["experiment"]["name"] == name
    assert config["experiment"]["diffusion"]["mode"] == mode
    assert config["training"]["global_step"] > 1000  # a trained model, not random weights
    assert Generator.from_checkpoint(path).mode == mode


@pytest.mark.parametrize("mode", ["csp", "denovo"])
def test_every_mode_has_a_bundled_default(mode):
    assert bundled_models()[bundled_checkpoint(mode).stem]["mode"] == mode


@pytest.mark.slow
def test_readme_command_with_bundled_checkpoint(tmp_path):
    assert main(["sample", "--composition", "YBa2Cu3O7", "--n", "5", "--out", str(tmp_path), "--quiet"]) == 0
    with open(tmp_path / "summary.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 5 and all(r["n_atoms"] == "13" for r in rows)


def test_bundled_csp_model_reproduces_training_structures(shared_data, tmp_path):
    """Sampled with the compositions of training perovskites, the perovskite/carbon model gives back
    those structures (StructureMatcher, DiffCSP tolerances) for most of them within 5 tries."""
    import torch
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from diffcrystal.data.readers import read_crystals
    from diffcrystal.generator import Generator

    generator = Generator.from_checkpoint(bundled_checkpoint("perov5_carbon24_csp"))
    import pandas as pd

    first_rows = tmp_path / "train_head.csv"  # parse 10 rows, not the whole file
    pd.read_csv(shared_data / "perov_5" / "train.csv").head(10).to_csv(first_rows, index=False)
    targets = read_crystals(first_rows, progress=False, cache=False).crystals
    tries = 5
    samples = generator.sample([t.num_atoms for t in targets for _ in range(tries)],
                               [t.atomic_numbers.tolist() for t in targets for _ in range(tries)],
                               num_steps=100, generator=torch.Generator().manual_seed(0))
    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)

    def matches(sample, target) -> bool:
        """DiffCSP's criterion: get_rms_dist finds a mapping (normalised RMS below stol)."""
        found = matcher.get_rms_dist(sample.to_structure(), target.to_structure())
        return found is not None and found[0] < 0.5

    matched = sum(
        any(matches(s, t) for s in samples[i * tries : (i + 1) * tries] if not isinstance(s, Exception))
        for i, t in enumerate(targets)
    )
    assert matched >= 7, matched


SMALL_AND_LARGE = {
    # Two 5-atom perovskites of ``perov_5/train.csv`` with about the smallest and the largest
    # volume per atom in it (Å³/atom, read from the file).
    "perov_5": {"LiBO2N": 7.68, "CsBaO2S": 34.04},
    # Two 2-atom alkali halides of ``mp_20/train.csv``: rock-salt NaCl (mp-22862) and
    # CsCl-type RbI (mp-23302).
    "mp_20": {"NaCl": 23.05, "RbI": 43.86},
}
"""Per training set, two compositions with the same atom count and very different volumes."""


@pytest.mark.parametrize(("name", "data"), [("csp", "mp_20"), ("mp20_csp", "mp_20"),
                                            ("perov5_carbon24_csp", "perov_5"), ("perov5_csp", "perov_5")])
def test_csp_model_uses_the_composition(name, data):
    """With the same seed (the same noise for every atom), two compositions with the same atom
    count get different structures: a composition-blind model would return identical cells.
    Each composition's median volume per atom lands within 25 % of its training value (the two
    ranges do not overlap)."""
    import numpy as np
    import torch
    from pymatgen.core import Composition

    from diffcrystal.generator import Generator

    generator = Generator.from_checkpoint(bundled_checkpoint(name))
    n = 10
    medians = {}
    (small, _), (large, _) = SMALL_AND_LARGE[data].items()
    for formula, volume in SMALL_AND_LARGE[data].items():
        species = [el.Z for el, count in Composition(formula).items() for _ in range(int(count))]
        samples = generator.sample([len(species)] * n, [species] * n, num_steps=100,
                                   generator=torch.Generator().manual_seed(0))
        crystals = [s for s in samples if not isinstance(s, Exception)]
        assert len(crystals) >= n // 2, formula
        medians[formula] = float(np.median([abs(np.linalg.det(c.lattice)) / c.num_atoms for c in crystals]))
        assert abs(medians[formula] / volume - 1) < 0.25, medians
    assert medians[large] > medians[small], medians


def test_mp20_model_samples_rock_salt_for_nacl():
    """The MP-20 model has seen the periodic table: among 20 NaCl samples (seed 0) at least
    one is rock salt within RMSE 0.1 (DiffCSP's matcher), which the perovskite/carbon models
    do not manage (docs/benchmarks.md, section "MP-20 CSP")."""
    import torch

    from diffcrystal.generator import Generator
    from diffcrystal.metrics import csp_metrics
    from tests.script_loading import load_script

    rock_salt = load_script("match_known_structure").reference_crystal("NaCl")

    generator = Generator.from_checkpoint(bundled_checkpoint("mp20_csp"))
    samples = generator.sample([2] * 20, [[11, 17]] * 20, num_steps=100, generator=torch.Generator().manual_seed(0))
    candidates = [None if isinstance(s, Exception) else s for s in samples]
    metrics = csp_metrics([candidates], [rock_salt], workers=1, progress=False)
    assert metrics.n_matched_at_k == 1, metrics
    assert metrics.rmse_at_k < 0.1, metrics
