"""Energies, forces and stresses of many structures at once, for the batched relaxation.

An evaluator maps a list of ASE ``Atoms`` to one ``(energy, forces, stress)`` tuple per
structure — energy in eV, forces (N, 3) in eV/Å, Voigt stress (6,) (xx, yy, zz, yz, xz, xy) in
eV/Å³ — or, for a structure whose evaluation failed, the exception (returned, not raised, so one
structure never stops the others). :func:`batch_evaluator` picks one for a potential:
SevenNet-0 on torch-geometric batches of its graphs (:class:`SevenNetBatchEvaluator`), a student
bundle on nequip's batched data (:class:`NequIPBatchEvaluator`), any other (EMT, a compiled
NequIP/Allegro student, CHGNet) through its ASE calculator, one structure after another
(:class:`CalculatorEvaluator`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_MAX_ATOMS_PER_CALL = {"cpu": 64, "cuda": 65536}
"""Atoms per batched SevenNet-0 call, by device type. On CPU a larger batch costs more per
structure (cache): 16 YBa2Cu3O7 cells (13 atoms) in chunks of 13 / 52 / 208 atoms took 233 /
229 / 281 ms of CPU per cell (best of 3, one thread, loaded 2-core machine), so CPU calls take a
few cells each; on a GPU one call takes the whole set."""


class CalculatorEvaluator:
    """Energy (eV), forces (N, 3) eV/Å and Voigt stress (6,) eV/Å³ from an ASE calculator,
    one structure after another. An exception is returned, not raised, for that structure."""

    def __init__(self, calculator):
        self.calculator = calculator

    def __call__(self, structures: Sequence) -> list:
        out = []
        for atoms in structures:
            try:
                atoms.calc = self.calculator
                out.append((float(atoms.get_potential_energy()), np.array(atoms.get_forces()),
                            np.array(atoms.get_stress())))
            except Exception as error:  # one structure's failure must not stop the batch
                out.append(error)
            finally:
                atoms.calc = None
        return out


class ChunkedBatchEvaluator:
    """One model call per chunk of at most ``max_atoms`` atoms, outputs as
    :class:`CalculatorEvaluator`'s. Subclasses turn a structure into the model's input
    (``_graph``, raising for one the model cannot take) and evaluate a list of inputs
    (``_call``). A chunk whose call raises is evaluated one structure at a time, so only the
    structures that fail get the exception."""

    max_atoms: int

    def _graph(self, atoms):
        raise NotImplementedError

    def _call(self, graphs: list) -> list:
        raise NotImplementedError

    def __call__(self, structures: Sequence) -> list:
        out: list = [None] * len(structures)
        chunk: list[int] = []
        graphs: list = []

        def flush() -> None:
            try:
                for i, value in zip(chunk, self._call(graphs)):
                    out[i] = value
            except Exception:  # find the structures that fail, keep the others
                for i, graph in zip(chunk, graphs):
                    try:
                        out[i] = self._call([graph])[0]
                    except Exception as error:
                        out[i] = error
            chunk.clear()
            graphs.clear()

        atoms_in_chunk = 0
        for i, atoms in enumerate(structures):
            try:
                graph = self._graph(atoms)
            except Exception as error:
                out[i] = error
                continue
            if chunk and atoms_in_chunk + len(atoms) > self.max_atoms:
                flush()
                atoms_in_chunk = 0
            chunk.append(i)
            graphs.append(graph)
            atoms_in_chunk += len(atoms)
        if chunk:
            flush()
        return out


class SevenNetBatchEvaluator(ChunkedBatchEvaluator):
    """SevenNet-0 on torch-geometric batches of its graphs.

    ``calculator`` is a ``sevenn`` ``SevenNetCalculator`` (its model, cutoff and device are
    used; the model is switched to batch mode only during a call). SevenNet's stress output is
    ``-σ`` in the order (xx, yy, zz, xy, yz, zx); it is returned as ASE's Voigt σ (xx, yy, zz,
    yz, xz, xy), as ``SevenNetCalculator`` does."""

    def __init__(self, calculator, max_atoms_per_call: int | None = None):
        self.calculator = calculator
        device_type = calculator.device.type
        self.max_atoms = max_atoms_per_call or DEFAULT_MAX_ATOMS_PER_CALL.get(device_type, DEFAULT_MAX_ATOMS_PER_CALL["cpu"])

    def _graph(self, atoms):
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        unknown = sorted(set(atoms.numbers.tolist()) - set(self.calculator.type_map))
        if unknown:
            raise ValueError(f"SevenNet-0 does not know atomic numbers {unknown}")
        return AtomGraphData.from_numpy_dict(
            unlabeled_atoms_to_graph(atoms, self.calculator.cutoff, with_shift=False))

    def _call(self, graphs: list) -> list:
        import sevenn._keys as KEY
        from torch_geometric.data import Batch

        model = self.calculator.model
        batch = Batch.from_data_list(graphs).to(self.calculator.device)
        model.set_is_batch_data(True)
        try:
            output = model(batch)
        finally:
            model.set_is_batch_data(False)
        energy = output[KEY.PRED_TOTAL_ENERGY].detach().double().cpu().numpy()  # (B,)
        forces = output[KEY.PRED_FORCE].detach().double().cpu().numpy()  # (sum N, 3)
        stress = -output[KEY.PRED_STRESS].detach().double().cpu().numpy()[:, [0, 1, 2, 4, 5, 3]]
        bounds = np.cumsum([0] + [int(g.num_atoms) for g in graphs])
        return [(float(energy[i]), forces[bounds[i]:bounds[i + 1]], stress[i])
                for i in range(len(graphs))]


NEQUIP_MAX_ATOMS_PER_CALL = 1024
"""Atoms per batched call of a student bundle on CPU: some 80 cells of 13 atoms, enough to spread
the eager model's per-call overhead. ``mp20-student`` on 80 YBa2Cu3O7 cells, one thread: 15.2 /
7.3 / 6.2 ms of CPU per cell in calls of 13 / 104 / 1,040 atoms (``scripts/benchmark_relax.py
--skip-relax --calls 80 --prerelax mp20-student --chunk-atoms 13 104 1040``; docs/benchmarks.md)."""


class NequIPBatchEvaluator(ChunkedBatchEvaluator):
    """A student bundle's eager NequIP model on nequip's batched data.

    ``calculator``: the bundle's ``NequIPCalculator``
    (:func:`~diffcrystal.potential.student_bundle.load_student_calculator`): its transforms make
    each structure's data (species map, neighbour list) and its model evaluates the batch, under
    nequip's float64 default dtype. The model's stress is σ (3, 3) in eV/Å³, returned in ASE's
    Voigt order as ``NequIPCalculator`` does."""

    def __init__(self, calculator, max_atoms_per_call: int = NEQUIP_MAX_ATOMS_PER_CALL):
        self.calculator = calculator
        self.max_atoms = max_atoms_per_call

    def _graph(self, atoms):
        from nequip.utils.global_dtype import _GLOBAL_DTYPE

        from diffcrystal.potential.nequip_state import default_dtype

        with default_dtype(_GLOBAL_DTYPE):
            return self.calculator.atoms_to_data(atoms)

    def _call(self, graphs: list) -> list:
        from ase.stress import full_3x3_to_voigt_6_stress
        from nequip.data import AtomicDataDict
        from nequip.utils.global_dtype import _GLOBAL_DTYPE

        from diffcrystal.potential.nequip_state import default_dtype

        with default_dtype(_GLOBAL_DTYPE):
            output = self.calculator.model(AtomicDataDict.batched_from_list(graphs))
        energy = output[AtomicDataDict.TOTAL_ENERGY_KEY].detach().double().cpu().numpy().reshape(-1)
        forces = output[AtomicDataDict.FORCE_KEY].detach().double().cpu().numpy()
        stress = output[AtomicDataDict.STRESS_KEY].detach().double().cpu().numpy().reshape(-1, 3, 3)
        bounds = np.cumsum([0] + [len(graph[AtomicDataDict.POSITIONS_KEY]) for graph in graphs])
        return [(float(energy[i]), forces[bounds[i]:bounds[i + 1]], full_3x3_to_voigt_6_stress(stress[i]))
                for i in range(len(graphs))]


def batch_evaluator(kind: str, calculator):
    """The evaluator for a potential of ``kind`` (``'sevennet-0'``, ``'student'`` for a student
    bundle, or any other: :attr:`~diffcrystal.potential.calculators.Potential.kind`) over
    ``calculator``: batched model calls for SevenNet-0 and student bundles, the ASE calculator
    per structure otherwise."""
    if kind == "sevennet-0":
        return SevenNetBatchEvaluator(calculator)
    if kind == "student":
        return NequIPBatchEvaluator(calculator)
    return CalculatorEvaluator(calculator)
