"""Output heads: node features -> coordinate score, lattice noise, species logits.

Each head states how its output transforms when space is rotated by an orthogonal ``R``
(proper or improper), which acts as ``L -> L R^T``, ``F -> F`` and on the node features as
``x -> D(R) x``.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import Tensor, nn

from diffcrystal import MAX_ATOMIC_NUMBER


def mean_pool(x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Mean of node rows per crystal. ``x``: (N, D), ``batch``: (N,) -> (B, D)."""
    total = torch.zeros(num_graphs, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, batch, x)
    count = torch.bincount(batch, minlength=num_graphs).clamp(min=1).to(x.dtype)
    return total / count[:, None]


def scalar_mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    """Two-layer SiLU MLP on invariant features."""
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.SiLU(), nn.Linear(hidden, dim_out))


class CoordScoreHead(nn.Module):
    """Per-atom score of the fractional coordinates, invariant under ``L -> L R^T``.

        s_i = v_i (L / l)^T + u_i                                           (1, 3) per atom

    - ``v_i`` is a Cartesian ``1o`` vector from the node features (``v -> v R^T``), mapped to
      fractional space *covariantly*: a score is a gradient of a log-density, and for
      ``X = F L`` the chain rule gives ``d/dF = (d/dX) L^T``. So ``v L^T`` is what a Cartesian
      score becomes in fractional coordinates; it is invariant
      (``v R^T (L R^T)^T = v L^T``), needs no inverse and stays finite for degenerate cells,
      unlike the contravariant ``v L^{-1}`` (a displacement), which explodes as det L -> 0.
    - ``l = sqrt(tr(L L^T) / 3)`` (invariant RMS lattice-vector length) makes ``L / l``
      dimensionless with unit-RMS rows, so the output scale does not grow with the cell
      (a 100 Å cell gives the same magnitudes as a 4 Å one).
    - ``u_i`` is a direct fractional 3-vector from invariant scalars (DiffCSP's head), which
      lets the network express lattice-aligned scores without going through Cartesian space.
      Both terms are invariant to rotations, to common shifts and to integer translations
      of F, since all their inputs are.
    """

    def __init__(self, irreps_in: o3.Irreps, num_scalars: int, hidden: int) -> None:
        super().__init__()
        self.num_scalars = num_scalars
        self.vector = o3.Linear(irreps_in, "1x1o")
        self.invariant = scalar_mlp(num_scalars, hidden, 3)

    def forward(self, x: Tensor, lattice_unit: Tensor, batch: Tensor) -> Tensor:
        """``x``: (N, irreps_in.dim); ``lattice_unit``: (B, 3, 3) = L / l -> (N, 3)."""
        v = self.vector(x)  # (N, 3) Cartesian, e3nn 1o order (x, y, z)
        covariant = torch.einsum("nj,nkj->nk", v, lattice_unit[batch])  # (N, 3) = v (L/l)^T
        return covariant + self.invariant(x[:, : self.num_scalars])


class LatticeNoiseHead(nn.Module):
    """Predicted lattice noise, equivariant: ``eps(L R^T) = eps(L) R^T``.

        eps = g L + M (L / l) + (L / l) S                                    (B, 3, 3)

    - ``g`` (B,) is an invariant gain from the time embedding and lattice invariants. At high
      noise ``eps ~ L_t`` (in Å units of the diffused variable), which the scale-free terms
      below cannot express; without it the DDPM reverse step amplifies the mismatch by
      ``1 / sqrt(alpha_bar_T)`` and the first sampled lattices explode (measured: cells of
      thousands of Å). DiffCSP's head (``M L``, unnormalised) has this freedom built in.

    - ``M`` (3 x 3, in the lattice-basis index space) comes from invariant per-crystal
      features (mean-pooled node scalars, lattice invariants, time embedding): it is unchanged
      by R, so ``M L R^T`` rotates correctly (DiffCSP's lattice head). For an invertible L
      it can express any 3 x 3 output.
    - ``S`` is a symmetric Cartesian 3 x 3 built from mean-pooled ``0e + 2e`` features: a
      linear map of the node features plus a quadratic one (a tensor product of a small
      ``0e + 1o (+ 2e)`` projection with itself, so ``l_max = 1`` models still get a ``2e``
      part). It rotates as ``R S R^T``, hence ``(L R^T / l) R S R^T = (L S / l) R^T``.
    - ``l`` as in :class:`CoordScoreHead`, so the output scale does not grow with the cell.
    """

    def __init__(
        self, irreps_in: o3.Irreps, num_scalars: int, context_dim: int, hidden: int, quadratic_mul: int = 8
    ) -> None:
        super().__init__()
        self.num_scalars = num_scalars
        irreps_sym = o3.Irreps("1x0e+1x2e")
        self.linear_sym = o3.Linear(irreps_in, irreps_sym)
        irreps_small = o3.Irreps(
            [(quadratic_mul, ir) for _, ir in o3.Irreps(irreps_in) if ir.l <= 2]
        ).simplify()
        self.project = o3.Linear(irreps_in, irreps_small)
        self.quadratic = o3.FullyConnectedTensorProduct(irreps_small, irreps_small, irreps_sym)
        self.invariant = scalar_mlp(num_scalars + context_dim, hidden, 9)
        self.gain = scalar_mlp(context_dim, hidden, 1)
        self.register_buffer(
            "change_of_basis", o3.ReducedTensorProducts("ij=ji", i="1o").change_of_basis, persistent=False
        )

    def forward(
        self, x: Tensor, context: Tensor, lattice: Tensor, lattice_unit: Tensor, batch: Tensor, num_graphs: int
    ) -> Tensor:
        """``x``: (N, irreps_in.dim); ``context``: (B, context_dim) invariant; ``lattice``:
        (B, 3, 3) Å; ``lattice_unit``: (B, 3, 3) = L / l -> (B, 3, 3)."""
        small = self.project(x)  # (N, small.dim)
        sym = self.linear_sym(x) + self.quadratic(small, small)  # (N, 6)
        sym = mean_pool(sym, batch, num_graphs)  # (B, 6)
        S = torch.einsum("bk,kij->bij", sym, self.change_of_basis.to(sym.dtype))  # (B, 3, 3)
        pooled = mean_pool(x[:, : self.num_scalars], batch, num_graphs)  # (B, C)
        M = self.invariant(torch.cat([pooled, context], dim=-1)).reshape(-1, 3, 3)  # (B, 3, 3)
        gain = self.gain(context)[:, :, None]  # (B, 1, 1)
        return gain * lattice + M @ lattice_unit + lattice_unit @ S


class SpeciesHead(nn.Module):
    """Logits over atomic numbers 1..100 (column k is Z = k + 1) from invariant scalars."""

    def __init__(self, num_scalars: int, hidden: int) -> None:
        super().__init__()
        self.num_scalars = num_scalars
        self.mlp = scalar_mlp(num_scalars, hidden, MAX_ATOMIC_NUMBER)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: (N, irreps.dim) -> (N, 100)."""
        return self.mlp(x[:, : self.num_scalars])
