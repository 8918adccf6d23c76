"""The denoiser's graph: fully connected edges within each crystal and the mean over each
receiver's incoming edges, checked against brute-force enumeration in float64."""

import pytest
import torch

from diffcrystal.models.graph import ReceiverMean, edge_geometry, fully_connected_edges


def _node_batch(sizes: list[int]) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


def _brute_force_edges(sizes: list[int]) -> list[tuple[int, int]]:
    """(sender, receiver) of every ordered pair of distinct atoms of the same crystal."""
    edges, first = [], 0
    for n in sizes:
        edges += [(first + j, first + i) for i in range(n) for j in range(n) if i != j]
        first += n
    return edges


def _brute_force_mean(values: torch.Tensor, receivers: torch.Tensor, num_nodes: int) -> torch.Tensor:
    out = torch.zeros(num_nodes, values.shape[1], dtype=torch.float64)
    for node in range(num_nodes):
        rows = [e for e in range(receivers.shape[0]) if int(receivers[e]) == node]
        if rows:
            out[node] = values[rows].sum(dim=0) / len(rows)
    return out


@pytest.mark.parametrize("sizes", [[3, 1, 4], [5, 5, 5], [1], [2, 7]])
def test_fully_connected_edges_are_all_distinct_pairs_sorted_by_receiver(sizes):
    senders, receivers = fully_connected_edges(_node_batch(sizes), num_graphs=len(sizes))
    assert sorted(zip(senders.tolist(), receivers.tolist())) == sorted(_brute_force_edges(sizes))
    assert bool((receivers[1:] >= receivers[:-1]).all())


@pytest.mark.parametrize(
    "sizes, self_images, dense",
    [
        ([13, 13, 13], False, True),  # one composition sampled many times: the dense reduction
        ([4, 1, 6], False, False),  # mixed sizes and an isolated atom (degree 0): scatter-add
        ([5, 5], True, False),  # self-image edges appended after the pairs: unsorted, scatter-add
    ],
)
def test_receiver_mean_matches_brute_force(sizes, self_images, dense):
    gen = torch.Generator().manual_seed(0)
    batch = _node_batch(sizes)
    num_nodes = batch.shape[0]
    senders, receivers = fully_connected_edges(batch, len(sizes))
    frac = torch.rand(num_nodes, 3, generator=gen, dtype=torch.float64)
    lattice = 4.0 * torch.eye(3, dtype=torch.float64).expand(len(sizes), 3, 3)
    senders, receivers, *_ = edge_geometry(frac, lattice, batch, senders, receivers, self_images)
    values = torch.randn(receivers.shape[0], 5, generator=gen, dtype=torch.float64)

    mean = ReceiverMean(receivers, num_nodes, torch.float64)

    assert (mean.uniform_degree is not None) == dense
    torch.testing.assert_close(mean(values), _brute_force_mean(values, receivers, num_nodes), rtol=1e-12, atol=1e-12)


def test_receiver_mean_gradient_reaches_every_edge():
    """Training backpropagates through the mean: d(sum of means)/d(value_e) = 1 / deg(receiver)."""
    batch = _node_batch([3, 3])
    _, receivers = fully_connected_edges(batch, 2)
    values = torch.ones(receivers.shape[0], 2, dtype=torch.float64, requires_grad=True)
    ReceiverMean(receivers, 6, torch.float64)(values).sum().backward()
    torch.testing.assert_close(values.grad, torch.full_like(values, 0.5))


@pytest.mark.parametrize("sizes, dense", [([6, 6, 6], True), ([4, 1, 6], False)])
def test_add_receiver_values_matches_brute_force(sizes, dense):
    """The transpose of the receiver sum: each edge gets its receiver's row added, in place."""
    gen = torch.Generator().manual_seed(3)
    batch = _node_batch(sizes)
    num_nodes = batch.shape[0]
    senders, receivers = fully_connected_edges(batch, len(sizes))
    edge_values = torch.randn(receivers.shape[0], 4, generator=gen, dtype=torch.float64)
    node_values = torch.randn(num_nodes, 4, generator=gen, dtype=torch.float64)
    expected = torch.stack([edge_values[e] + node_values[int(receivers[e])] for e in range(receivers.shape[0])])

    mean = ReceiverMean(receivers, num_nodes, torch.float64)
    out = mean.add_receiver_values(edge_values, node_values)

    assert (mean.uniform_degree is not None) == dense
    assert out.data_ptr() == edge_values.data_ptr()
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
