"""The projector slot: one vision feature map in, a grid of language-model-sized tokens out."""

from __future__ import annotations

from torch import Tensor, nn


class Projector(nn.Module):
    """Base of vision-to-LLM projectors; `forward` keeps the grid ([B, hidden, h, w]) so prompts can sample it."""

    def forward(self, features: Tensor) -> Tensor:
        raise NotImplementedError
