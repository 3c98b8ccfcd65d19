"""The bridge slot's contract: how the language side conditions the mask side."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from zoo.types import Batch, BridgeOutput


class Bridge(nn.Module):
    """Base: (batch, encoder maps) -> query content, condition embeddings in decoder width, LM loss.

    `produces` names the decoder inputs (`types.DECODER_INPUTS`) its output fills, so a model can check at build
    time that its mask decoder reads them.
    """

    produces: ClassVar[frozenset[str]] = frozenset()

    def forward(self, batch: Batch, features: dict[str, Tensor]) -> BridgeOutput:
        raise NotImplementedError
