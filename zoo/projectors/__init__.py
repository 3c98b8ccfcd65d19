"""Vision-to-language projectors."""

from zoo.projectors.base import Projector
from zoo.projectors.conv import ConvProjector
from zoo.projectors.mlp import MLPProjector
from zoo.projectors.pixel_shuffle import PixelShuffleProjector

__all__ = ["ConvProjector", "MLPProjector", "PixelShuffleProjector", "Projector"]
