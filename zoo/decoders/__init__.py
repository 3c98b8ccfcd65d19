"""Pixel decoders and mask decoders."""

from zoo.decoders.base import MaskDecoder, PixelDecoder
from zoo.decoders.fpn import TransformerEncoderPixelDecoder
from zoo.decoders.mask2former import Mask2FormerDecoder
from zoo.decoders.pixel_decoder import MSDeformAttnPixelDecoder
from zoo.decoders.seem import SeemDecoder
from zoo.decoders.seem_attention import AttentionGraph

__all__ = [
    "MaskDecoder",
    "PixelDecoder",
    "MSDeformAttnPixelDecoder",
    "Mask2FormerDecoder",
    "SeemDecoder",
    "AttentionGraph",
    "TransformerEncoderPixelDecoder",
]
