"""Pixel (un)shuffle: trade resolution for channels, and X-SAM's projector for SAM tokens built on it."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from zoo.projectors.mlp import MLPProjector
from zoo.registry import register
from zoo.types import FeatureSpec


def shuffle(x: Tensor, scale: float) -> Tensor:
    """[B, C, H, W] -> [B, C / s^2, H s, W s]: s > 1 upsamples (pixel shuffle), s < 1 folds 1/s x 1/s blocks of
    pixels into channels (pixel unshuffle), s = 1 is the identity."""
    if scale == 1:
        return x
    if scale > 1:
        if scale != int(scale):
            raise ValueError(f"pixel shuffle needs an integer scale above 1, got {scale}")
        return F.pixel_shuffle(x, int(scale))
    factor = round(1 / scale)
    if abs(factor * scale - 1) > 1e-6:
        raise ValueError(f"pixel unshuffle needs a scale 1/n, got {scale}")
    if x.shape[-1] % factor or x.shape[-2] % factor:
        raise ValueError(f"a {x.shape[-2]}x{x.shape[-1]} map cannot be folded by {factor}: sides must divide")
    return F.pixel_unshuffle(x, factor)


def shuffled_spec(spec: FeatureSpec, scale: float) -> FeatureSpec:
    """What `shuffle(x, scale)` makes of a map with `spec`."""
    return FeatureSpec(channels=round(spec.channels / scale**2), stride=round(spec.stride / scale))


@register("projector")
class PixelShuffleProjector(MLPProjector):
    """X-SAM's SAM-token projector: pixel-unshuffle by 0.5 (4x fewer tokens, 4x channels), then the MLP.

    On SAM ViT-L's 64x64x1024 map this gives 32x32 = 1024 tokens of 4096 channels before the MLP.
    """

    def __init__(self, in_spec: FeatureSpec, hidden_size: int, scale: float = 0.5, depth: int = 2) -> None:
        super().__init__(shuffled_spec(in_spec, scale), hidden_size, depth)
        self.scale = scale

    def forward(self, features: Tensor) -> Tensor:
        return super().forward(shuffle(features, self.scale))
