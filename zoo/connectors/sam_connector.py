"""X-SAM's segmentation connector: single-resolution ViT hidden states -> a multi-scale pyramid."""

from __future__ import annotations

from collections.abc import Mapping

from timm.layers import LayerNorm2d
from torch import Tensor, nn

from zoo.connectors.base import Connector
from zoo.projectors.pixel_shuffle import shuffle, shuffled_spec
from zoo.registry import register
from zoo.types import FeatureSpec, FeatureSpecs


class ConvLevel(nn.Sequential):
    """1x1 conv to `dim`, 3x3 conv, 1x1 conv to C*s, each followed by a channels-first LayerNorm."""

    def __init__(self, channels: int, dim: int, scale: float) -> None:
        out = round(channels * scale)
        super().__init__(
            nn.Conv2d(channels, dim, 1, bias=False),
            LayerNorm2d(dim),
            nn.Conv2d(dim, dim, 3, padding=1, bias=False),
            LayerNorm2d(dim),
            nn.Conv2d(dim, out, 1, bias=False),
            LayerNorm2d(out),
        )


@register("connector")
class SamConnector(Connector):
    """Hidden states of chosen ViT layers, each convolved then pixel-(un)shuffled by its scale factor.

    X-SAM reads SAM ViT-L layers 12/18/24 with factors 2/1/0.5: strides 16 -> 8/16/32 with 512/1024/2048
    channels (a level's channels become C/s). Outputs are named by stride like CNN encoders' (`res3` = stride
    8), so the pixel decoder reads them as it reads Swin's maps.
    """

    def __init__(
        self,
        in_specs: FeatureSpecs,
        layers: list[str],
        scale_factors: tuple[float, ...] = (2.0, 1.0, 0.5),
        dim: int = 512,
    ) -> None:
        super().__init__()
        if len(layers) != len(scale_factors):
            raise ValueError(f"SamConnector got {len(layers)} layers {layers} but {len(scale_factors)} scale factors")
        missing = [name for name in layers if name not in in_specs]
        if missing:
            raise ValueError(f"SamConnector layers {missing} are not encoder outputs: {list(in_specs)}")
        self.layers = list(layers)
        self.scale_factors = list(scale_factors)
        self.levels = nn.ModuleList(
            ConvLevel(in_specs[name].channels, dim, scale) for name, scale in zip(layers, scale_factors, strict=True)
        )
        self.output_specs: dict[str, FeatureSpec] = {}
        for name, scale in zip(layers, scale_factors, strict=True):
            spec = shuffled_spec(FeatureSpec(round(in_specs[name].channels * scale), in_specs[name].stride), scale)
            key = f"res{spec.stride.bit_length() - 1}"
            if key in self.output_specs:
                raise ValueError(
                    f"SamConnector scale factors {list(scale_factors)} give two levels at stride {spec.stride}"
                )
            self.output_specs[key] = spec
        for conv in (m for m in self.modules() if isinstance(m, nn.Conv2d)):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {
            key: shuffle(level(features[name]), scale)
            for key, name, scale, level in zip(
                self.output_specs, self.layers, self.scale_factors, self.levels, strict=True
            )
        }
