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
    if logits.dim() == 4:
        logits = logits.squeeze(1)
    n = logits.shape[0]
    num_candidates = int(num_points * oversample_ratio)
    candidates = torch.rand(n, num_candidates, 2, device=logits.device, generator=generator)
    uncertainty = -point_sample(logits.float(), candidates).abs()
    num_uncertain = int(importance_sample_ratio * num_points)
    idx = uncertainty.topk(num_uncertain, dim=1).indices
    coords = candidates.gather(1, idx.unsqueeze(-1).expand(-1, -1, 2))
    num_random = num_points - num_uncertain
    if num_random > 0:
        coords = torch.cat([coords, torch.rand(n, num_random, 2, device=logits.device, generator=generator)], dim=1)
    return coords
