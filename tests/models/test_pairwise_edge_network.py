"""The pairwise edge network against its formula, edge by edge, with gradients (float64).

:class:`PairwiseEdgeNetwork` sums the receiver and crystal terms per atom, adds them onto the
gathered sender terms in place and folds the edge term into a matrix product. The reference
concatenates ``[s_i, s_j, e_ij, c_b]`` for each edge and applies one linear layer, as its
docstring writes it.
"""

import pytest
import torch

from diffcrystal.models.graph import ReceiverMean, fully_connected_edges
from diffcrystal.models.layers import PairwiseEdgeNetwork

SILU = torch.nn.functional.silu


def _reference(network, scalars, edge_emb, context, senders, receivers, node_batch):
    weight = torch.cat(
        [network.receiver.weight, network.sender.weight, network.edge.weight, network.context.weight], dim=1
    )
    rows = []
    for e in range(senders.shape[0]):
        i, j = int(receivers[e]), int(senders[e])
        features = torch.cat([scalars[i], scalars[j], edge_emb[e], context[int(node_batch[i])]])
        z = SILU(weight @ features + network.receiver.bias)
        rows.append(SILU(network.hidden.weight @ z + network.hidden.bias))
    return torch.stack(rows)


@pytest.mark.parametrize("sizes, dense", [([4, 4, 4], True), ([3, 1, 5], False)])
def test_pairwise_edge_network_equals_its_formula_with_gradients(sizes, dense):
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    num_scalars, edge_dim, context_dim, hidden = 5, 3, 2, 6
    network = PairwiseEdgeNetwork(num_scalars, edge_dim, context_dim, hidden).double()
    node_batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    senders, receivers = fully_connected_edges(node_batch, len(sizes))
    receiver_mean = ReceiverMean(receivers, node_batch.shape[0], torch.float64)
    assert (receiver_mean.uniform_degree is not None) == dense
    scalars = torch.randn(node_batch.shape[0], num_scalars, generator=gen, dtype=torch.float64, requires_grad=True)
    edge_emb = torch.randn(senders.shape[0], edge_dim, generator=gen, dtype=torch.float64, requires_grad=True)
    context = torch.randn(len(sizes), context_dim, generator=gen, dtype=torch.float64)
    target = torch.randn(senders.shape[0], hidden, generator=gen, dtype=torch.float64)

    out = network(scalars, edge_emb, context, senders, receiver_mean, node_batch)
    grads = torch.autograd.grad((out * target).sum(), [scalars, edge_emb, *network.parameters()])
    expected = _reference(network, scalars, edge_emb, context, senders, receivers, node_batch)
    expected_grads = torch.autograd.grad((expected * target).sum(), [scalars, edge_emb, *network.parameters()])

    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
