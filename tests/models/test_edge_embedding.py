"""The denoiser's edge embedding against the plain MLP on explicitly built features (float64).

:class:`EdgeEmbedding` never builds the (E, R + 6K) feature matrix: it splits the first layer's
weight into radial, sine, cosine and image-flag blocks and embeds the edges a chunk at a time.
The reference here builds every feature by its formula, one frequency at a time, and applies
``nn.Sequential(Linear, SiLU, Linear, SiLU)`` with the same parameters.
"""

import math

import pytest
import torch
from torch import nn

from diffcrystal.models.embedding import EDGE_CHUNK, EdgeEmbedding, fourier_tables


def _reference_features(radial, frac_diff, num_fourier, is_image):
    """[rbf, per component c: sin(2 pi k d_c) for k = 1..K then cos(2 pi k d_c), flag]."""
    columns = [radial]
    for c in range(3):
        angle = 2.0 * math.pi * frac_diff[:, c : c + 1]
        columns += [torch.sin(k * angle) for k in range(1, num_fourier + 1)]
        columns += [torch.cos(k * angle) for k in range(1, num_fourier + 1)]
    if is_image is not None:
        columns.append(is_image[:, None])
    return torch.cat(columns, dim=-1)


def _reference_mlp(embedding: EdgeEmbedding) -> nn.Sequential:
    reference = nn.Sequential(
        nn.Linear(embedding[0].in_features, embedding[0].out_features), nn.SiLU(),
        nn.Linear(embedding[2].in_features, embedding[2].out_features), nn.SiLU(),
    ).double()
    reference.load_state_dict(embedding.state_dict())  # the same keys
    return reference


@pytest.mark.parametrize(
    "num_edges, image_flag",
    [
        (2 * EDGE_CHUNK + 37, False),  # three chunks, the last one partial
        (50, True),  # one chunk, with the self-image flag
        (0, False),  # single-atom crystals have no edges
    ],
)
def test_edge_embedding_equals_mlp_on_explicit_features(num_edges, image_flag):
    gen = torch.Generator().manual_seed(1)
    num_radial, num_fourier, hidden = 5, 4, 6
    embedding = EdgeEmbedding(num_radial, num_fourier, image_flag, hidden).double()
    radial = torch.rand(num_edges, num_radial, generator=gen, dtype=torch.float64)
    frac_diff = torch.rand(num_edges, 3, generator=gen, dtype=torch.float64) - 0.5
    is_image = (torch.rand(num_edges, generator=gen) < 0.3).double() if image_flag else None

    out = embedding(radial, frac_diff, is_image)
    expected = _reference_mlp(embedding)(_reference_features(radial, frac_diff, num_fourier, is_image))

    assert out.shape == (num_edges, hidden)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_edge_embedding_gradients_equal_the_mlp():
    """Training goes through the split weight: its gradients are the plain MLP's."""
    gen = torch.Generator().manual_seed(2)
    embedding = EdgeEmbedding(3, 5, True, 7).double()
    reference = _reference_mlp(embedding)
    num_edges = EDGE_CHUNK + 11
    radial = torch.rand(num_edges, 3, generator=gen, dtype=torch.float64)
    frac_diff = torch.rand(num_edges, 3, generator=gen, dtype=torch.float64) - 0.5
    is_image = (torch.rand(num_edges, generator=gen) < 0.5).double()
    target = torch.randn(num_edges, 7, generator=gen, dtype=torch.float64)

    (embedding(radial, frac_diff, is_image) * target).sum().backward()
    (reference(_reference_features(radial, frac_diff, 5, is_image)) * target).sum().backward()

    for (name, param), ref in zip(embedding.named_parameters(), reference.parameters()):
        torch.testing.assert_close(param.grad, ref.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_fourier_tables_are_periodic_in_the_fractional_difference():
    """d and d + 1 (an integer translation of one atom) give the same features."""
    frac_diff = torch.tensor([[-0.5, 0.1, 0.49], [0.0, -0.25, 0.3]], dtype=torch.float64)
    for shifted, plain in zip(fourier_tables(frac_diff + 1.0, 3), fourier_tables(frac_diff, 3)):
        torch.testing.assert_close(shifted, plain, rtol=0, atol=1e-12)
