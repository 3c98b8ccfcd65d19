"""PSALM's convolutional projector: a strided residual block on the coarsest map, then a linear layer."""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from zoo.projectors.base import Projector
from zoo.registry import register
from zoo.types import FeatureSpec


@register("projector")
class ConvProjector(Projector):
    """Stride-2 ResNet basic block (C -> 2C) then Linear(2C -> LLM hidden): 32x32 stride-32 map -> 256 tokens."""

    def __init__(self, in_spec: FeatureSpec, hidden_size: int, expansion: int = 2) -> None:
        super().__init__()
        width = in_spec.channels * expansion
        down = nn.Sequential(nn.Conv2d(in_spec.channels, width, 1, stride=2, bias=False), nn.BatchNorm2d(width))
        self.block = BasicBlock(in_spec.channels, width, stride=2, downsample=down)
        self.fc = nn.Linear(width, hidden_size)
        self.out_stride = in_spec.stride * 2

    def forward(self, features: Tensor) -> Tensor:
        x = self.block(features)  # [B, 2C, h/2, w/2]
        return self.fc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
