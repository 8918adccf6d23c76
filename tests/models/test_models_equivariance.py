"""Defining properties of the denoiser: O(3) equivariance, permutation, periodic invariances,
batching, robustness. One shared helper (:func:`check_outputs`) compares two output dicts
under a per-dtype tolerance; every symmetry test runs in float64 (tight) and float32 (loose).
"""

from __future__ import annotations

import functools

import pytest
import torch
from e3nn import o3
from torch_geometric.data import Batch, Data

from diffcrystal.data import keys
from diffcrystal.models import Denoiser, DenoiserConfig

TOLERANCE = {torch.float64: 1e-9, torch.float32: 2e-4}
"""Max abs difference relative to max(1, output scale), per dtype."""

SIZES = (1, 2, 5, 8)
"""Atoms per crystal of the mixed test batch (includes a one-atom crystal)."""

CONFIGS = {
    "l1": DenoiserConfig(num_scalars=16, num_vectors=8, geometric_scalars=8, l_max=1,
                         num_layers=2, edge_hidden=16, node_hidden=16, predict_species=False),
    "l2_images": DenoiserConfig(num_scalars=16, num_vectors=8, num_tensors=4, l_max=2, num_layers=2,
                                geometric_scalars=0, edge_hidden=16, node_hidden=16,
                                self_image_edges=True, predict_species=True),
    "l1_pairwise_invariant": DenoiserConfig(num_scalars=16, num_vectors=8, geometric_scalars=8, l_max=1,
                                            num_layers=2, edge_hidden=16, node_hidden=16, num_fourier=8,
                                            pairwise_messages=True, invariant_messages=True),
    "l2_pairwise_images": DenoiserConfig(num_scalars=16, num_vectors=8, num_tensors=4, l_max=2, num_layers=2,
                                         geometric_scalars=0, edge_hidden=16, node_hidden=16,
                                         self_image_edges=True, predict_species=True, pairwise_messages=True),
}


def make_crystals(sizes=SIZES, dtype=torch.float64, seed=0, scale=4.0) -> list[Data]:
    gen = torch.Generator().manual_seed(seed)
    crystals = []
    for n in sizes:
        lattice = scale * (torch.eye(3) + 0.3 * torch.randn(3, 3, generator=gen, dtype=torch.float64))
        species = torch.randint(0, 101, (n,), generator=gen)  # includes masked 0 sometimes
        crystals.append(
            Data(
                **{
                    keys.LATTICE: lattice[None].to(dtype),
                    keys.FRAC_COORDS: torch.rand(n, 3, generator=gen, dtype=torch.float64).to(dtype),
                    keys.ATOMIC_NUMBERS: species,
                    keys.TIME: torch.rand(1, generator=gen, dtype=torch.float64).to(dtype),
                },
                num_nodes=n,
            )
        )
    return crystals


def collate(crystals: list[Data]) -> Batch:
    return Batch.from_data_list(crystals)


def with_fields(batch: Batch, **fields) -> Batch:
    """Copy of ``batch`` with some fields replaced (keyword = keys constant value)."""
    new = batch.clone()
    for name, value in fields.items():
        new[name] = value
    return new


def check_outputs(actual: dict, expected: dict, dtype: torch.dtype) -> None:
    """Shared helper: same keys, and every tensor equal within the dtype's tolerance."""
    assert actual.keys() == expected.keys()
    for key in expected:
        a, e = actual[key], expected[key]
        assert a.shape == e.shape, key
        assert torch.isfinite(a).all() and torch.isfinite(e).all(), key
        scale = max(1.0, float(e.abs().max()))
        err = float((a - e).abs().max())
        assert err <= TOLERANCE[dtype] * scale, f"{key}: max error {err:.3g} (scale {scale:.3g})"


@pytest.fixture(params=[torch.float64, torch.float32], ids=["float64", "float32"])
def dtype(request):
    return request.param


@pytest.fixture(params=list(CONFIGS), scope="module")
def config(request):
    return CONFIGS[request.param]


@functools.lru_cache(maxsize=None)
def build(config: DenoiserConfig, dtype: torch.dtype) -> Denoiser:
    """Model built *under* ``dtype`` as default: e3nn computes its constant buffers (Wigner 3j,
    change of basis) at construction in the default dtype, and casting a float32-built model
    to float64 afterwards would keep float32-accurate constants (~1e-8 equivariance error)."""
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = Denoiser(config).eval()
    finally:
        torch.set_default_dtype(previous)
    return model


def run(model: Denoiser, batch: Batch) -> dict:
    with torch.no_grad():
        return model(batch)


@pytest.mark.parametrize("improper", [False, True], ids=["proper", "improper"])
def test_rotation_equivariance(config, dtype, improper):
    model = build(config, dtype)
    batch = collate(make_crystals(dtype=dtype))
    R = o3.rand_matrix(dtype=torch.float64)
    if improper:
        R = -R
    R = R.to(dtype)
    out = run(model, batch)
    rotated = run(model, with_fields(batch, **{keys.LATTICE: batch[keys.LATTICE] @ R.T}))
    expected = dict(out)
    expected[keys.EPS_LATTICE] = out[keys.EPS_LATTICE] @ R.T
    check_outputs(rotated, expected, dtype)
    # the lattice output is not trivially zero or invariant
    assert out[keys.EPS_LATTICE].abs().max() > 1e-3


def test_permutation_equivariance(config, dtype):
    model = build(config, dtype)
    batch = collate(make_crystals(dtype=dtype))
    gen = torch.Generator().manual_seed(1)
    # random permutation within each crystal (atoms stay contiguous per crystal)
    perm = torch.cat([
        start + torch.randperm(n, generator=gen)
        for start, n in zip(batch.ptr[:-1].tolist(), torch.diff(batch.ptr).tolist())
    ])
    permuted = with_fields(
        batch,
        **{keys.FRAC_COORDS: batch[keys.FRAC_COORDS][perm],
           keys.ATOMIC_NUMBERS: batch[keys.ATOMIC_NUMBERS][perm]},
    )
    out = run(model, batch)
    expected = {k: (v[perm] if k != keys.EPS_LATTICE else v) for k, v in out.items()}
    check_outputs(run(model, permuted), expected, dtype)


def test_common_shift_invariance(config, dtype):
    model = build(config, dtype)
    batch = collate(make_crystals(dtype=dtype))
    shift = torch.rand(batch.num_graphs, 3, dtype=torch.float64).to(dtype)
    frac = torch.remainder(batch[keys.FRAC_COORDS] + shift[batch[keys.BATCH]], 1.0)
    check_outputs(run(model, with_fields(batch, **{keys.FRAC_COORDS: frac})), run(model, batch), dtype)


def test_integer_translation_invariance(config, dtype):
    model = build(config, dtype)
    batch = collate(make_crystals(dtype=dtype))
    k = torch.randint(-2, 3, batch[keys.FRAC_COORDS].shape).to(dtype)
    frac = batch[keys.FRAC_COORDS] + k
    check_outputs(run(model, with_fields(batch, **{keys.FRAC_COORDS: frac})), run(model, batch), dtype)


def test_batched_equals_per_crystal(config, dtype):
    model = build(config, dtype)
    crystals = make_crystals(dtype=dtype)
    batched = run(model, collate(crystals))
    singles = [run(model, collate([c])) for c in crystals]
    expected = {
        key: torch.cat([s[key] for s in singles], dim=0) for key in batched
    }
    check_outputs(batched, expected, dtype)


@pytest.mark.parametrize(
    "case", ["coplanar", "flat", "negative_det", "huge", "tiny", "all_masked", "coincident_atoms"]
)
def test_finite_outputs_and_gradients(config, case):
    dtype = torch.float32
    model = build(config, dtype)
    model.zero_grad()
    crystals = make_crystals(dtype=dtype)
    for c in crystals:
        L = c[keys.LATTICE][0]
        if case == "coplanar":  # c in the a-b plane up to float32 rounding
            L = torch.stack([L[0], L[1], L[0] + L[1]])
        elif case == "flat":  # det = 1e-8 Å³
            L = torch.diag(torch.tensor([4.0, 4.0, 1e-8 / 16.0]))
        elif case == "negative_det":
            L = L[[1, 0, 2]]
        elif case == "huge":
            L = 100.0 * L / L.norm(dim=1, keepdim=True)
        elif case == "tiny":
            L = 1e-4 * L
        elif case == "all_masked":
            c[keys.ATOMIC_NUMBERS] = torch.zeros_like(c[keys.ATOMIC_NUMBERS])
        elif case == "coincident_atoms":
            c[keys.FRAC_COORDS] = torch.zeros_like(c[keys.FRAC_COORDS])
        c[keys.LATTICE] = L[None]
    batch = collate(crystals)
    if case == "flat":
        assert batch[keys.LATTICE].double().det().abs().max() < 2e-8
    out = model(batch)
    for key, value in out.items():
        assert torch.isfinite(value).all(), key
    loss = sum(v.pow(2).mean() for v in out.values())
    loss.backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name


def test_output_keys_and_shapes(config):
    crystals = make_crystals(dtype=torch.float32)
    batch = collate(crystals)
    n = batch[keys.FRAC_COORDS].shape[0]
    out = run(build(config, torch.float32), batch)
    expected = {keys.EPS_LATTICE, keys.COORD_SCORE}
    if config.predict_species:
        expected.add(keys.SPECIES_LOGITS)
        assert out[keys.SPECIES_LOGITS].shape == (n, 100)
    assert set(out) == expected
    assert out[keys.EPS_LATTICE].shape == (len(crystals), 3, 3)
    assert out[keys.COORD_SCORE].shape == (n, 3)


def test_default_parameter_count():
    model = Denoiser(DenoiserConfig())
    count = sum(p.numel() for p in model.parameters())
    assert 10_000 < count < 5_000_000, f"default DenoiserConfig parameters: {count}"


@pytest.mark.parametrize("pairwise", [False, True], ids=["radial", "pairwise"])
def test_messages_see_the_receiver_only_when_pairwise(pairwise):
    """With the self-interaction switched off, a receiver's update is made of messages alone.
    Radial weights make those messages blind to the receiver's own features; pairwise weights
    must not be (the point of DESIGN.md's 'every message must see both atoms')."""
    from diffcrystal.models.graph import ReceiverMean
    from diffcrystal.models.layers import InteractionBlock

    torch.manual_seed(0)
    irreps = o3.Irreps("8x0e+4x1o")
    block = InteractionBlock(irreps, irreps, o3.Irreps.spherical_harmonics(1), edge_dim=5, radial_hidden=16,
                             pairwise=pairwise, context_dim=3).double()
    with torch.no_grad():
        block.linear_self.weight.zero_()
    senders, receivers = torch.tensor([1, 2, 0, 2, 0, 1]), torch.tensor([0, 0, 1, 1, 2, 2])
    vectors = torch.randn(6, 3, dtype=torch.float64)
    edge_sh = o3.spherical_harmonics("0e+1o", vectors, normalize=True, normalization="component")
    edge_emb, context = torch.randn(6, 5, dtype=torch.float64), torch.randn(1, 3, dtype=torch.float64)
    x = torch.randn(3, irreps.dim, dtype=torch.float64)
    x_changed = x.clone()
    x_changed[0, :8] += 1.0  # receiver 0's scalars only
    args = (edge_sh, edge_emb, senders, receivers, ReceiverMean(receivers, 3, torch.float64), context, torch.zeros(3, dtype=torch.long))
    with torch.no_grad():
        y, y_changed = block(x, *args), block(x_changed, *args)
    change = float((y[0] - y_changed[0]).abs().max())
    assert (change > 1e-3) if pairwise else (change < 1e-12)
