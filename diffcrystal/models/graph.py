"""The periodic graph the denoiser passes messages on: fully connected within each crystal.

Every ordered pair (i, j), i != j, of atoms of the same crystal is an edge j -> i (sender j,
receiver i), so a crystal of n atoms has exactly n (n - 1) edges whatever its lattice: a noisy,
nearly degenerate or huge cell can never blow up the graph. The edge geometry uses the wrapped
fractional difference

    d_ij = wrap(F_j - F_i) in [-0.5, 0.5)^3,      r_ij = d_ij @ L   (Å, Cartesian),

so ``d_ij`` is invariant to rotations (``L -> L R^T``), to a common shift of all F of a crystal
and to integer translations of single atoms, while ``r_ij -> r_ij R^T`` rotates with space.

Optionally each atom also gets three *self-image* edges i -> i with d = e_k (k = a, b, c) and
r = L_k, the k-th lattice vector; they carry the lattice itself as Cartesian edge vectors.

>>> import torch
>>> batch = torch.tensor([0, 0, 0, 1, 1])
>>> senders, receivers = fully_connected_edges(batch, num_graphs=2)
>>> senders.tolist(), receivers.tolist()
([1, 2, 0, 2, 0, 1, 4, 3], [0, 0, 1, 1, 2, 2, 3, 4])
"""

from __future__ import annotations

import torch
from torch import Tensor


def wrap_frac_difference(diff: Tensor) -> Tensor:
    """Wrap fractional differences to [-0.5, 0.5). ``diff``: any shape, fractional."""
    return diff - torch.floor(diff + 0.5)


def fully_connected_edges(batch: Tensor, num_graphs: int) -> tuple[Tensor, Tensor]:
    """All ordered pairs of distinct atoms within each crystal.

    Parameters
    ----------
    batch : (N,) long, crystal index of each atom; atoms of one crystal must be contiguous
        (torch-geometric's layout).
    num_graphs : B, the number of crystals.

    Returns
    -------
    senders, receivers : (E,) long each, E = sum_b n_b (n_b - 1); sorted by receiver.
    """
    counts = torch.bincount(batch, minlength=num_graphs)  # (B,)
    first = torch.cumsum(counts, 0) - counts  # (B,) index of each crystal's first atom
    pairs_per_graph = counts * counts  # (B,) including i == j, removed below
    graph_of_pair = torch.repeat_interleave(
        torch.arange(num_graphs, device=batch.device), pairs_per_graph
    )  # (P,)
    pair_start = torch.cumsum(pairs_per_graph, 0) - pairs_per_graph  # (B,)
    local = torch.arange(graph_of_pair.shape[0], device=batch.device) - pair_start[graph_of_pair]
    n = counts[graph_of_pair]  # (P,)
    receivers = first[graph_of_pair] + torch.div(local, n, rounding_mode="floor")
    senders = first[graph_of_pair] + torch.remainder(local, n)
    keep = senders != receivers
    return senders[keep], receivers[keep]


class ReceiverMean:
    """Mean of per-edge values over each receiver's incoming edges: (E, D) -> (N, D).

        m_i = 1 / max(deg(i), 1) * sum_{e : receiver(e) = i} v_e

    Built once per graph and applied to every message tensor of the forward pass. When the
    edges are sorted by receiver and every receiver has the same degree d (a batch of
    equally sized crystals from :func:`fully_connected_edges`, the usual sampling case), the
    rows are exactly ``receiver = repeat_interleave(arange(N), d)`` and the sum is a dense
    reduction over a (N, d, D) view; otherwise it is a scatter-add. Both give the same sums.

    ``receivers``: (E,) long; ``num_nodes``: N; ``dtype``: float dtype of the values.
    """

    def __init__(self, receivers: Tensor, num_nodes: int, dtype: torch.dtype):
        degree = torch.bincount(receivers, minlength=num_nodes)  # (N,)
        self.receivers = receivers
        self.num_nodes = num_nodes
        self.inv_degree = (1.0 / degree.clamp(min=1).to(dtype))[:, None]  # (N, 1)
        d = receivers.shape[0] // max(num_nodes, 1)
        dense = d > 0 and bool((degree == d).all()) and bool((receivers[1:] >= receivers[:-1]).all())
        self.uniform_degree = d if dense else None
        """d when the dense reduction applies, else None."""

    def add_receiver_values(self, edge_values: Tensor, node_values: Tensor) -> Tensor:
        """``edge_values[e] += node_values[receiver(e)]`` in place, the transpose of the sum
        above: (E, D), (N, D) -> (E, D), ``edge_values`` itself. Dense layout: a broadcast
        over the (N, d, D) view; otherwise the gathered rows are added."""
        if self.uniform_degree is not None:
            edge_values.view(self.num_nodes, self.uniform_degree, -1).add_(node_values[:, None, :])
            return edge_values
        return edge_values.add_(node_values.index_select(0, self.receivers))

    def __call__(self, values: Tensor) -> Tensor:
        if self.uniform_degree is not None:
            total = values.reshape(self.num_nodes, self.uniform_degree, values.shape[1]).sum(dim=1)
        else:
            total = values.new_zeros(self.num_nodes, values.shape[1]).index_add_(0, self.receivers, values)
        return total * self.inv_degree


def edge_geometry(
    frac_coords: Tensor,
    lattice: Tensor,
    batch: Tensor,
    senders: Tensor,
    receivers: Tensor,
    self_image_edges: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Fractional and Cartesian edge vectors, optionally with self-image edges appended.

    Parameters
    ----------
    frac_coords : (N, 3), fractional.
    lattice : (B, 3, 3), Å, rows a, b, c.
    batch : (N,) long.
    senders, receivers : (E,) long, from :func:`fully_connected_edges`.
    self_image_edges : append 3 edges i -> i per atom with d = e_k, r = L_k.

    Returns
    -------
    senders, receivers : (E',) long.
    frac_diff : (E', 3) fractional, d_ij (wrapped for pair edges, unit vectors for images).
    cart_vec : (E', 3) Å, r_ij = d_ij @ L.
    is_image : (E',) float, 1 for self-image edges, 0 for pair edges.
    """
    frac_diff = wrap_frac_difference(frac_coords.index_select(0, senders) - frac_coords.index_select(0, receivers))  # (E, 3)
    is_image = torch.zeros_like(frac_diff[:, 0])  # (E,)
    if self_image_edges:
        num_atoms = frac_coords.shape[0]
        atoms = torch.arange(num_atoms, device=frac_coords.device).repeat_interleave(3)  # (3N,)
        eye = torch.eye(3, dtype=frac_coords.dtype, device=frac_coords.device)
        senders = torch.cat([senders, atoms])
        receivers = torch.cat([receivers, atoms])
        frac_diff = torch.cat([frac_diff, eye.repeat(num_atoms, 1)])  # (E + 3N, 3)
        is_image = torch.cat([is_image, torch.ones_like(atoms, dtype=frac_diff.dtype)])
    edge_lattice = lattice.index_select(0, batch.index_select(0, receivers))  # (E', 3, 3)
    cart_vec = torch.einsum("ei,eij->ej", frac_diff, edge_lattice)  # (E', 3) Å
    return senders, receivers, frac_diff, cart_vec, is_image
