"""Pixel decoders and mask decoders."""

from zoo.decoders.base import MaskDecoder, PixelDecoder
from zoo.decoders.mask2former import Mask2FormerDecoder
from zoo.decoders.pixel_decoder import MSDeformAttnPixelDecoder

__all__ = ["MaskDecoder", "PixelDecoder", "MSDeformAttnPixelDecoder", "Mask2FormerDecoder"]
