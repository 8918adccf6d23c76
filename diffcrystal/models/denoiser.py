"""The equivariant denoiser: (noisy crystal batch, time) -> raw predictions for each field.

It knows nothing about noise schedules; the diffusion classes interpret its outputs.

Reads (``diffcrystal.data.keys``): ``LATTICE`` (B, 3, 3) Å rows a, b, c (any real matrix:
noisy, nearly singular or with negative determinant), ``FRAC_COORDS`` (N, 3) fractional,
``ATOMIC_NUMBERS`` (N,) long 0..100 (0 = masked), ``TIME`` (B,) in [0, 1], ``batch`` (N,)
and ``num_graphs``.

Writes: ``EPS_LATTICE`` (B, 3, 3), ``COORD_SCORE`` (N, 3) and, when
``config.predict_species``, ``SPECIES_LOGITS`` (N, 100).

Transformation laws (R orthogonal, proper or improper, acting as ``L -> L R^T``):

- ``COORD_SCORE`` and ``SPECIES_LOGITS`` are invariant;
- ``EPS_LATTICE -> EPS_LATTICE @ R^T``;
- permuting atoms within crystals permutes the per-atom outputs; a common shift of all F of a
  crystal, or an integer translation ``F_i + k`` of single atoms, changes nothing.

Architecture, in order (``forward`` reads the same way):

1. invariant node scalars from species embedding, sinusoidal time embedding, lattice
   invariants of ``L L^T`` (:func:`~diffcrystal.models.embedding.lattice_invariants`) and
   log atom count;
2. the fully connected in-cell graph (:mod:`~diffcrystal.models.graph`): wrapped fractional
   differences ``d_ij``, Cartesian ``r_ij = d_ij L``, their spherical harmonics up to
   ``l_max`` and an invariant edge embedding MLP(Gaussian basis of |r_ij|, Fourier features
   of ``d_ij``); with ``pairwise_messages`` each block turns it, with both atoms' scalars and
   the crystal context, into the tensor-product weights of that edge;
3. ``num_layers`` pre-norm residual :class:`~diffcrystal.models.layers.InteractionBlock` s
   on node irreps ``Cx0e + Vx1o (+ Tx2e)``;
4. heads (:mod:`~diffcrystal.models.heads`).

>>> import torch
>>> from torch_geometric.data import Batch, Data
>>> from diffcrystal.data import keys
>>> torch.manual_seed(0) and None
>>> crystals = [
...     Data(**{keys.LATTICE: 4.0 * torch.eye(3)[None], keys.FRAC_COORDS: torch.rand(n, 3),
...             keys.ATOMIC_NUMBERS: torch.randint(1, 101, (n,)), keys.TIME: torch.rand(1)},
...          num_nodes=n)
...     for n in (2, 3)
... ]
>>> model = Denoiser(DenoiserConfig(num_layers=1, predict_species=True))
>>> out = model(Batch.from_data_list(crystals))
>>> [tuple(out[k].shape) for k in (keys.EPS_LATTICE, keys.COORD_SCORE, keys.SPECIES_LOGITS)]
[(2, 3, 3), (5, 3), (5, 100)]
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import Tensor, nn

from diffcrystal import MAX_ATOMIC_NUMBER
from diffcrystal.data import keys
from diffcrystal.models.config import DenoiserConfig
from diffcrystal.models.embedding import (
    NUM_LATTICE_INVARIANTS,
    EdgeEmbedding,
    GaussianRadialBasis,
    SinusoidalTimeEmbedding,
    lattice_invariants,
    lattice_length_scale,
)
from diffcrystal.models.graph import ReceiverMean, edge_geometry, fully_connected_edges
from diffcrystal.models.heads import CoordScoreHead, LatticeNoiseHead, SpeciesHead
from diffcrystal.models.layers import EquivariantLayerNorm, InteractionBlock


def hidden_irreps(config: DenoiserConfig) -> o3.Irreps:
    """Node-feature irreps ``Cx0e + Vx1o (+ Tx2e if l_max = 2)`` of a config."""
    blocks = [(config.num_scalars, "0e"), (config.num_vectors, "1o")]
    if config.l_max >= 2 and config.num_tensors > 0:
        blocks.append((config.num_tensors, "2e"))
    return o3.Irreps(blocks)


class Denoiser(nn.Module):
    """E(3)-equivariant (O(3) x periodic translations) denoiser of crystal batches.

    Parameters
    ----------
    config : all hyperparameters; see :class:`DenoiserConfig`.

    Device and dtype follow the module's parameters: move the model with ``.to()`` and give
    it inputs of the same device and floating dtype.
    """

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.irreps_hidden = hidden_irreps(c)
        self.irreps_sh = o3.Irreps.spherical_harmonics(c.l_max)  # 0e+1o(+2e)
        self.irreps_scalars = o3.Irreps([(c.num_scalars, "0e")])

        # 1. invariant node embedding
        self.species_embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, c.num_scalars)
        self.time_embedding = SinusoidalTimeEmbedding(c.time_embed_dim, c.time_max_frequency)
        self.context_dim = c.time_embed_dim + NUM_LATTICE_INVARIANTS + 1
        self.node_init = nn.Sequential(
            nn.Linear(c.num_scalars + self.context_dim, c.node_hidden),
            nn.SiLU(),
            nn.Linear(c.node_hidden, c.num_scalars),
        )

        # 2. edges
        self.radial_basis = GaussianRadialBasis(c.num_radial_basis, c.radial_max)
        self.edge_embedding = EdgeEmbedding(c.num_radial_basis, c.num_fourier, c.self_image_edges, c.edge_hidden)

        # 3. interactions (pre-norm residual)
        self.norms = nn.ModuleList()
        self.layers = nn.ModuleList()
        irreps = self.irreps_scalars
        for _ in range(c.num_layers):
            self.norms.append(EquivariantLayerNorm(irreps))
            self.layers.append(
                InteractionBlock(
                    irreps, self.irreps_hidden, self.irreps_sh, c.edge_hidden, c.edge_hidden,
                    geometric_scalars=c.geometric_scalars or None,
                    pairwise=c.pairwise_messages,
                    context_dim=self.context_dim,
                    invariant_messages=c.invariant_messages,
                )
            )
            irreps = self.irreps_hidden
        self.final_norm = EquivariantLayerNorm(self.irreps_hidden)

        # 4. heads
        self.coord_head = CoordScoreHead(self.irreps_hidden, c.num_scalars, c.node_hidden)
        self.lattice_head = LatticeNoiseHead(self.irreps_hidden, c.num_scalars, self.context_dim, c.node_hidden)
        self.species_head = SpeciesHead(c.num_scalars, c.node_hidden) if c.predict_species else None

    def forward(self, batch) -> dict[str, Tensor]:
        """Predict the raw outputs for a torch-geometric ``Batch`` (fields in module doc)."""
        lattice = batch[keys.LATTICE]  # (B, 3, 3) Å
        frac = batch[keys.FRAC_COORDS]  # (N, 3)
        species = batch[keys.ATOMIC_NUMBERS]  # (N,)
        time = batch[keys.TIME]  # (B,)
        node_batch = batch[keys.BATCH]  # (N,)
        num_graphs = int(batch.num_graphs)
        c = self.config

        # 1. per-crystal context and node scalars
        num_atoms = torch.bincount(node_batch, minlength=num_graphs)  # (B,)
        context = torch.cat(
            [
                self.time_embedding(time.reshape(-1).to(lattice.dtype)),
                lattice_invariants(lattice, num_atoms),
                torch.log(num_atoms.clamp(min=1).to(lattice.dtype))[:, None],
            ],
            dim=-1,
        )  # (B, context_dim)
        x = self.node_init(torch.cat([self.species_embedding(species), context.index_select(0, node_batch)], dim=-1))  # (N, C)

        # 2. graph
        senders, receivers = fully_connected_edges(node_batch, num_graphs)
        senders, receivers, frac_diff, cart_vec, is_image = edge_geometry(
            frac, lattice, node_batch, senders, receivers, c.self_image_edges
        )  # (E,), (E,), (E, 3), (E, 3), (E,)
        length = torch.linalg.vector_norm(cart_vec, dim=-1)  # (E,) Å
        edge_sh = o3.spherical_harmonics(self.irreps_sh, cart_vec, normalize=True, normalization="component")
        edge_emb = self.edge_embedding(self.radial_basis(length), frac_diff, is_image)  # (E, edge_hidden)
        receiver_mean = ReceiverMean(receivers, frac.shape[0], lattice.dtype)

        # 3. interactions
        for i, (norm, layer) in enumerate(zip(self.norms, self.layers)):
            update = layer(norm(x), edge_sh, edge_emb, senders, receivers, receiver_mean, context, node_batch)
            x = update if i == 0 else x + update  # (N, hidden.dim)
        x = self.final_norm(x)

        # 4. heads
        lattice_unit = lattice / lattice_length_scale(lattice)[:, None, None]  # (B, 3, 3)
        out = {
            keys.EPS_LATTICE: self.lattice_head(x, context, lattice, lattice_unit, node_batch, num_graphs),
            keys.COORD_SCORE: self.coord_head(x, lattice_unit, node_batch),
        }
        if self.species_head is not None:
            out[keys.SPECIES_LOGITS] = self.species_head(x)
        return out

    def __repr__(self) -> str:
        num = sum(p.numel() for p in self.parameters())
        return f"{self.__class__.__name__}(irreps={self.irreps_hidden}, layers={self.config.num_layers}, params={num})"
