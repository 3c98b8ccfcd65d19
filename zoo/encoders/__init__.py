"""Vision encoders."""

from zoo.encoders.base import Encoder
from zoo.encoders.multi import MultiEncoder
from zoo.encoders.sam import SamViTArch, SamViTEncoder
from zoo.encoders.siglip import SiglipArch, SiglipEncoder
from zoo.encoders.timm_arch import DaViTEncoder, FocalNetEncoder
from zoo.encoders.timm_encoder import TimmEncoder

__all__ = [
    "DaViTEncoder",
    "Encoder",
    "FocalNetEncoder",
    "MultiEncoder",
    "SamViTArch",
    "SamViTEncoder",
    "SiglipArch",
    "SiglipEncoder",
    "TimmEncoder",
]
