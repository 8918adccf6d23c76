"""Depthwise ("uvu") tensor product of l <= 1 features with l <= 1 edge harmonics.

The interaction block couples sender features ``x`` (irreps ``Cx0e + Vx1o``) with the edge's
spherical harmonics ``Y = Y0 + Y1`` (``0e + 1o``) under per-edge weights ``w``. For each path
``(l1, l2) -> l3`` of e3nn's :class:`o3.TensorProduct` with ``connection_mode="uvu"``:

    out[e, u, k] = a * w[e, u] * sum_ij C[i, j, k] x[e, u, i] Y[e, j]

with ``C = o3.wigner_3j(l1, l2, l3)`` and ``a`` e3nn's path weight. For l <= 1 every
``C`` is one number times a fixed pattern, so each path is a few elementwise products:

    0 x 0 -> 0 : c * w x Y0                 0 x 1 -> 1 : c * (w x) Y1
    1 x 0 -> 1 : c * w Y0 x                 1 x 1 -> 0 : c * w (x . Y1)
    1 x 1 -> 1 : c * w (x cross Y1)

e3nn's generated code computes the same numbers, plus an unused outer product per path; at
sampling size (100 crystals x 13 atoms, 15,600 edges) that costs about a third of a denoiser
call. :class:`DepthwiseTensorProduct` takes its paths, path weights and Clebsch-Gordan
constants from e3nn (it builds the e3nn module once and reads its instructions) and keeps
e3nn's weight and output layout, so checkpoints are interchangeable; the unit tests compare it
with e3nn in float64. :func:`depthwise_tensor_product` returns it when every irrep has
l <= 1 and each harmonic has multiplicity 1, and e3nn's module otherwise.
"""

from __future__ import annotations

from typing import Callable

import torch
from e3nn import o3
from torch import Tensor, nn

_KINDS = {(0, 0, 0): "scalar", (0, 1, 1): "scale_vector", (1, 0, 1): "vector_scale", (1, 1, 0): "dot", (1, 1, 1): "cross"}
"""(l1, l2, l3) -> how the path contracts ``x`` (from ``irreps_in1``) with ``Y``."""


def _pattern(kind: str) -> Tensor:
    """The fixed shape of ``C[i, j, k]`` for each kind, up to one constant."""
    eye = torch.eye(3, dtype=torch.float64)
    if kind == "scalar":
        return torch.ones(1, 1, 1, dtype=torch.float64)
    if kind == "scale_vector":
        return eye[None]  # C[0, j, k] = δ_jk
    if kind == "vector_scale":
        return eye[:, None]  # C[i, 0, k] = δ_ik
    if kind == "dot":
        return eye[:, :, None]  # C[i, j, 0] = δ_ij
    levi_civita = torch.zeros(3, 3, 3, dtype=torch.float64)
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        levi_civita[i, j, k], levi_civita[j, i, k] = 1.0, -1.0
    return levi_civita


def _pattern_constant(kind: str, l1: int, l2: int, l3: int) -> float:
    """``c`` with ``o3.wigner_3j(l1, l2, l3) = c * pattern`` in e3nn's real basis."""
    cg = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
    pattern = _pattern(kind)
    c = float((cg * pattern).sum() / (pattern * pattern).sum())
    if not torch.allclose(cg, c * pattern, atol=1e-12):
        raise ValueError(f"e3nn's Clebsch-Gordan tensor for {l1} x {l2} -> {l3} is not a multiple of the {kind} pattern")
    return c


class DepthwiseTensorProduct(nn.Module):
    """e3nn's "uvu" tensor product with per-edge weights, for irreps with l <= 1.

    Parameters
    ----------
    irreps_in1, irreps_in2, irreps_out, instructions : as for ``o3.TensorProduct`` (each
        instruction ``(i_in1, i_in2, i_out, "uvu", True)``); ``irreps_in2`` must have
        multiplicity 1 per irrep.

    ``forward(x1, x2, weight)``: (E, irreps_in1.dim), (E, irreps_in2.dim),
    (E, weight_numel) -> (E, irreps_out.dim), equal to e3nn's module with the same arguments.
    """

    def __init__(self, irreps_in1: o3.Irreps, irreps_in2: o3.Irreps, irreps_out: o3.Irreps, instructions: list) -> None:
        super().__init__()
        reference = o3.TensorProduct(
            irreps_in1, irreps_in2, irreps_out, instructions, shared_weights=False, internal_weights=False
        )
        self.irreps_in1, self.irreps_in2, self.irreps_out = reference.irreps_in1, reference.irreps_in2, reference.irreps_out
        self.weight_numel = reference.weight_numel
        if not supports(self.irreps_in1, self.irreps_in2, self.irreps_out, instructions):
            raise ValueError(
                f"DepthwiseTensorProduct needs l <= 1 irreps, multiplicity-1 irreps_in2 and 'uvu' weighted paths; "
                f"got {self.irreps_in1} x {self.irreps_in2} -> {self.irreps_out}"
            )
        slices1, slices2, slices_out = self.irreps_in1.slices(), self.irreps_in2.slices(), self.irreps_out.slices()
        self._paths = []  # (kind, in1 slice, in2 slice, weight slice, i_out, mul, output width, constant)
        weight_start = 0
        for ins in reference.instructions:
            mul, ir1 = self.irreps_in1[ins.i_in1]
            l2, l3 = self.irreps_in2[ins.i_in2].ir.l, self.irreps_out[ins.i_out].ir.l
            kind = _KINDS[(ir1.l, l2, l3)]
            constant = ins.path_weight * _pattern_constant(kind, ir1.l, l2, l3)
            self._paths.append((kind, slices1[ins.i_in1], slices2[ins.i_in2], slice(weight_start, weight_start + mul),
                                ins.i_out, mul, mul * (2 * l3 + 1), constant))
            weight_start += mul
        self._out_slices = slices_out
        # e3nn's buffers, kept so state dicts load into either module
        self.register_buffer("weight", reference.weight)
        self.register_buffer("output_mask", reference.output_mask)

    def forward(self, x1: Tensor, x2: Tensor, weight: Tensor, reduce: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """``reduce``: a map linear along dim 0, e.g. the mean over each receiver's edges
        ((E, D) -> (N, D)), applied to each output block before they are concatenated: the
        result is ``reduce(forward(x1, x2, weight))`` without the (E, irreps_out.dim) copy."""
        num_edges = x1.shape[0]
        blocks: list[Tensor | None] = [None] * len(self.irreps_out)
        for kind, s1, s2, sw, i_out, mul, width, constant in self._paths:
            w = weight[:, sw]  # (E, mul)
            y = x2[:, s2]  # (E, 1) or (E, 3)
            if kind == "scalar":
                out = (constant * y) * w * x1[:, s1]  # (E, mul)
            elif kind == "scale_vector":
                out = ((constant * w) * x1[:, s1])[:, :, None] * y[:, None, :]  # (E, mul, 3)
            elif kind == "vector_scale":
                out = ((constant * y) * w)[:, :, None] * x1[:, s1].reshape(num_edges, mul, 3)
            elif kind == "dot":
                vec = x1[:, s1].reshape(num_edges, mul, 3)  # three products: faster than a batched (mul, 3) @ (3,)
                dot = vec[:, :, 0] * y[:, 0:1] + vec[:, :, 1] * y[:, 1:2] + vec[:, :, 2] * y[:, 2:3]  # (E, mul)
                out = (constant * w) * dot
            else:  # cross
                vec = x1[:, s1].reshape(num_edges, mul, 3)
                out = (constant * w)[:, :, None] * torch.linalg.cross(vec, y[:, None, :].expand_as(vec), dim=-1)
            out = out.reshape(num_edges, width)
            blocks[i_out] = out if blocks[i_out] is None else blocks[i_out] + out
        for i, block in enumerate(blocks):
            if block is None:
                sl = self._out_slices[i]
                blocks[i] = x1.new_zeros(num_edges, sl.stop - sl.start)
        if reduce is not None:
            blocks = [reduce(block) for block in blocks]
        return torch.cat(blocks, dim=-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps_in1} x {self.irreps_in2} -> {self.irreps_out}, {len(self._paths)} paths)"


def supports(irreps_in1: o3.Irreps, irreps_in2: o3.Irreps, irreps_out: o3.Irreps, instructions: list) -> bool:
    """Whether :class:`DepthwiseTensorProduct` computes these paths (else use e3nn's module)."""
    irreps_in1, irreps_in2, irreps_out = o3.Irreps(irreps_in1), o3.Irreps(irreps_in2), o3.Irreps(irreps_out)
    if any(ir.l > 1 for irreps in (irreps_in1, irreps_in2, irreps_out) for _, ir in irreps):
        return False
    if any(mul != 1 for mul, _ in irreps_in2):
        return False
    return all(len(ins) >= 5 and ins[3] == "uvu" and ins[4] for ins in instructions)


def depthwise_tensor_product(
    irreps_in1: o3.Irreps, irreps_in2: o3.Irreps, irreps_out: o3.Irreps, instructions: list
) -> nn.Module:
    """:class:`DepthwiseTensorProduct` where it applies, e3nn's ``o3.TensorProduct`` otherwise
    (both with external per-edge weights, same weight and output layout)."""
    if supports(irreps_in1, irreps_in2, irreps_out, instructions):
        return DepthwiseTensorProduct(irreps_in1, irreps_in2, irreps_out, instructions)
    return o3.TensorProduct(irreps_in1, irreps_in2, irreps_out, instructions, shared_weights=False, internal_weights=False)

