"""MaskFormer's transformer-encoder + FPN pixel decoder, which SEEM / X-Decoder use with FocalNet and DaViT.

A standard transformer encoder (post-norm, sine positions added to queries and keys, as DETR) runs on the coarsest
map only; an FPN then goes top-down with GroupNorm, 1x1 laterals and 3x3 output convs. The three coarsest FPN
outputs are the scales the mask decoder attends to, and a 3x3 conv on the finest gives the mask features. No
deformable attention: this is the decoder for backbones whose coarse map already carries enough context.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.mask2former.modeling_mask2former import Mask2FormerSinePositionEmbedding

from zoo.decoders.base import PixelDecoder
from zoo.decoders.pixel_decoder import _c2_xavier_fill, _group_norm
from zoo.registry import register
from zoo.types import FeatureSpecs, PixelFeatures


class EncoderLayer(nn.Module):
    """DETR's encoder layer: self-attention with positions on queries and keys, then an FFN; post-norm."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        q = x + pos
        x = self.norm1(x + self.self_attn(q, q, x, need_weights=False)[0])
        return self.norm2(x + self.ffn(x))


def _conv(in_channels: int, out_channels: int, kernel: int, relu: bool) -> nn.Sequential:
    """detectron2's Conv2d(norm=GN, activation=ReLU) as MaskFormer's FPN builds it (no bias under a norm)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False)
    _c2_xavier_fill(conv)
    return nn.Sequential(conv, _group_norm(out_channels), *([nn.ReLU()] if relu else []))


@register("pixel_decoder")
class TransformerEncoderPixelDecoder(PixelDecoder):
    """Transformer encoder on the coarsest map, then an FPN; three scales (coarse to fine) and mask features.

    Mask features sit at the finest input's stride (4 for res2..res5). Defaults are SEEM's: 6 encoder layers,
    width 512, 8 heads, FFN 2048.
    """

    def __init__(
        self,
        in_specs: FeatureSpecs,
        hidden_dim: int = 512,
        mask_dim: int = 512,
        num_layers: int = 6,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        num_levels: int = 3,
    ) -> None:
        super().__init__()
        self.inputs = [name for name, _ in sorted(in_specs.items(), key=lambda item: item[1].stride)]  # fine first
        if not 1 <= num_levels <= len(self.inputs):
            raise ValueError(f"num_levels={num_levels} needs 1..{len(self.inputs)} inputs; in_specs has {self.inputs}")
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even (sine position embedding), got {hidden_dim}")
        self.hidden_dim, self.mask_dim, self.num_levels = hidden_dim, mask_dim, num_levels
        self.mask_stride = in_specs[self.inputs[0]].stride
        coarsest = in_specs[self.inputs[-1]].channels
        self.input_projection = nn.Conv2d(coarsest, hidden_dim, kernel_size=1)
        _c2_xavier_fill(self.input_projection)
        self.position_embedding = Mask2FormerSinePositionEmbedding(
            num_position_features=hidden_dim // 2, normalize=True
        )
        self.encoder = nn.ModuleList(EncoderLayer(hidden_dim, num_heads, ffn_dim) for _ in range(num_layers))
        for p in self.encoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.laterals = nn.ModuleList(_conv(in_specs[n].channels, hidden_dim, 1, relu=False) for n in self.inputs[:-1])
        self.outputs = nn.ModuleList(_conv(hidden_dim, hidden_dim, 3, relu=True) for _ in self.inputs)
        self.mask_features = nn.Conv2d(hidden_dim, mask_dim, kernel_size=3, padding=1)
        _c2_xavier_fill(self.mask_features)

    def forward(self, features: dict[str, Tensor]) -> PixelFeatures:
        missing = [name for name in self.inputs if name not in features]
        if missing:
            raise KeyError(f"TransformerEncoderPixelDecoder needs features {missing}; got {list(features)}")
        x = self.input_projection(features[self.inputs[-1]])
        batch, channels, height, width = x.shape
        pos = self.position_embedding(x.shape, x.device, x.dtype).to(x.dtype).flatten(2).transpose(1, 2)
        tokens = x.flatten(2).transpose(1, 2)
        for layer in self.encoder:
            tokens = layer(tokens, pos)
        y = self.outputs[-1](tokens.transpose(1, 2).reshape(batch, channels, height, width))
        multi_scale = [y]
        for i in range(len(self.inputs) - 2, -1, -1):  # coarse to fine
            lateral = self.laterals[i](features[self.inputs[i]])
            y = self.outputs[i](lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest"))
            if len(multi_scale) < self.num_levels:
                multi_scale.append(y)
        return PixelFeatures(mask_features=self.mask_features(y), multi_scale=multi_scale)
