"""The bridge slot's contract: how the language side conditions the mask side."""

from __future__ import annotations

from torch import Tensor, nn

from zoo.types import Batch, BridgeOutput

IGNORE = -100


class Bridge(nn.Module):
    """Base: (batch, encoder maps) -> query content, condition embeddings in decoder width, LM loss."""

    def forward(self, batch: Batch, features: dict[str, Tensor]) -> BridgeOutput:
        raise NotImplementedError
