"""The two decoder slots: pixel decoder (encoder maps -> per-pixel embeddings + scales) and mask decoder."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from zoo.types import DecoderLayerOutput, PixelFeatures


class PixelDecoder(nn.Module):
    """Base of pixel decoders: named encoder maps in, `PixelFeatures` out.

    `multi_scale` holds `num_levels` maps of `hidden_dim` channels (coarse to fine); `mask_features` has
    `mask_dim` channels at stride `mask_stride`. The mask decoder is sized from `hidden_dim` and `mask_dim`.
    """

    hidden_dim: int
    mask_dim: int
    num_levels: int
    mask_stride: int

    def forward(self, features: dict[str, Tensor]) -> PixelFeatures:
        raise NotImplementedError


class MaskDecoder(nn.Module):
    """Base of mask decoders: `num_queries` queries of width `hidden_dim` attend to the pixel features.

    `forward(pixel, **inputs)` returns one `DecoderLayerOutput` per prediction (deep supervision, the last is
    final). A decoder declares in `reads` the conditioning inputs it takes (names from `types.DECODER_INPUTS`, the
    fields of `BridgeOutput`): the model passes each one the bridge produced as the keyword of that name, and a
    recipe pairing a bridge with a decoder that cannot read its output fails when it is built. `requires` are the
    inputs it cannot work without. `query_content` [B, Q, hidden_dim] is the initial query content (e.g. a
    language model's projected states); `query_offset` [B, 1 or Q, hidden_dim] is added to learned content
    (X-SAM's `<SEG>` state). A decoder that scores its own masks (`scores_masks`) needs no class head.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"query_content"})
    requires: ClassVar[frozenset[str]] = frozenset()
    scores_masks: ClassVar[bool] = False

    in_dim: int
    mask_dim: int
    hidden_dim: int
    num_queries: int
    num_layers: int

    def __init__(self, in_dim: int, mask_dim: int, hidden_dim: int, num_queries: int, num_layers: int) -> None:
        """Keep the sizes the model reads back; the queries carry a sine position embedding, so widths are even."""
        super().__init__()
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even (sine position embedding), got {hidden_dim}")
        self.in_dim, self.mask_dim, self.hidden_dim = in_dim, mask_dim, hidden_dim
        self.num_queries, self.num_layers = num_queries, num_layers

    def forward(self, pixel: PixelFeatures, **inputs: object) -> list[DecoderLayerOutput]:
        raise NotImplementedError
