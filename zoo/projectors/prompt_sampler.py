"""Visual prompts as language-model tokens: pool a projected token grid at points inside each prompt mask."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.registry import register


@register("sampler")
class PointSampler(nn.Module):
    """One LLM token per visual prompt, pooled from `num_points` points inside its mask (X-SAM: 256, max-pool).

    Each prompt samples the grid of the image it was drawn on (`sources`), which need not be the image being
    segmented: X-SAM's visual grounding takes a category's prompt from another image of the batch. Training
    draws random points with repetition; evaluation takes evenly spaced foreground pixels so a checkpoint always
    gives the same numbers.
    """

    def __init__(self, num_points: int = 256, pool: Literal["max", "mean"] = "max") -> None:
        super().__init__()
        if num_points < 1:
            raise ValueError(f"PointSampler num_points must be positive, got {num_points}")
        self.num_points = num_points
        self.pool = pool

    def forward(self, grids: Tensor, prompts: Tensor, sources: Tensor) -> Tensor:
        """grids [B, H, h, w], prompts [K, Hi, Wi] bool, sources [K] batch indices -> tokens [K, H]."""
        if len(prompts) != len(sources):
            raise ValueError(f"{len(prompts)} prompts but {len(sources)} source images")
        height, width = prompts.shape[-2:]
        tokens = []
        for k, (mask, source) in enumerate(zip(prompts, sources.tolist(), strict=True)):
            if not 0 <= source < len(grids):
                raise ValueError(f"visual prompt {k} names source image {source}; the batch has {len(grids)}")
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if ys.numel() == 0:
                raise ValueError(f"visual prompt {k} is an empty mask; every prompt needs at least one pixel")
            if self.training:
                pick = torch.randint(ys.numel(), (self.num_points,), device=ys.device)
            else:
                pick = torch.linspace(0, ys.numel() - 1, min(self.num_points, ys.numel()), device=ys.device)
                pick = pick.round().long()
            coords = torch.stack([(xs[pick] + 0.5) / width, (ys[pick] + 0.5) / height], -1) * 2 - 1
            grid = grids[source : source + 1]
            sampled = F.grid_sample(grid, coords[None, None].to(grid.dtype), align_corners=False)[0, :, 0]
            tokens.append(sampled.amax(-1) if self.pool == "max" else sampled.mean(-1))
        return torch.stack(tokens) if tokens else grids.new_zeros(0, grids.shape[1])
