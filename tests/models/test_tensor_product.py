"""DepthwiseTensorProduct against e3nn's o3.TensorProduct (float64) and against rotations."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from diffcrystal.models.tensor_product import DepthwiseTensorProduct, depthwise_tensor_product, supports

UVU = "uvu"

# (irreps_in1, irreps_in2, irreps_out, instructions)
CASES = {
    # the denoiser's first interaction (scalars only, 16 of them geometric)
    "first_layer": ("48x0e+16x0e", "0e+1o", "48x0e+16x0e+16x1o", [(0, 0, 0, UVU, True), (1, 0, 1, UVU, True), (1, 1, 2, UVU, True)]),
    # the denoiser's later interactions
    "later_layer": (
        "48x0e+16x0e+16x1o", "0e+1o", "48x0e+16x0e+16x0e+16x1o+16x1o",
        [(0, 0, 0, UVU, True), (1, 0, 1, UVU, True), (1, 1, 3, UVU, True), (2, 0, 4, UVU, True), (2, 1, 2, UVU, True)],
    ),
    # every kind, including the cross product (1o x 1o -> 1e), two paths summed into one output
    # and an output block no path reaches
    "all_kinds": (
        "5x0e+3x1o", "0e+1o", "5x0e+3x0e+3x1e+3x1o+2x0o",
        [(0, 0, 0, UVU, True), (1, 1, 1, UVU, True), (1, 1, 2, UVU, True), (1, 0, 3, UVU, True), (0, 0, 0, UVU, True)],
    ),
}


def _inputs(tp, num_edges: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x1 = torch.randn(num_edges, tp.irreps_in1.dim, generator=gen, dtype=torch.float64)
    x2 = torch.randn(num_edges, tp.irreps_in2.dim, generator=gen, dtype=torch.float64)
    weight = torch.randn(num_edges, tp.weight_numel, generator=gen, dtype=torch.float64)
    return x1, x2, weight


@pytest.mark.parametrize("name", sorted(CASES))
def test_equals_e3nn_tensor_product(name):
    irreps_in1, irreps_in2, irreps_out, instructions = CASES[name]
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn bakes its Clebsch-Gordan constants in at construction
    try:
        e3nn_tp = o3.TensorProduct(irreps_in1, irreps_in2, irreps_out, instructions, shared_weights=False, internal_weights=False)
    finally:
        torch.set_default_dtype(default_dtype)
    fast = DepthwiseTensorProduct(irreps_in1, irreps_in2, irreps_out, instructions)
    assert fast.weight_numel == e3nn_tp.weight_numel
    x1, x2, weight = _inputs(fast, 64)
    torch.testing.assert_close(fast(x1, x2, weight), e3nn_tp(x1, x2, weight), rtol=0, atol=1e-12)


def test_output_block_without_path_is_zero():
    fast = DepthwiseTensorProduct(*CASES["all_kinds"])
    x1, x2, weight = _inputs(fast, 8)
    last = fast.irreps_out.slices()[-1]  # 2x0o: no instruction reaches it
    assert torch.count_nonzero(fast(x1, x2, weight)[:, last]) == 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_equivariant_under_random_rotations_and_inversion(name):
    fast = DepthwiseTensorProduct(*CASES[name])
    x1, x2, weight = _inputs(fast, 32, seed=1)
    torch.manual_seed(2)
    for rotation in o3.rand_matrix(3, dtype=torch.float64):
        for parity in (1.0, -1.0):
            matrix = parity * rotation
            d1 = fast.irreps_in1.D_from_matrix(matrix)
            d2 = fast.irreps_in2.D_from_matrix(matrix)
            d_out = fast.irreps_out.D_from_matrix(matrix)
            rotated = fast(x1 @ d1.T, x2 @ d2.T, weight)
            torch.testing.assert_close(rotated, fast(x1, x2, weight) @ d_out.T, rtol=0, atol=1e-11)


def test_no_edges():
    fast = DepthwiseTensorProduct(*CASES["later_layer"])
    x1, x2, weight = _inputs(fast, 0)
    assert fast(x1, x2, weight).shape == (0, fast.irreps_out.dim)


def test_state_dict_interchangeable_with_e3nn():
    irreps_in1, irreps_in2, irreps_out, instructions = CASES["later_layer"]
    e3nn_tp = o3.TensorProduct(irreps_in1, irreps_in2, irreps_out, instructions, shared_weights=False, internal_weights=False)
    fast = DepthwiseTensorProduct(irreps_in1, irreps_in2, irreps_out, instructions)
    fast.load_state_dict(e3nn_tp.state_dict())
    e3nn_tp.load_state_dict(fast.state_dict())


def test_factory_falls_back_to_e3nn_beyond_l1():
    l2_case = ("4x0e+2x2e", "0e+1o+2e", "4x0e+2x2e+4x2e", [(0, 0, 0, UVU, True), (1, 0, 1, UVU, True), (0, 2, 2, UVU, True)])
    assert not supports(*l2_case)
    assert isinstance(depthwise_tensor_product(*l2_case), o3.TensorProduct)
    assert isinstance(depthwise_tensor_product(*CASES["later_layer"]), DepthwiseTensorProduct)
    with pytest.raises(ValueError, match="l <= 1"):
        DepthwiseTensorProduct(*l2_case)


def test_refuses_harmonics_with_multiplicity():
    case = ("4x0e", "2x0e", "4x0e", [(0, 0, 0, UVU, True)])
    assert not supports(*case)
