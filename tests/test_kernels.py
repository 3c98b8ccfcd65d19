"""Fast attention paths are exact: fused SAM attention vs the dense bias, the dispatcher's fallback, the kernel's
parity through Triton's interpreter (in a subprocess, so the interpreter flag never leaks into this process)."""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys

import pytest
import torch
from transformers import SamVisionConfig, SamVisionModel
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention as ReferenceAttention,
)
from transformers.models.sam.modeling_sam import SamVisionAttention

from tests.conftest import ROOT
from zoo.decoders.pixel_decoder import reference_points
from zoo.encoders.sam import SamViTArch, SamViTEncoder
from zoo.kernels import FusedSamVisionAttention, MultiScaleDeformableAttention, use_fused_attention
from zoo.kernels.deformable_attention import use_triton


def sam_config(**overrides) -> SamVisionConfig:
    config = SamVisionConfig(hidden_size=32, num_attention_heads=2, image_size=80, patch_size=8, window_size=4)
    config._attn_implementation = "eager"
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


@pytest.mark.parametrize("window", [0, 4], ids=["global", "windowed"])
def test_fused_sam_attention_equals_the_dense_bias(window: int) -> None:
    dense = SamVisionAttention(sam_config(), window)
    with torch.no_grad():  # SAM initialises them to zero, which would hide a wrong rel-pos term
        dense.rel_pos_h.normal_()
        dense.rel_pos_w.normal_()
    fused = copy.deepcopy(dense)
    assert use_fused_attention(fused) == 1 and isinstance(fused, FusedSamVisionAttention)
    side = 10 if window == 0 else window
    x = torch.randn(3, side, side, 32, requires_grad=True)
    want, got = dense(x)[0], fused(x)[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    grad_out = torch.randn_like(want)
    leaves = ("rel_pos_h", "rel_pos_w", "qkv.weight")
    want_grads = torch.autograd.grad(want, [x, *(dense.get_parameter(n) for n in leaves)], grad_out)
    got_grads = torch.autograd.grad(got, [x, *(fused.get_parameter(n) for n in leaves)], grad_out)
    for name, g, w in zip(("input", *leaves), got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4, msg=lambda m, n=name: f"grad {n}: {m}")


def test_sam_encoder_runs_fused_and_matches_transformers_eager() -> None:
    arch = SamViTArch(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, patch_size=8,
                      image_size=64, window_size=4, global_attn_indexes=(1,))  # fmt: skip
    encoder = SamViTEncoder(arch=arch, layers=(1, 2))
    attention = [m for m in encoder.modules() if isinstance(m, SamVisionAttention)]
    assert len(attention) == 2 and all(isinstance(m, FusedSamVisionAttention) for m in attention)
    config = sam_config(hidden_size=32, num_hidden_layers=2, mlp_dim=64, image_size=64, global_attn_indexes=[1])
    reference = SamVisionModel(config).vision_encoder
    with torch.no_grad():
        for p in encoder.body.parameters():
            p.normal_(std=0.1)
    reference.load_state_dict(encoder.body.state_dict(), strict=False)  # the encoder dropped the neck
    images = torch.rand(2, 3, 64, 64)
    features = encoder(images)
    x = (images - encoder.pixel_mean) / encoder.pixel_std
    hidden = reference(pixel_values=x, output_hidden_states=True).hidden_states
    torch.testing.assert_close(features["layer2"], hidden[2].permute(0, 3, 1, 2), atol=1e-4, rtol=1e-4)


def test_deformable_attention_module_matches_transformers() -> None:
    """Same parameter names and the same numbers as transformers' module (the CPU path is its own code)."""
    ours = MultiScaleDeformableAttention(32, 4, 2, 3)
    reference = ReferenceAttention(32, 4, 2, 3)
    for p in reference.parameters():
        torch.nn.init.normal_(p, std=0.2)
    ours.load_state_dict(reference.state_dict())  # strict: the same parameter names
    shapes = [(6, 5), (3, 3)]
    x = torch.randn(2, sum(h * w for h, w in shapes), 32)
    pos = torch.randn_like(x)
    ref = reference_points(shapes, x.device, x.dtype)
    kwargs = dict(position_embeddings=pos, reference_points=ref, spatial_shapes_list=shapes)
    want = reference(hidden_states=x, encoder_hidden_states=x, **kwargs)[0]
    torch.testing.assert_close(ours(hidden_states=x, encoder_hidden_states=x, **kwargs)[0], want)
    assert not use_triton(x), "CPU tensors take the PyTorch path"


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_triton_kernel_matches_the_reference_through_the_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_kernels_triton.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "3 passed" in run.stdout, run.stdout[-2000:]
