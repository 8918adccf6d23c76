"""``overview.png``: written by ``diffcrystal sample`` and ``diffcrystal rank``; training summaries."""

import json
import math

import numpy as np
import pytest
from matplotlib.image import imread

from diffcrystal.checkpoint import bundled_checkpoint, bundled_models, file_sha256
from diffcrystal.cli.main import main
from diffcrystal.overview import (
    DISTANCE_TITLE,
    ENERGY_TITLE,
    NO_CRYSTAL,
    OVERVIEW_NAME,
    PROPERTIES,
    SPACE_GROUP_TITLE,
    TRAINING_SUMMARY_KEY,
    StructureStats,
    plot_overview,
    run_training_summary,
    stats_from_summary,
    summarize_training,
    training_summary,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SAMPLE_TITLES = [SPACE_GROUP_TITLE, *PROPERTIES.values(), DISTANCE_TITLE]


def image_shape(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return imread(path).shape


def test_sample_writes_overview_png(tmp_path, tiny_generators, capsys):
    out = tmp_path / "run"
    assert main(["sample", "--checkpoint", str(tiny_generators["csp"]), "--composition", "SrTiO3", "--n", "3",
                 "--steps", "6", "--out", str(out), "--quiet"]) == 0
    assert f"{out}/overview.png" in capsys.readouterr().out
    height, width, _ = image_shape(out / OVERVIEW_NAME)
    assert (width, height) == (1000, 800)  # 2 x 2 panels of 5 x 4 inches at 100 dpi
    assert not list(out.glob(".*.tmp.png"))
    stats = stats_from_summary(out / "summary.csv")
    assert len(stats) == 3 and all(s.space_group for s in stats)
    titles = plot_overview({"sampled": stats}, tmp_path / "again.png", training=None)
    assert titles == SAMPLE_TITLES


def test_overview_panels_with_training_data_and_energies(tmp_path):
    sampled = [StructureStats("Pm-3m (221)", 12.0, 5.1, 1.9), StructureStats("P1 (1)", 14.5, 4.2, 0.3),
               StructureStats(NO_CRYSTAL, math.nan, math.nan, math.nan)]
    relaxed = [StructureStats("Pm-3m (221)", 11.0, 5.5, 2.0, -3.2, True),
               StructureStats("P4mm (99)", 12.5, 5.0, 1.8, -3.0, False),
               StructureStats(NO_CRYSTAL, math.nan, math.nan, math.nan)]
    training = training_summary(file_sha256(bundled_checkpoint("perov5_csp")))
    assert training is not None
    titles = plot_overview({"sampled": sampled, "relaxed": relaxed}, tmp_path / "o.png", training=training,
                           potential="emt")
    assert titles == SAMPLE_TITLES + [ENERGY_TITLE]
    height, width, _ = image_shape(tmp_path / "o.png")
    assert (width, height) == (1500, 800)  # 2 x 3 grid, the sixth cell removed
    nothing = [StructureStats(NO_CRYSTAL, math.nan, math.nan, math.nan)]
    assert plot_overview({"sampled": nothing}, tmp_path / "empty.png", potential="emt") == SAMPLE_TITLES + [ENERGY_TITLE]


def test_every_bundled_model_has_a_training_summary():
    for name, entry in bundled_models().items():
        summary = entry[TRAINING_SUMMARY_KEY]
        assert summary["source"] == entry["data"]
        for key in PROPERTIES:
            record = summary[key]
            assert len(record["edges"]) == len(record["counts"]) + 1
            assert sum(record["counts"]) + record["below"] + record["above"] == summary["num_structures"]
            quantiles = list(record["quantiles"].values())
            assert quantiles == sorted(quantiles)
        assert training_summary(entry["sha256"]) == summary
        assert bundled_checkpoint(name).is_file()  # the loader still accepts the entry
    assert training_summary("0" * 64) is None and training_summary(None) is None


def test_summarize_training_values():
    from tests.core.conftest import tiny_crystals

    crystals = tiny_crystals()
    summary = summarize_training(crystals, "tiny.extxyz")
    volumes = [c.volume / c.num_atoms for c in crystals]
    assert summary["num_structures"] == 4 and summary["source"] == "tiny.extxyz"
    assert summary["volume_per_atom_A3"]["quantiles"]["0.5"] == pytest.approx(np.median(volumes), abs=1e-4)
    nacl_density = 4 * (22.98977 + 35.453) / 6.02214076e23 / (5.64e-8) ** 3  # g/cm³
    densities = summary["density_g_cm3"]  # NaCl is the lightest of the four, Cu the densest
    assert nacl_density < densities["quantiles"]["0.01"] < nacl_density + 0.1
    assert densities["below"] == densities["above"] == 1 and sum(densities["counts"]) == 2
    with pytest.raises(ValueError, match="no training crystals"):
        summarize_training([], "empty")


def test_run_training_summary_reads_run_json(tmp_path):
    assert run_training_summary(tmp_path) is None  # no run.json
    (tmp_path / "run.json").write_text("{not json")
    assert run_training_summary(tmp_path) is None
    sha = file_sha256(bundled_checkpoint("carbon24_csp"))
    (tmp_path / "run.json").write_text(json.dumps({"checkpoint_sha256": sha}))
    assert run_training_summary(tmp_path) == bundled_models()["carbon24_csp"][TRAINING_SUMMARY_KEY]


def test_rank_writes_overview_with_energy_panel(tmp_path, tiny_generators, capsys):
    samples = tmp_path / "cu"
    assert main(["sample", "--checkpoint", str(tiny_generators["csp"]), "--composition", "Cu", "--n", "2",
                 "--steps", "6", "--out", str(samples), "--quiet"]) == 0
    out = tmp_path / "ranked"
    assert main(["rank", str(samples), "--potential", "emt", "--workers", "1", "--steps", "30",
                 "--out", str(out), "--quiet"]) == 0
    assert str(out / OVERVIEW_NAME) in capsys.readouterr().out
    height, width, _ = image_shape(out / OVERVIEW_NAME)
    assert (width, height) == (1500, 800)  # five panels: the energy panel was added
    assert (samples / OVERVIEW_NAME).is_file()  # the sample folder's own overview is left as it was
    from diffcrystal.overview import input_series

    # a relaxed folder given to rank again is drawn as what it is, not as samples
    series, _ = input_series([samples, out / "relaxed"])
    assert sorted(series) == ["relaxed before", "sampled"]
    assert len(series["sampled"]) == 2 and len(series["relaxed before"]) >= 1
