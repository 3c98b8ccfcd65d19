"""The Triton deformable-attention kernel against transformers' PyTorch reference: outputs and gradients.

Runs on a GPU with the compiled kernel, or on the CPU through Triton's interpreter when `TRITON_INTERPRET=1` is set
before Triton is imported (tests/test_kernels.py launches this file that way in a subprocess). Skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

CUDA = torch.cuda.is_available()
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None or not (CUDA or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="needs Triton and either a GPU or TRITON_INTERPRET=1",
)
DEVICE = "cuda" if CUDA else "cpu"

from zoo.kernels.deformable_attention import reference_deformable_attention  # noqa: E402


def inputs(shapes, batch=2, queries=37, heads=2, dim=6, points=3, dtype=torch.float32):
    """Random value/locations/weights; locations spill outside [0, 1] so zero padding is exercised."""
    levels = len(shapes)
    keys = sum(h * w for h, w in shapes)
    value = torch.randn(batch, keys, heads, dim, device=DEVICE, dtype=dtype)
    locations = torch.rand(batch, queries, heads, levels, points, 2, device=DEVICE) * 1.5 - 0.25
    weights = torch.rand(batch, queries, heads, levels, points, device=DEVICE).softmax(-1)
    return value, locations, weights


def grads(fn, value, locations, weights, grad_out):
    leaves = [t.detach().clone().requires_grad_() for t in (value, locations, weights)]
    out = fn(leaves[0], SHAPES, leaves[1], leaves[2])
    return out, torch.autograd.grad(out, leaves, grad_out)


SHAPES = [(7, 5), (4, 3), (2, 2)]


def test_forward_and_gradients_match_the_reference_fp32() -> None:
    from zoo.kernels.deformable_triton import triton_deformable_attention

    value, locations, weights = inputs(SHAPES)
    grad_out = torch.randn(value.shape[0], locations.shape[1], value.shape[2] * value.shape[3], device=DEVICE)
    ref_out, ref_grads = grads(reference_deformable_attention, value, locations, weights, grad_out)
    out, kernel_grads = grads(triton_deformable_attention, value, locations, weights, grad_out)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    for name, got, want in zip(("value", "locations", "weights"), kernel_grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4, msg=lambda m, n=name: f"grad {n}: {m}")


def test_bf16_value_is_sampled_in_fp32() -> None:
    """Under autocast the value projection is bf16 and the locations fp32: the kernel reads both, adds in fp32."""
    from zoo.kernels.deformable_triton import triton_deformable_attention

    value, locations, weights = inputs(SHAPES, dtype=torch.bfloat16)
    out = triton_deformable_attention(value, SHAPES, locations, weights)
    assert out.dtype == torch.bfloat16
    want = reference_deformable_attention(value.float(), SHAPES, locations, weights)
    torch.testing.assert_close(out.float(), want, atol=2e-2, rtol=2e-2)


def test_single_level_one_point_is_bilinear_sampling() -> None:
    """One level, one point, weight 1: a hand-checkable bilinear read between four known pixels."""
    from zoo.kernels.deformable_triton import triton_deformable_attention

    grid = torch.arange(12.0, device=DEVICE).view(1, 12, 1, 1)  # a 3x4 map whose pixel (y, x) holds 4y + x
    locations = torch.tensor([(1.75 / 4, 1.5 / 3)], device=DEVICE).view(1, 1, 1, 1, 1, 2)  # pixel (1.0, 1.25)
    out = triton_deformable_attention(grid, [(3, 4)], locations, torch.ones(1, 1, 1, 1, 1, device=DEVICE))
    assert out.item() == pytest.approx(4 * 1.0 + 1.25)
