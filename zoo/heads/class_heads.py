"""The head slot: class logits for every query, from condition embeddings or a closed-set classifier."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.registry import register
from zoo.tasks import condition_groups, task_spec
from zoo.types import MASKED, BridgeOutput


class Head(nn.Module):
    """Base: (queries [B, Q, D], bridge output, task) -> logits [B, Q, K(+1)] as the task's scoring says."""

    def forward(self, queries: Tensor, bridge: BridgeOutput, task: str) -> Tensor:
        raise NotImplementedError


def _mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))


@register("head")
class ConditionHead(Head):
    """PSALM: dot product of a per-task projection of each query with each condition embedding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.ModuleDict({group: _mlp(dim) for group in condition_groups()})

    def forward(self, queries: Tensor, bridge: BridgeOutput, task: str) -> Tensor:
        if bridge.conditions is None:
            raise ValueError(f"ConditionHead needs condition embeddings for task '{task}'; the bridge gave none")
        logits = torch.einsum(
            "bqd,bkd->bqk", self.proj[task_spec(task).condition_group](queries), bridge.conditions.to(queries.dtype)
        )
        if bridge.condition_mask is not None:
            logits = logits.masked_fill(~bridge.condition_mask[:, None, :], MASKED)
        return logits


@register("head")
class LinearClassHead(Head):
    """Closed-set classifier over `num_classes` + no-object (segmentor pre-training, no language model)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(dim, num_classes + 1)

    def forward(self, queries: Tensor, bridge: BridgeOutput, task: str) -> Tensor:
        if task_spec(task).scoring != "softmax":
            raise ValueError(f"LinearClassHead scores a closed category set; it cannot serve task '{task}'")
        return self.classifier(queries)
