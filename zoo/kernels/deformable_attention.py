"""Multi-scale deformable attention: the Triton kernel on CUDA when Triton imports, else transformers' PyTorch code.

The PyTorch path (`grid_sample` per level, promoted to fp32 under autocast) is the reference the kernel is tested
against and the fallback everywhere else (CPU, no Triton). `ZOO_DEFORMABLE_ATTENTION=torch` forces the fallback
on CUDA, e.g. to compare the two in `benchmarks/attention_kernels.py`.
"""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention,
)
from transformers.models.mask2former.modeling_mask2former import (
    multi_scale_deformable_attention as reference_deformable_attention,
)

HAS_TRITON = importlib.util.find_spec("triton") is not None


def use_triton(value: Tensor) -> bool:
    """The kernel runs where it can (CUDA tensors, Triton importable) unless the environment forces PyTorch."""
    return value.is_cuda and HAS_TRITON and os.environ.get("ZOO_DEFORMABLE_ATTENTION", "auto") != "torch"


def multi_scale_deformable_attention(
    value: Tensor, shapes: list[tuple[int, int]], locations: Tensor, weights: Tensor
) -> Tensor:
    """value [B, S, H, D] (levels flattened and concatenated), locations [B, Q, H, L, P, 2] in [0, 1] (x, y),
    weights [B, Q, H, L, P] -> [B, Q, H*D]."""
    if use_triton(value):
        from zoo.kernels.deformable_triton import triton_deformable_attention

        return triton_deformable_attention(value, shapes, locations, weights)
    return reference_deformable_attention(value, shapes, locations, weights)


class MultiScaleDeformableAttention(Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention):
    """transformers' module (same parameters, same checkpoints) with the sampling routed through the dispatcher.

    Only 2-d reference points (pixel centres) are supported: that is what a pixel decoder's encoder uses.
    """

    def forward(  # type: ignore[override]
        self,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor,
        position_embeddings: Tensor | None,
        reference_points: Tensor,
        spatial_shapes_list: list[tuple[int, int]],
    ) -> tuple[Tensor, Tensor]:
        if reference_points.shape[-1] != 2:
            raise ValueError(f"reference_points must be (x, y) pairs, got last dim {reference_points.shape[-1]}")
        queries = hidden_states if position_embeddings is None else hidden_states + position_embeddings
        batch, num_queries, _ = queries.shape
        num_keys = encoder_hidden_states.shape[1]
        if num_keys != sum(h * w for h, w in spatial_shapes_list):
            raise ValueError(f"{num_keys} keys do not match the level shapes {spatial_shapes_list}")
        heads, levels, points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(encoder_hidden_states).view(batch, num_keys, heads, self.d_model // heads)
        offsets = self.sampling_offsets(queries).view(batch, num_queries, heads, levels, points, 2)
        weights = self.attention_weights(queries).view(batch, num_queries, heads, levels * points)
        weights = weights.softmax(-1).view(batch, num_queries, heads, levels, points)
        normalizer = torch.tensor([[w, h] for h, w in spatial_shapes_list], device=queries.device)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        out = multi_scale_deformable_attention(value, spatial_shapes_list, locations, weights)
        return self.output_proj(out), weights
