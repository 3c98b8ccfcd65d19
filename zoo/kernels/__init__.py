"""Fast attention paths that stay a pure pip install: Triton kernels (no op to build) and exact SDPA rewrites."""

from zoo.kernels.deformable_attention import MultiScaleDeformableAttention, multi_scale_deformable_attention
from zoo.kernels.sam_attention import FusedSamVisionAttention, rel_pos_attention, use_fused_attention

__all__ = [
    "FusedSamVisionAttention",
    "MultiScaleDeformableAttention",
    "multi_scale_deformable_attention",
    "rel_pos_attention",
    "use_fused_attention",
]
