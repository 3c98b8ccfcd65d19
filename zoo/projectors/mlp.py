"""An MLP projector applied per position (LLaVA/X-SAM style)."""

from __future__ import annotations

from torch import Tensor, nn

from zoo.projectors.base import Projector
from zoo.registry import register
from zoo.types import FeatureSpec


@register("projector")
class MLPProjector(Projector):
    """Per-token MLP (Linear, GELU, Linear) from the encoder's channels to the LLM hidden size."""

    def __init__(self, in_spec: FeatureSpec, hidden_size: int, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_spec.channels, hidden_size)]
        for _ in range(depth - 1):
            layers += [nn.GELU(), nn.Linear(hidden_size, hidden_size)]
        self.mlp = nn.Sequential(*layers)
        self.out_stride = in_spec.stride

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
