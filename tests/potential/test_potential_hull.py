"""Energy above the hull of a dataset's known phases (``rank --hull``) and the relaxation cache.

Hull distances are checked against a brute-force lower convex envelope of the binary
(independent of pymatgen's ``PhaseDiagram``); EMT on Cu-Au for speed, SevenNet-0 on Na-Cl with
mp_20 rows for the issue's rock-salt / CsCl-type check.
"""

import csv
import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, make_supercell
from ase.io import read

from diffcrystal.cli.main import main
from diffcrystal.errors import InputError
from diffcrystal.potential import RelaxSettings, relax_and_rank, relax_many
from diffcrystal.potential import relax_cache
from diffcrystal.potential.hull import ASE_REFERENCE_PREFIX, KnownPhases, dataset_references
from diffcrystal.potential.io import cif_text
from diffcrystal.potential.rank import default_matcher
from diffcrystal.potential.calculators import Potential, potential_label
from diffcrystal.potential.relax_cache import RelaxCache, relax_cached
from tests.potential.emt_reference import cu3au_l12

SETTINGS = RelaxSettings()


def cuau_l10(a=3.9, c=3.7):
    """CuAu in the L1_0 structure (alternating Cu and Au (001) planes), P4/mmm."""
    return Atoms("CuCuAuAu", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                 cell=np.diag([a, a, c]), pbc=True)


def cupt_l10():
    atoms = cuau_l10()
    atoms.symbols[2:] = "Pt"
    return atoms


def cuau3_l12(a=4.0):
    return Atoms("CuAu3", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                 cell=np.eye(3) * a, pbc=True)


def write_dataset(path, structures):
    """A CDVAE-style CSV (material_id, cif) of ``{id: Atoms}``."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["material_id", "cif"])
        for name, atoms in structures.items():
            writer.writerow([name, cif_text(atoms)])
    return path


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def lower_envelope(points, x):
    """Brute-force lower convex envelope of a binary at fraction ``x``: the lowest value over all
    points at ``x`` and all chords between points on either side. ``points``: (x_i, e_i)."""
    values = [e for xi, e in points if abs(xi - x) < 1e-12]
    for (x1, e1), (x2, e2) in itertools.combinations(points, 2):
        if min(x1, x2) < x < max(x1, x2):
            values.append(e1 + (e2 - e1) * (x - x1) / (x2 - x1))
    return min(values)


def fraction(formula_atoms, element):
    symbols = formula_atoms.get_chemical_symbols()
    return symbols.count(element) / len(symbols)


@pytest.fixture
def cuau_dataset(tmp_path):
    """Known Cu-Au phases (Cu, Au, Cu3Au L1_2, CuAu L1_0) plus a Pt and a Cu-Pt entry, which are
    outside the candidates' system."""
    return write_dataset(tmp_path / "known.csv", {
        "k-cu": bulk("Cu", "fcc", a=3.6), "k-au": bulk("Au", "fcc", a=4.1),
        "k-cu3au": cu3au_l12(), "k-cuau": cuau_l10(),
        "k-pt": bulk("Pt", "fcc", a=3.9), "k-cupt": cupt_l10(),
    })


@pytest.fixture
def cuau_candidates(tmp_path):
    folder = tmp_path / "candidates"
    folder.mkdir()
    supercell = make_supercell(cu3au_l12(3.8), np.diag([1, 1, 2]))  # Cu3Au in another cell
    structures = {"l12": supercell[np.random.default_rng(0).permutation(len(supercell))],
                  "cuau3": cuau3_l12(), "b2": bulk("CuAu", "cesiumchloride", a=3.2)}
    for name, atoms in structures.items():
        (folder / f"{name}.cif").write_text(cif_text(atoms))
    return folder


def test_dataset_references_select_the_system_and_add_missing_elements(tmp_path):
    dataset = write_dataset(tmp_path / "known.csv", {
        "cu": bulk("Cu", "fcc", a=3.6), "cu3au": cu3au_l12(), "pt": bulk("Pt", "fcc", a=3.9),
        "cupt": Atoms("CuPt", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=np.eye(3) * 3, pbc=True),
    })
    items, left_out = dataset_references(dataset, [frozenset({"Cu", "Au"})], progress=False)
    assert left_out == []
    labels = [label for label, _ in items]
    assert labels == ["cu", "cu3au", f"{ASE_REFERENCE_PREFIX}Au"]  # Pt phases are outside Cu-Au
    gold = dict(items)[f"{ASE_REFERENCE_PREFIX}Au"]
    assert set(gold.get_chemical_symbols()) == {"Au"}
    assert gold.get_volume() / len(gold) == pytest.approx(4.08 ** 3 / 4, rel=1e-6)  # ASE's fcc Au, a = 4.08 Å


def test_e_above_hull_cut_leaves_out_and_lists_entries(tmp_path):
    dataset = tmp_path / "known.csv"
    with open(dataset, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["material_id", "cif", "e_above_hull"])
        for name, atoms, e_hull in (("cu", bulk("Cu", "fcc", a=3.6), 0.0),
                                    ("cu-bcc", bulk("Cu", "bcc", a=2.9), 0.04),
                                    ("au-hcp", bulk("Au", "hcp", a=2.9), 0.5)):
            writer.writerow([name, cif_text(atoms), e_hull])
    items, left_out = dataset_references(dataset, [frozenset({"Cu", "Au"})], progress=False,
                                         max_e_above_hull=0.04)
    # the only Au phase is cut, so ASE's reference state stands in for it
    assert [label for label, _ in items] == ["cu", "cu-bcc", f"{ASE_REFERENCE_PREFIX}Au"]
    assert left_out == ["au-hcp"]
    with pytest.raises(InputError, match=">= 0"):
        dataset_references(dataset, [frozenset({"Cu"})], progress=False, max_e_above_hull=-0.1)
    plain = write_dataset(tmp_path / "plain.csv", {"cu": bulk("Cu", "fcc", a=3.6)})
    with pytest.raises(InputError, match="cu has no e_above_hull"):
        dataset_references(plain, [frozenset({"Cu"})], progress=False, max_e_above_hull=0.1)


def test_missing_elemental_phase_ase_cannot_build_is_a_clear_error(tmp_path):
    dataset = write_dataset(tmp_path / "known.csv", {"cu": bulk("Cu", "fcc", a=3.6)})
    with pytest.raises(InputError, match="no elemental reference for O"):
        dataset_references(dataset, [frozenset({"Cu", "O"})], progress=False)


def test_rank_with_hull_matches_brute_force_envelope(cuau_dataset, cuau_candidates, tmp_path, capsys):
    out = tmp_path / "ranked"
    argv = ["rank", str(cuau_candidates), "--potential", "emt", "--hull", str(cuau_dataset),
            "--out", str(out), "--workers", "1", "--quiet"]
    assert main(argv) == 0
    assert "4 from the relaxation cache" not in capsys.readouterr().out
    references = {r["id"]: r for r in read_rows(out / "reference" / "summary.csv")}
    assert set(references) == {"k-cu", "k-au", "k-cu3au", "k-cuau"}  # Pt phases left out
    assert all(r["status"] == "converged" for r in references.values())
    points = []
    for row in references.values():
        atoms = read(out / "reference" / row["cif"])
        points.append((fraction(atoms, "Au"), float(row["energy_per_atom_eV"])))
    ranked = {r["id"]: r for r in read_rows(out / "ranked.csv")}
    assert set(ranked) == {"l12", "cuau3", "b2"}
    for name, row in ranked.items():
        atoms = read(out / "relaxed" / f"{name}.cif")
        expected = float(row["energy_per_atom_eV"]) - lower_envelope(points, fraction(atoms, "Au"))
        assert float(row["e_above_hull_eV_atom"]) == pytest.approx(expected, abs=2e-5)
    assert ranked["l12"]["matches_known"] == "k-cu3au" and ranked["l12"]["novel"] == "False"
    assert abs(float(ranked["l12"]["e_above_hull_eV_atom"])) < 2e-5  # EMT's Cu3Au is on the hull
    assert ranked["cuau3"]["matches_known"] == "" and ranked["cuau3"]["novel"] == "True"
    assert ranked["b2"]["matches_known"] == "k-cuau"  # B2 relaxes along the Bain path to L1_0
    assert (out / "ranking.png").stat().st_size > 0

    again = tmp_path / "again"
    assert main(argv[:-5] + ["--out", str(again), "--workers", "1", "--quiet"]) == 0
    assert "4 structures: 4 converged, 4 from the relaxation cache" in capsys.readouterr().out
    assert read_rows(again / "ranked.csv") == read_rows(out / "ranked.csv")


def test_hull_error_comes_before_any_relaxation(tmp_path, cuau_candidates):
    dataset = write_dataset(tmp_path / "known.csv", {"cu": bulk("Cu", "fcc", a=3.6)})
    cuprite = Atoms("Cu2O", scaled_positions=[[0.25] * 3, [0.75] * 3, [0, 0, 0]], cell=np.eye(3) * 4.27, pbc=True)
    (cuau_candidates / "oxide.cif").write_text(cif_text(cuprite))
    out = tmp_path / "ranked"
    with pytest.raises(InputError, match="no elemental reference for O"):
        relax_and_rank([cuau_candidates], out, "emt", workers=1, progress=False, hull=dataset)
    assert not out.exists()


def test_known_phases_refuse_mixed_potentials_and_unconverged_elements():
    references = relax_many([("cu", bulk("Cu", "fcc", a=3.6)), ("au", bulk("Au", "fcc", a=4.1))],
                            "emt", SETTINGS, workers=1, progress=False)
    (candidate,) = relax_many([("l12", cu3au_l12())], "emt", SETTINGS, workers=1, progress=False)
    known = KnownPhases(references, default_matcher())
    candidate.potential = "sevennet-0"
    with pytest.raises(InputError, match="different potentials"):
        known.e_above_hull(candidate)
    candidate.potential = "emt"
    references[1].status = "not_converged"
    with pytest.raises(InputError, match="elemental phase of Au.*au not_converged"):
        KnownPhases(references, default_matcher()).e_above_hull(candidate)
    references[1].potential = "sevennet-0"
    with pytest.raises(InputError, match="mix potentials"):
        KnownPhases(references, default_matcher())


def test_relax_cache_round_trip_and_keys(tmp_path, monkeypatch):
    items = [("cu", bulk("Cu", "fcc", a=3.6)), ("boom", Atoms("Cu2", positions=[[0, 0, 0], [0.1, 0, 0]],
                                                                  cell=np.eye(3) * 3, pbc=True))]
    first, cached = relax_cached(items, "emt", SETTINGS, workers=1, cache_dir=tmp_path, progress=False)
    assert cached == 0 and [r.status for r in first] == ["converged", "exploded"]

    def refuse(*args, **kwargs):
        raise AssertionError("relaxed again although cached")

    monkeypatch.setattr(relax_cache, "relax_many", refuse)
    renamed = [("copper", items[0][1]), items[1]]
    second, cached = relax_cached(renamed, "emt", SETTINGS, workers=1, cache_dir=tmp_path, progress=False)
    assert cached == 2 and second[0].label == "copper" and second[1].status == "exploded"
    assert second[0].energy_per_atom == first[0].energy_per_atom
    assert np.array_equal(second[0].atoms.cell.array, first[0].atoms.cell.array)
    assert second[0].stress == first[0].stress and second[0].space_group == "Fm-3m"

    cache = RelaxCache("emt", SETTINGS, tmp_path)
    cache_path = cache.path(items[0][1])
    assert cache.key(items[0][1]) != RelaxCache("emt", RelaxSettings(fmax=0.05), tmp_path).key(items[0][1])
    shifted = items[0][1].copy()
    shifted.positions += 1e-6
    assert cache.key(shifted) != cache.key(items[0][1])
    cache_path.write_text("{not json")
    assert cache.get("cu", items[0][1]) is None  # a damaged entry is a miss


def test_potential_identity_hashes_weights(tmp_path):
    model = tmp_path / "model.nequip.pt2"
    model.write_bytes(b"PK one")
    first = Potential(potential_label(model)).identity
    model.write_bytes(b"PK two")
    assert Potential(potential_label(model)).identity != first
    assert Potential("emt").identity.startswith("emt ase==")


# SevenNet-0 on the shared 2-core machine: 50 s (load average 2) to 163 s (load average 10),
# two potential loads (candidates, then known phases) and five small relaxations.
@pytest.mark.slow
def test_sevennet_hull_rock_salt_on_hull_cscl_type_above(shared_data, tmp_path):
    rows = {r["material_id"]: r for r in csv.DictReader(open(shared_data / "mp_20" / "train.csv", newline=""))
            if r["material_id"] in ("mp-22848", "mp-22862", "mp-567772")}  # Cl2, NaCl, Na
    dataset = tmp_path / "na_cl.csv"
    with open(dataset, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["material_id", "cif"])
        for material_id, row in sorted(rows.items()):
            writer.writerow([material_id, row["cif"]])
    folder = tmp_path / "candidates"
    folder.mkdir()
    rock_salt = bulk("NaCl", "rocksalt", a=5.6)
    rock_salt.rattle(0.02, seed=0)
    (folder / "rocksalt.cif").write_text(cif_text(rock_salt))
    (folder / "cscl.cif").write_text(cif_text(bulk("NaCl", "cesiumchloride", a=3.3)))
    report = relax_and_rank([folder], tmp_path / "ranked", "sevennet-0", workers=1,
                            progress=False, hull=dataset)
    assert all(r.status == "converged" for r in report.references)
    points = [(fraction(r.atoms, "Cl"), r.energy_per_atom) for r in report.references]
    by_label = {e.best.label: e for e in report.entries}
    for entry in by_label.values():
        expected = entry.best.energy_per_atom - lower_envelope(points, fraction(entry.best.atoms, "Cl"))
        assert entry.e_above_hull == pytest.approx(expected, abs=1e-6)
    assert abs(by_label["rocksalt"].e_above_hull) < 1e-3
    assert by_label["rocksalt"].matches_known == "mp-22862"
    assert by_label["cscl"].e_above_hull > 0.05 and by_label["cscl"].matches_known == ""
