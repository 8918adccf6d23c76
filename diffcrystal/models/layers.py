"""Equivariant building blocks of the denoiser: normalisation and the interaction block.

Irreps follow e3nn (``o3.Irreps``); node features are laid out as ``Cx0e + Vx1o (+ Tx2e)``.
Every block maps features of its declared input irreps to its declared output irreps and
commutes with the action of O(3): ``f(D_in(R) x, Y(R r)) = D_out(R) f(x, Y(r))``.
"""

from __future__ import annotations

import torch
from e3nn import nn as enn
from e3nn import o3
from torch import Tensor, nn

from diffcrystal.models.graph import ReceiverMean
from diffcrystal.models.tensor_product import DepthwiseTensorProduct, depthwise_tensor_product

NORM_EPS = 1e-6
"""Added to mean squares before the square root in :class:`EquivariantLayerNorm`."""


class EquivariantLayerNorm(nn.Module):
    """Per-node layer norm that commutes with rotations.

    For each block ``mul x l`` of the irreps:

    - l = 0: ``(x - mean) / sqrt(mean((x - mean)^2) + eps) * w + b`` over the ``mul`` channels
      (an ordinary layer norm; scalars are invariant so centring is allowed);
    - l > 0: ``x / sqrt(mean(|x|^2) / (2l + 1) + eps) * w`` with one learnable weight per
      channel and no bias or centring (both would break equivariance).

    Input and output: (N, irreps.dim) of the same ``irreps``.
    """

    def __init__(self, irreps: o3.Irreps) -> None:
        super().__init__()
        self.irreps = o3.Irreps(irreps)
        self.weights = nn.ParameterList([nn.Parameter(torch.ones(mul)) for mul, _ in self.irreps])
        num_scalars = sum(mul for mul, ir in self.irreps if ir.l == 0)
        self.bias = nn.Parameter(torch.zeros(num_scalars))

    def forward(self, x: Tensor) -> Tensor:
        out = []
        bias_start = 0
        for (mul, ir), sl, weight in zip(self.irreps, self.irreps.slices(), self.weights):
            field = x[:, sl].reshape(-1, mul, ir.dim)  # (N, mul, 2l+1)
            if ir.l == 0:
                field = field - field.mean(dim=1, keepdim=True)
                field = field / torch.sqrt(field.pow(2).mean(dim=(1, 2), keepdim=True) + NORM_EPS)
                field = field * weight[:, None] + self.bias[bias_start : bias_start + mul, None]
                bias_start += mul
            else:
                field = field / torch.sqrt(field.pow(2).mean(dim=(1, 2), keepdim=True) + NORM_EPS)
                field = field * weight[:, None]
            out.append(field.reshape(-1, mul * ir.dim))
        return torch.cat(out, dim=-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps})"


def _split_scalars(irreps: o3.Irreps, geometric: int | None) -> o3.Irreps:
    """``64x0e+16x1o`` with ``geometric=16`` -> ``48x0e+16x0e+16x1o`` (same layout)."""
    irreps = o3.Irreps(irreps).simplify()
    if geometric is None or irreps[0].ir.l != 0 or not 0 < geometric < irreps[0].mul:
        return irreps
    rest = [(mul, ir) for mul, ir in irreps[1:]]
    return o3.Irreps([(irreps[0].mul - geometric, "0e"), (geometric, "0e")] + rest)


class PairwiseEdgeNetwork(nn.Module):
    """Invariant per-edge hidden features that see both atoms (SEGNN / CSPNet style).

        z_ij = SiLU( A s_i + B s_j + C e_ij + D c_b(ij) + bias )                (E, hidden)

    with ``s_i``, ``s_j`` the invariant (``0e``) features of receiver and sender, ``e_ij`` the
    invariant edge embedding (edge length basis, Fourier features of the wrapped fractional
    difference) and ``c_b`` the per-crystal context (time embedding, lattice invariants of
    ``L L^T``). One linear layer over the concatenation ``[s_i, s_j, e_ij, c_b]`` written as a
    sum, so the node and crystal terms are projected once per node / crystal, not per edge.
    Everything it reads is rotation invariant, so its output is too.
    """

    def __init__(self, num_scalars: int, edge_dim: int, context_dim: int, hidden: int) -> None:
        super().__init__()
        self.receiver = nn.Linear(num_scalars, hidden)
        self.sender = nn.Linear(num_scalars, hidden, bias=False)
        self.edge = nn.Linear(edge_dim, hidden, bias=False)
        self.context = nn.Linear(context_dim, hidden, bias=False)
        self.hidden = nn.Linear(hidden, hidden)

    def forward(
        self, scalars: Tensor, edge_emb: Tensor, context: Tensor, senders: Tensor, receiver_mean: ReceiverMean,
        node_batch: Tensor,
    ) -> Tensor:
        """``scalars``: (N, C); ``edge_emb``: (E, edge_dim); ``context``: (B, context_dim);
        ``senders``: (E,); ``receiver_mean``: the graph's receivers; ``node_batch``: (N,)
        crystal of each atom -> (E, hidden).

        The receiver and context terms are summed per atom (an edge's crystal is its
        receiver's) and added onto the gathered sender terms in place, the edge term inside
        its matrix product: two (E, hidden) tensors are made per call, not ten (fresh
        memory costs more than the arithmetic at 15,600 edges)."""
        per_receiver = self.receiver(scalars) + self.context(context).index_select(0, node_batch)  # (N, hidden)
        z = receiver_mean.add_receiver_values(self.sender(scalars).index_select(0, senders), per_receiver)
        z = torch.nn.functional.silu(z.addmm_(edge_emb, self.edge.weight.t()), inplace=True)
        return torch.nn.functional.silu(self.hidden(z), inplace=True)


class InteractionBlock(nn.Module):
    """One gated, equivariant message-passing update (NequIP / SEGNN style).

    For each receiver i:

        m_i = 1/deg(i) * sum_j  TP_w(z_ij)( x_j , Y(r_ij / |r_ij|) )          (messages)
        q_i = 1/deg(i) * sum_j  W_q z_ij                                        (invariant messages)
        y_i = Gate( Linear_msg(m_i) + Linear_self(x_i) [+ Linear_inv(q_i)] )    (update)

    where ``TP`` is a depthwise ("uvu") e3nn tensor product (:mod:`.tensor_product`) of the sender features with the
    spherical harmonics of the Cartesian edge vector, its path weights ``w`` produced per edge
    by an MLP of invariant edge features ``z_ij``, and ``Gate`` the e3nn gated nonlinearity
    (SiLU on scalars, sigmoid gates on l > 0 channels). The block returns ``y`` (the caller
    adds the residual). Equivariance: x -> D(R) x, r -> R r gives y -> D(R) y.

    ``z_ij`` is either the shared edge embedding alone (``pairwise=False``: a potential's
    radial weights, blind to which atoms an edge joins) or a
    :class:`PairwiseEdgeNetwork` of both atoms' scalars, the edge embedding and the crystal
    context (``pairwise=True``). ``invariant_messages`` adds DiffCSP's CSPNet path: a learned
    invariant message per edge, mean-aggregated into the scalars and gates.

    Parameters
    ----------
    irreps_in : irreps of the node features x.
    irreps_out : irreps of y; must be ``Cx0e + (l>0 blocks)`` (gates are added internally).
    irreps_sh : irreps of the edge spherical harmonics, e.g. ``0e+1o+2e``.
    edge_dim : size of the invariant edge embedding.
    radial_hidden : hidden width of the radial MLP.
    geometric_scalars : how many of the input's ``0e`` channels (the last ones) enter the
        ``0e x l>0`` paths; the rest only take the ``0e x 0e`` path. ``None``: all of them.
    pairwise : build the tensor-product weights from both atoms' scalars (see above).
    context_dim : size of the per-crystal context (used when ``pairwise``).
    invariant_messages : add the invariant CSPNet-style message path (needs ``pairwise``).
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        irreps_sh: o3.Irreps,
        edge_dim: int,
        radial_hidden: int,
        geometric_scalars: int | None = None,
        pairwise: bool = False,
        context_dim: int = 0,
        invariant_messages: bool = False,
    ) -> None:
        super().__init__()
        if invariant_messages and not pairwise:
            raise ValueError("invariant_messages needs pairwise edge features")
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.irreps_sh = o3.Irreps(irreps_sh)

        irreps_scalars = o3.Irreps([(mul, ir) for mul, ir in self.irreps_out if ir.l == 0])
        irreps_gated = o3.Irreps([(mul, ir) for mul, ir in self.irreps_out if ir.l > 0])
        if irreps_scalars.dim + irreps_gated.dim != self.irreps_out.dim or any(
            ir != o3.Irrep("0e") for _, ir in irreps_scalars
        ):
            raise ValueError(f"irreps_out must be Cx0e plus l>0 blocks, got {self.irreps_out}")
        irreps_gates = o3.Irreps([(irreps_gated.num_irreps, "0e")])
        self.gate = enn.Gate(
            irreps_scalars, [torch.nn.functional.silu],
            irreps_gates, [torch.sigmoid],
            irreps_gated,
        )
        wanted = {ir for _, ir in self.gate.irreps_in}

        # Depthwise tensor product x_j (x) Y(r_ij) -> every wanted irrep it can reach. Only the
        # last `geometric_scalars` scalar channels couple to l > 0 harmonics (the others take
        # the 0e x 0e path only): same memory layout, about half the per-edge work.
        self.irreps_tp_in = _split_scalars(self.irreps_in, geometric_scalars)
        split = len(self.irreps_tp_in) > len(self.irreps_in.simplify())
        mid, instructions = [], []
        for i1, (mul, ir1) in enumerate(self.irreps_tp_in):
            geometric_only = split and i1 == 0
            for i2, (_, ir2) in enumerate(self.irreps_sh):
                if geometric_only and ir2.l > 0:
                    continue
                for ir_out in ir1 * ir2:
                    if ir_out in wanted:
                        instructions.append((i1, i2, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        irreps_mid = o3.Irreps(mid)
        irreps_mid_sorted, perm, _ = irreps_mid.sort()
        instructions = [(i1, i2, perm[i_out], mode, w) for i1, i2, i_out, mode, w in instructions]
        self.tp = depthwise_tensor_product(self.irreps_tp_in, self.irreps_sh, irreps_mid_sorted, instructions)
        self.num_in_scalars = sum(mul for mul, ir in self.irreps_in if ir.l == 0)
        if pairwise:
            self.pair = PairwiseEdgeNetwork(self.num_in_scalars, edge_dim, context_dim, radial_hidden)
            self.radial = nn.Linear(radial_hidden, self.tp.weight_numel)
        else:
            self.pair = None
            self.radial = enn.FullyConnectedNet(
                [edge_dim, radial_hidden, self.tp.weight_numel], torch.nn.functional.silu
            )
        self.linear_msg = o3.Linear(irreps_mid_sorted.simplify(), self.gate.irreps_in)
        self.linear_self = o3.Linear(self.irreps_in, self.gate.irreps_in)
        self.irreps_mid = irreps_mid_sorted.simplify()
        # invariant messages feed the gate's scalar inputs: its scalars, then its gates
        self.num_gate_scalars = irreps_scalars.dim + irreps_gates.dim
        self.invariant = nn.Linear(radial_hidden, self.num_gate_scalars) if invariant_messages else None

    def forward(
        self,
        x: Tensor,
        edge_sh: Tensor,
        edge_emb: Tensor,
        senders: Tensor,
        receivers: Tensor,
        receiver_mean: ReceiverMean,
        context: Tensor | None = None,
        node_batch: Tensor | None = None,
    ) -> Tensor:
        """
        Parameters
        ----------
        x : (N, irreps_in.dim) node features.
        edge_sh : (E, irreps_sh.dim) spherical harmonics of r_ij.
        edge_emb : (E, edge_dim) invariant edge embedding.
        senders, receivers : (E,) long.
        receiver_mean : the mean over each receiver's incoming edges, (E, D) -> (N, D).
        context : (B, context_dim) per-crystal invariants (needed when ``pairwise``).
        node_batch : (N,) long, crystal of each atom (needed when ``pairwise``).

        Returns
        -------
        (N, irreps_out.dim)
        """
        if self.pair is None:
            weights = self.radial(edge_emb)  # (E, weight_numel)
        else:
            hidden = self.pair(x[:, : self.num_in_scalars], edge_emb, context, senders, receiver_mean, node_batch)
            weights = self.radial(hidden)  # (E, weight_numel)
        # irreps_mid sorted but not simplified: same layout as the simplified irreps
        if isinstance(self.tp, DepthwiseTensorProduct):  # aggregates block by block, skipping an (E, mid.dim) copy
            agg = self.tp(x.index_select(0, senders), edge_sh, weights, reduce=receiver_mean)  # (N, mid.dim)
        else:
            agg = receiver_mean(self.tp(x.index_select(0, senders), edge_sh, weights))  # (N, mid.dim)
        pre = self.linear_msg(agg) + self.linear_self(x)  # (N, gate_in.dim)
        if self.invariant is not None:
            invariant = receiver_mean(self.invariant(hidden))  # (N, S)
            pre = torch.cat([pre[:, : self.num_gate_scalars] + invariant, pre[:, self.num_gate_scalars :]], dim=-1)
        return self.gate(pre)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out}, "
            f"sh={self.irreps_sh}, tp_weights={self.tp.weight_numel})"
        )
