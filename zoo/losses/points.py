"""Point sampling for mask losses: compare masks on a few thousand points, not every pixel (PointRend)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def point_sample(inputs: Tensor, coords: Tensor) -> Tensor:
    """Bilinearly read `inputs` [N, C, H, W] (or [N, H, W]) at `coords` [N, P, 2], (x, y) in [0, 1].

    Coordinates are normalised, so masks of different resolutions can be read at the same points. Returns
    [N, C, P] (or [N, P]). `align_corners=False` and zero padding, as Mask2Former.
    """
    squeeze = inputs.dim() == 3
    if squeeze:
        inputs = inputs.unsqueeze(1)
    grid = (2.0 * coords - 1.0).unsqueeze(2).to(inputs.dtype)
    out = F.grid_sample(inputs, grid, align_corners=False).squeeze(3)
    return out.squeeze(1) if squeeze else out


def point_sample_groups(masks: list[Tensor], coords: Tensor) -> Tensor:
    """Groups of masks [n_i, H_i, W_i] (e.g. one per image) read at consecutive rows of `coords` [sum n_i, P, 2],
    n_i rows each: one call when all groups share a resolution."""
    if len({m.shape[-2:] for m in masks}) == 1:
        return point_sample(torch.cat(masks), coords)
    rows = coords.split([len(m) for m in masks])
    return torch.cat([point_sample(m, c) for m, c in zip(masks, rows, strict=True)])


@torch.no_grad()
def uncertainty_points(
    logits: Tensor,
    num_points: int,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Coordinates [N, P, 2] concentrated where the mask logits [N, 1, H, W] (or [N, H, W]) are least certain.

    PointRend importance sampling: of `oversample_ratio * P` uniform candidates keep the
    `importance_sample_ratio * P` with the smallest |logit| (the decision boundary, where the loss is
    informative), and fill the rest uniformly so the whole mask keeps some supervision. Uniform draws come from
    `generator` (None: torch's global one).
    """
    draws = uniform_draws(
        logits.shape[0], num_points, oversample_ratio, importance_sample_ratio, logits.device, generator
    )
    return most_uncertain(logits, *draws, num_points)


def uniform_draws(
    n: int,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """`uncertainty_points`' random part for n masks: candidates [n, ratio * P, 2] and uniform fill [n, R, 2].

    Drawn apart from the selection so each image can draw from its own generator while one batched
    `most_uncertain` call serves all images.
    """
    candidates = torch.rand(n, int(num_points * oversample_ratio), 2, device=device, generator=generator)
    num_random = num_points - int(importance_sample_ratio * num_points)
    return candidates, torch.rand(n, num_random, 2, device=device, generator=generator)


@torch.no_grad()
def most_uncertain(logits: Tensor, candidates: Tensor, fill: Tensor, num_points: int) -> Tensor:
    """Per mask [N, (1,) H, W]: the P - R candidates of smallest |logit|, then the uniform `fill` [N, R, 2]."""
    if logits.dim() == 4:
        logits = logits.squeeze(1)
    uncertainty = -point_sample(logits.float(), candidates).abs()
    idx = uncertainty.topk(num_points - fill.shape[1], dim=1).indices
    coords = candidates.gather(1, idx.unsqueeze(-1).expand(-1, -1, 2))
    return torch.cat([coords, fill], dim=1)
