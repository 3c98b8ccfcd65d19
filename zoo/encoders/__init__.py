"""Vision encoders."""

from zoo.encoders.base import Encoder
from zoo.encoders.timm_encoder import TimmEncoder

__all__ = ["Encoder", "TimmEncoder"]
