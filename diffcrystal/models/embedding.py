"""Invariant encodings fed to the denoiser: time, lattice shape, edge length, fractional offset.

All of them are rotation invariant (they see ``L`` only through ``L L^T`` or ``|r_ij|``) and
bounded, so degenerate (det ~ 0), negative-determinant or huge lattices give finite values.

>>> import torch
>>> SinusoidalTimeEmbedding(8)(torch.tensor([0.0, 1.0])).shape
torch.Size([2, 8])
>>> lattice_invariants(torch.eye(3)[None] * 2.0, torch.tensor([1])).shape
torch.Size([1, 7])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LENGTH_EPS_A2 = 1e-6
"""Å², floor added to squared lengths before logs and divisions (keeps degenerate cells finite)."""

VOLUME_EPS_A3 = 1e-2
"""Å³, floor added to the cell volume before its log (a 1e-8 Å³ cell gives log(1e-2), finite)."""

NUM_LATTICE_INVARIANTS = 7
"""Features returned by :func:`lattice_invariants`."""


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style embedding of the diffusion time t in [0, 1].

    ``emb(t) = [sin(w_k t), cos(w_k t)]`` with ``dim / 2`` angular frequencies ``w_k``
    geometrically spaced from 1 to ``max_frequency`` (so t * 1000 of DDPM's integer-step
    embedding corresponds to ``max_frequency = 1000``).

    Parameters
    ----------
    dim : even embedding size.
    max_frequency : largest angular frequency.
    """

    def __init__(self, dim: int, max_frequency: float = 1000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"time embedding dim must be even, got {dim}")
        self.dim = dim
        self.max_frequency = max_frequency
        freqs = torch.exp(torch.linspace(0.0, math.log(max_frequency), dim // 2))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """``t``: (B,) float in [0, 1] -> (B, dim)."""
        angles = t[:, None] * self.freqs.to(t.dtype)  # (B, dim/2)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(dim={self.dim}, max_frequency={self.max_frequency})"


def lattice_invariants(lattice: Tensor, num_atoms: Tensor) -> Tensor:
    """Bounded rotation-invariant features of each cell, from the Gram matrix ``G = L L^T``.

    Lengths are normalised by ``N^(1/3)`` (cells grow as the cube root of the atom count), so
    the features describe the cell's shape and density, not its size alone:

    - ``log(G_kk / N^(2/3))`` for k = a, b, c (3), log-compressed so 1e-8 and 1e4 Å² stay O(10);
    - cosines ``G_kl / sqrt(G_kk G_ll)`` of the angles (3), in [-1, 1];
    - ``log(|det L| / N)``, the log volume per atom (1); |det| so an improper rotation
      (det -> -det) leaves it unchanged.

    Parameters
    ----------
    lattice : (B, 3, 3), Å, rows a, b, c.
    num_atoms : (B,) long or float.

    Returns
    -------
    (B, 7) float.
    """
    n = num_atoms.to(lattice.dtype).clamp(min=1.0)  # (B,)
    gram = lattice @ lattice.transpose(1, 2)  # (B, 3, 3)
    sq = torch.diagonal(gram, dim1=1, dim2=2) + LENGTH_EPS_A2  # (B, 3)
    log_len = torch.log(sq / n[:, None] ** (2.0 / 3.0))  # (B, 3)
    norms = torch.sqrt(sq)  # (B, 3)
    cosines = torch.stack(
        [gram[:, 1, 2] / (norms[:, 1] * norms[:, 2]),
         gram[:, 0, 2] / (norms[:, 0] * norms[:, 2]),
         gram[:, 0, 1] / (norms[:, 0] * norms[:, 1])],
        dim=-1,
    )  # (B, 3)
    volume = torch.linalg.det(lattice).abs()  # (B,) Å³
    log_vol = torch.log((volume + VOLUME_EPS_A3) / n)
    return torch.cat([log_len, cosines, log_vol[:, None]], dim=-1)


def lattice_length_scale(lattice: Tensor) -> Tensor:
    """Invariant length scale ``l = sqrt(tr(L L^T) / 3)``, the RMS lattice-vector length, Å.

    ``lattice``: (B, 3, 3) -> (B,), strictly positive (floored), finite for any cell.
    """
    return torch.sqrt((lattice * lattice).sum(dim=(1, 2)) / 3.0 + LENGTH_EPS_A2)


class GaussianRadialBasis(nn.Module):
    """Gaussians ``exp(-((r - mu_k) / w)^2)`` of the edge length, centres ``mu_k`` evenly
    spaced on [0, r_max] Å with width w = their spacing.

    Bounded in [0, 1] for every r >= 0; lengths far beyond ``r_max`` give ~0 (no inf).
    There is no cutoff: the graph is fully connected and its size never depends on lengths.
    """

    def __init__(self, num_basis: int, r_max: float) -> None:
        super().__init__()
        self.num_basis = num_basis
        self.r_max = r_max
        centres = torch.linspace(0.0, r_max, num_basis)
        self.width = r_max / max(num_basis - 1, 1)
        self.register_buffer("centres", centres, persistent=False)

    def forward(self, length: Tensor) -> Tensor:
        """``length``: (E,) Å -> (E, num_basis)."""
        z = (length[:, None] - self.centres.to(length.dtype)) / self.width
        return torch.exp(-z * z)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(num_basis={self.num_basis}, r_max={self.r_max})"


def fourier_tables(frac_diff: Tensor, num_frequencies: int) -> tuple[Tensor, Tensor]:
    """``sin(2 pi k d)`` and ``cos(2 pi k d)`` for k = 1..K of each fractional component.

    Periodic in d with period 1 (so integer translations of atoms change nothing) and
    invariant to rotations (d is fractional). ``frac_diff``: (E, 3) -> two (E, 3 K), k fastest.
    """
    k = torch.arange(1, num_frequencies + 1, dtype=frac_diff.dtype, device=frac_diff.device)
    angles = (2.0 * math.pi * frac_diff[:, :, None] * k).reshape(frac_diff.shape[0], 3 * num_frequencies)  # (E, 3K)
    return torch.sin(angles), torch.cos(angles)


EDGE_CHUNK = 2048
"""Edges embedded per pass of :class:`EdgeEmbedding`: the chunk's (2048, 3K) sine and cosine
tables stay small and are reused, where whole-batch tables (15,600 edges x 768 features is
48 MB) are fresh memory on every call."""


class EdgeEmbedding(nn.Sequential):
    """Invariant edge embedding ``z_e = SiLU(W2 SiLU(W1 f_e + b1) + b2)`` of the edge features

        f_e = [ rbf(|r_e|) (R),  for each component c of d_e: sin(2 pi k d_ec), k = 1..K,
                then cos(2 pi k d_ec), k = 1..K (6K),  image flag (0 or 1) ]

    The first layer is applied as ``W1 f = W_r rbf + W_sin sin + W_cos cos (+ w_img flag)``
    with the column blocks of ``W1``, so the (E, R + 6K) feature matrix is never built, and
    the edges are embedded :data:`EDGE_CHUNK` at a time. The result equals the MLP on the
    concatenated features (float rounding aside), with the same parameters and state-dict
    keys as ``nn.Sequential(Linear, SiLU, Linear, SiLU)``.

    Parameters
    ----------
    num_radial : R, radial basis functions per edge.
    num_fourier : K, frequencies per fractional component.
    image_flag : whether the features end with the self-image flag.
    hidden : width of both layers.
    """

    def __init__(self, num_radial: int, num_fourier: int, image_flag: bool, hidden: int) -> None:
        super().__init__(
            nn.Linear(num_radial + 6 * num_fourier + int(image_flag), hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
        )
        self.num_radial, self.num_fourier, self.image_flag = num_radial, num_fourier, image_flag

    def forward(self, radial: Tensor, frac_diff: Tensor, is_image: Tensor | None = None) -> Tensor:
        """``radial``: (E, R); ``frac_diff``: (E, 3) fractional; ``is_image``: (E,) 0/1 when
        ``image_flag`` -> (E, hidden)."""
        first, _, second, _ = self
        r, k, hidden = self.num_radial, self.num_fourier, first.out_features
        fourier_weight = first.weight[:, r : r + 6 * k].reshape(hidden, 3, 2, k)
        weight_sin = fourier_weight[:, :, 0].reshape(hidden, 3 * k)
        weight_cos = fourier_weight[:, :, 1].reshape(hidden, 3 * k)
        chunks = []
        for start in range(0, max(frac_diff.shape[0], 1), EDGE_CHUNK):  # one empty chunk for no edges
            part = slice(start, start + EDGE_CHUNK)
            sines, cosines = fourier_tables(frac_diff[part], k)
            z = torch.addmm(first.bias, radial[part], first.weight[:, :r].t())
            z = torch.addmm(z, sines, weight_sin.t())
            z = torch.addmm(z, cosines, weight_cos.t())
            if self.image_flag:
                z = z + is_image[part, None] * first.weight[:, -1]
            z = torch.nn.functional.silu(second(torch.nn.functional.silu(z, inplace=True)), inplace=True)
            chunks.append(z)
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(radial={self.num_radial}, fourier={self.num_fourier}, "
            f"image_flag={self.image_flag}, hidden={self[0].out_features})"
        )
