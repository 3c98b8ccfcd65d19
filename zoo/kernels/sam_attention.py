"""SAM ViT attention with decomposed relative positions through `scaled_dot_product_attention`, exactly.

SAM adds rel_h[i, row(j)] + rel_w[i, col(j)] to the logits q_i . k_j * scale, where rel_h = q . R_h (MViTv2's
decomposed relative positions). transformers materialises that [N, N] bias per head, which rules out the fused
(flash / memory-efficient) kernels. The same logits come out of a plain dot product of augmented vectors,
    q' = [q * scale, rel_h(q), rel_w(q)],   k'_j = [k_j, onehot(row(j)), onehot(col(j))],
so SDPA runs with scale 1 and no mask. Head dim grows by h + w (64 -> 192 for ViT-L's 64x64 global layers, within
flash attention's 256); values are zero-padded to the same width so every fused backend is eligible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.sam.modeling_sam import SamVisionAttention


def rel_pos_attention(
    query: Tensor, key: Tensor, value: Tensor, rel_h: Tensor, rel_w: Tensor, scale: float, dropout: float = 0.0
) -> Tensor:
    """query/key/value [B, heads, h*w, C] over an h x w grid (row-major); rel_h [h, h, C], rel_w [w, w, C] are the
    per-(query, key) row/column embeddings (`SamVisionAttention.get_rel_pos`). Returns [B, heads, h*w, C]."""
    batch, heads, tokens, dim = query.shape
    height, width = rel_h.shape[0], rel_w.shape[0]
    if height * width != tokens:
        raise ValueError(f"{tokens} tokens do not form the {height}x{width} grid of the relative positions")
    grid_q = query.reshape(batch, heads, height, width, dim)
    bias_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, rel_h.to(query.dtype)).reshape(batch, heads, tokens, height)
    bias_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, rel_w.to(query.dtype)).reshape(batch, heads, tokens, width)
    rows = torch.arange(tokens, device=query.device) // width
    cols = torch.arange(tokens, device=query.device) % width
    onehot = torch.cat((F.one_hot(rows, height), F.one_hot(cols, width)), -1).to(key.dtype)
    width_aug = dim + height + width
    pad = -width_aug % 8  # fused kernels want head dims in multiples of 8
    query_aug = F.pad(torch.cat((query * scale, bias_h, bias_w), -1), (0, pad))
    key_aug = F.pad(torch.cat((key, onehot.expand(batch, heads, -1, -1)), -1), (0, pad))
    value_aug = F.pad(value, (0, width_aug + pad - dim))
    out = F.scaled_dot_product_attention(query_aug, key_aug, value_aug, dropout_p=dropout, scale=1.0)
    return out[..., :dim]


class FusedSamVisionAttention(SamVisionAttention):
    """transformers' SAM ViT attention (same parameters and checkpoints) computed by `rel_pos_attention`."""

    def forward(self, hidden_states: Tensor, output_attentions: bool = False) -> tuple[Tensor, None]:  # type: ignore[override]
        batch, height, width, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch, height * width, 3, self.num_attention_heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, heads, h*w, C] each
        dropout = self.dropout if self.training else 0.0
        if self.use_rel_pos:
            rel_h = self.get_rel_pos(height, height, self.rel_pos_h)
            rel_w = self.get_rel_pos(width, width, self.rel_pos_w)
            out = rel_pos_attention(query, key, value, rel_h, rel_w, self.scale, dropout)
        else:
            out = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, scale=self.scale)
        out = out.reshape(batch, self.num_attention_heads, height, width, -1).permute(0, 2, 3, 1, 4)
        return self.proj(out.reshape(batch, height, width, -1)), None


def use_fused_attention(model: nn.Module) -> int:
    """Switch every SAM ViT attention block in `model` to the fused form in place; returns how many changed."""
    blocks = [m for m in model.modules() if isinstance(m, SamVisionAttention)]
    for block in blocks:
        block.__class__ = FusedSamVisionAttention
    return len(blocks)
