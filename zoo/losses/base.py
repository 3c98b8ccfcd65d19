"""The criterion slot's contract: a model's per-layer predictions and a batch's targets -> named loss terms."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.types import Prediction


class Criterion(nn.Module):
    """Base of criteria. It receives the task's name, so each reads the task table for what it needs (the
    Hungarian set criterion its scoring; a criterion without matching may pair the k-th prompt with the k-th mask).

    Returns weighted terms named `loss_*`; the trainer sums them and logs each.
    """

    def forward(
        self,
        predictions: list[Prediction],
        target_masks: list[Tensor],
        target_labels: list[Tensor],
        task: str,
        generators: list[torch.Generator] | None = None,
    ) -> dict[str, Tensor]:
        raise NotImplementedError
