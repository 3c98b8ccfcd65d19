"""Vision-to-language projectors and the visual-prompt sampler (prompt regions -> LLM tokens)."""

from zoo.projectors.base import Projector
from zoo.projectors.conv import ConvProjector
from zoo.projectors.mlp import MLPProjector
from zoo.projectors.pixel_shuffle import PixelShuffleProjector
from zoo.projectors.prompt_sampler import PointSampler

__all__ = ["ConvProjector", "MLPProjector", "PixelShuffleProjector", "PointSampler", "Projector"]
