"""Mask2Former's multi-scale deformable-attention pixel decoder, pure PyTorch (no compiled op).

The deformable attention is transformers' module with its sampling routed through `zoo.kernels` (a Triton
kernel on CUDA, transformers' `grid_sample` code elsewhere); the encoder layer and the FPN are written here because
transformers hard-codes 3 levels and 4 points. Parameter names follow transformers'
`Mask2FormerPixelDecoder` (X-SAM's layout): `input_projections`, `level_embed`, `encoder.layers.*`,
`mask_projection`, `adapter_i`/`layer_i`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers.models.mask2former.modeling_mask2former import Mask2FormerSinePositionEmbedding

from zoo.decoders.base import PixelDecoder
from zoo.kernels.deformable_attention import MultiScaleDeformableAttention
from zoo.registry import register
from zoo.types import FeatureSpecs, PixelFeatures


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with Mask2Former's 32 groups, fewer when the width is not a multiple of 32 (tiny models)."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def _c2_xavier_fill(conv: nn.Conv2d) -> None:
    """detectron2's conv init (kaiming-uniform with a=1, zero bias), as Mask2Former uses for its FPN convs."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def reference_points(shapes: list[tuple[int, int]], device: torch.device, dtype: torch.dtype) -> Tensor:
    """Normalised (x, y) pixel centres of all levels, [1, N, L, 2] (no padding: the same on every level)."""
    points = []
    for height, width in shapes:
        y, x = torch.meshgrid(
            (torch.arange(height, device=device, dtype=dtype) + 0.5) / height,
            (torch.arange(width, device=device, dtype=dtype) + 0.5) / width,
            indexing="ij",
        )
        points.append(torch.stack((x.flatten(), y.flatten()), -1))
    return torch.cat(points)[None, :, None].expand(-1, -1, len(shapes), -1)


class DeformableEncoderLayer(nn.Module):
    """Deformable self-attention over all levels, then an FFN; post-norm as in Deformable DETR."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, num_levels: int, num_points: int):
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(dim, num_heads, num_levels, num_points)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def reset_parameters(self) -> None:
        """Xavier everywhere, then Deformable DETR's sampling-offset fan (head h looks along 2*pi*h/H)."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        attn = self.self_attn
        thetas = torch.arange(attn.n_heads, dtype=torch.float32) * (2.0 * math.pi / attn.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True).values).view(attn.n_heads, 1, 1, 2)
        grid = grid.repeat(1, attn.n_levels, attn.n_points, 1)
        grid = grid * torch.arange(1, attn.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            attn.sampling_offsets.bias.copy_(grid.flatten())
        for linear in (attn.sampling_offsets, attn.attention_weights):
            nn.init.zeros_(linear.weight)
        for linear in (attn.attention_weights, attn.value_proj, attn.output_proj):
            nn.init.zeros_(linear.bias)

    def forward(self, x: Tensor, pos: Tensor, ref: Tensor, shapes: list[tuple[int, int]]) -> Tensor:
        attended, _ = self.self_attn(
            hidden_states=x,
            encoder_hidden_states=x,
            position_embeddings=pos,
            reference_points=ref,
            spatial_shapes_list=shapes,
        )
        x = self.self_attn_layer_norm(x + attended)
        return self.final_layer_norm(x + self.fc2(F.relu(self.fc1(x))))


class DeformableEncoder(nn.Module):
    """A stack of deformable encoder layers over the flattened, concatenated levels."""

    def __init__(self, num_layers: int, dim: int, num_heads: int, ffn_dim: int, num_levels: int, num_points: int):
        super().__init__()
        self.layers = nn.ModuleList(
            DeformableEncoderLayer(dim, num_heads, ffn_dim, num_levels, num_points) for _ in range(num_layers)
        )

    def forward(self, x: Tensor, pos: Tensor, shapes: list[tuple[int, int]]) -> Tensor:
        ref = reference_points(shapes, x.device, x.dtype)
        for layer in self.layers:
            x = layer(x, pos, ref, shapes)
        return x


@register("pixel_decoder")
class MSDeformAttnPixelDecoder(PixelDecoder):
    """Mask2Former's multi-scale deformable-attention pixel decoder with an FPN down to the mask features.

    The deformable encoder runs over the `num_levels` coarsest inputs; `multi_scale` returns its outputs
    coarse to fine. The FPN then adds log2(finest encoder stride / `common_stride`) inputs, the finest ones
    whose stride lies between `common_stride` and the encoder's finest stride, and `mask_features` are
    projected from its last map. As in detectron2 and transformers, when no finer input exists the finest
    encoder input gets its own lateral (X-SAM's 8/16/32 pyramid: `adapter_1` on the stride-8 input, mask
    features at stride 8).
    """

    def __init__(
        self,
        in_specs: FeatureSpecs,
        hidden_dim: int = 256,
        mask_dim: int = 256,
        num_layers: int = 6,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        num_points: int = 4,
        num_levels: int = 3,
        common_stride: int = 4,
    ):
        super().__init__()
        ordered = sorted(in_specs.items(), key=lambda item: item[1].stride)  # fine to coarse
        if not 1 <= num_levels <= len(ordered):
            raise ValueError(f"num_levels={num_levels} needs 1..{len(ordered)} inputs; in_specs has {list(in_specs)}")
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even (sine position embedding), got {hidden_dim}")
        self.hidden_dim, self.mask_dim, self.num_levels = hidden_dim, mask_dim, num_levels
        self.encoder_inputs = [name for name, _ in ordered[-num_levels:]][::-1]  # coarse to fine
        finest = ordered[-num_levels][1].stride
        num_fpn = max(0, int(math.log2(finest / common_stride)))
        fpn = [(name, spec) for name, spec in ordered if common_stride <= spec.stride <= finest][:num_fpn]
        self.fpn_inputs = [name for name, _ in fpn]  # fine to coarse; adapter_1/layer_1 is the finest
        self.mask_stride = fpn[0][1].stride if fpn else finest

        self.position_embedding = Mask2FormerSinePositionEmbedding(
            num_position_features=hidden_dim // 2, normalize=True
        )
        self.level_embed = nn.Parameter(torch.empty(num_levels, hidden_dim))
        self.input_projections = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_specs[name].channels, hidden_dim, kernel_size=1), _group_norm(hidden_dim))
            for name in self.encoder_inputs
        )
        self.encoder = DeformableEncoder(num_layers, hidden_dim, num_heads, ffn_dim, num_levels, num_points)
        self.mask_projection = nn.Conv2d(hidden_dim, mask_dim, kernel_size=1)
        for i, (_, spec) in enumerate(fpn, start=1):
            lateral = nn.Sequential(nn.Conv2d(spec.channels, hidden_dim, 1, bias=False), _group_norm(hidden_dim))
            output = nn.Sequential(
                nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, bias=False),
                _group_norm(hidden_dim),
                nn.ReLU(),
            )
            self.add_module(f"adapter_{i}", lateral)
            self.add_module(f"layer_{i}", output)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Mask2Former's init: xavier input projections, N(0, 1) level embeddings, c2-xavier FPN convs."""
        nn.init.normal_(self.level_embed)
        for projection in self.input_projections:
            nn.init.xavier_uniform_(projection[0].weight)
            nn.init.zeros_(projection[0].bias)
        for layer in self.encoder.layers:
            layer.reset_parameters()
        _c2_xavier_fill(self.mask_projection)
        for i in range(1, len(self.fpn_inputs) + 1):
            _c2_xavier_fill(getattr(self, f"adapter_{i}")[0])
            _c2_xavier_fill(getattr(self, f"layer_{i}")[0])

    def forward(self, features: dict[str, Tensor]) -> PixelFeatures:
        missing = [name for name in self.encoder_inputs + self.fpn_inputs if name not in features]
        if missing:
            raise KeyError(f"MSDeformAttnPixelDecoder needs features {missing}; got {list(features)}")
        embeds, pos = [], []
        for level, (name, projection) in enumerate(zip(self.encoder_inputs, self.input_projections, strict=True)):
            x = projection(features[name])
            embeds.append(x.flatten(2).transpose(1, 2))
            level_pos = self.position_embedding(x.shape, x.device, x.dtype).flatten(2).transpose(1, 2)
            pos.append(level_pos + self.level_embed[level].to(x.dtype))
        shapes = [tuple(features[name].shape[-2:]) for name in self.encoder_inputs]
        encoded = self.encoder(torch.cat(embeds, 1), torch.cat(pos, 1), shapes)

        batch = encoded.shape[0]
        chunks = encoded.split([h * w for h, w in shapes], dim=1)
        multi_scale = [x.transpose(1, 2).reshape(batch, -1, h, w) for x, (h, w) in zip(chunks, shapes, strict=True)]
        out = multi_scale[-1]
        for i in range(len(self.fpn_inputs), 0, -1):  # coarse to fine
            lateral = getattr(self, f"adapter_{i}")(features[self.fpn_inputs[i - 1]])
            upsampled = F.interpolate(out, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            out = getattr(self, f"layer_{i}")(lateral + upsampled)
        return PixelFeatures(mask_features=self.mask_projection(out), multi_scale=multi_scale)
