"""No language model at all: the decoder keeps its own learned queries (segmentor pre-training)."""

from __future__ import annotations

from torch import Tensor

from zoo.bridges.base import Bridge
from zoo.registry import register
from zoo.tasks import task_spec
from zoo.types import Batch, BridgeOutput, Dims


@register("bridge")
class LearnedQueries(Bridge):
    """No language model: the decoder keeps its own learned queries (segmentor pre-training)."""

    def __init__(self, dims: Dims) -> None:
        super().__init__()

    def forward(self, batch: Batch, features: dict[str, Tensor]) -> BridgeOutput:
        if not task_spec(batch.task).segments:
            raise ValueError(f"LearnedQueries has no language model, so it cannot serve task '{batch.task}'")
        return BridgeOutput()
