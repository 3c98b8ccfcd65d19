"""Vision-to-language projectors."""

from zoo.projectors.base import Projector
from zoo.projectors.conv import ConvProjector
from zoo.projectors.mlp import MLPProjector

__all__ = ["ConvProjector", "MLPProjector", "Projector"]
