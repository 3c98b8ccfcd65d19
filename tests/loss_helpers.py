"""A per-image reference for the batched matching cost: each image's points drawn and read on their own."""

from __future__ import annotations

import torch

from zoo.losses import point_sample
from zoo.losses.matcher import pairwise_dice, pairwise_sigmoid_bce


def per_image_mask_cost(
    pred: torch.Tensor, targets: torch.Tensor, num_points: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """[Q, N] 5 * BCE + 5 * Dice (the default matcher weights) of mask logits [Q, h, w] against targets [N, H, W]
    on `num_points` uniform points drawn from `generator`, as the matcher draws them for this image."""
    coords = torch.rand(1, num_points, 2, generator=generator)
    x = point_sample(pred.float().unsqueeze(0), coords)[0]
    y = point_sample(targets.float().unsqueeze(0), coords)[0]
    return 5.0 * pairwise_sigmoid_bce(x, y) + 5.0 * pairwise_dice(x, y)
