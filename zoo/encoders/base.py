"""The encoder slot: images in, named multi-scale feature maps out, with their shapes declared up front."""

from __future__ import annotations

from torch import Tensor, nn

from zoo.types import FeatureSpecs


class Encoder(nn.Module):
    """Base of vision encoders: `output_specs` names every map `forward` returns (fine to coarse)."""

    output_specs: FeatureSpecs

    def forward(self, images: Tensor) -> dict[str, Tensor]:  # images: [B, 3, H, W] in [0, 1]
        raise NotImplementedError
