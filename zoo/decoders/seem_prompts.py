"""Visual prompts as the SEEM decoder reads them: points sampled from prompt masks, and memory attention masks.

A prompted object's positive mask (point, box, scribble, mask, or click disks) and negative mask (negative clicks)
are reduced to at most `max_points` pixels each, which the decoder turns into tokens by reading features there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.types import PromptInputs


@dataclass
class PromptPoints:
    """Points of each sample's `num` (padded) prompted objects, laid out object by object: [B, num * L]."""

    coords: Tensor  # [B, P, 2] normalised (x, y) in [0, 1]
    negative: Tensor  # [B, P] long: 0 for a positive point, 1 for a negative one
    owner: Tensor  # [P] the object each point belongs to
    valid: Tensor  # [B, P] False for padding


def _pick(mask: Tensor, max_points: int, training: bool) -> Tensor:
    """Normalised (x, y) of at most `max_points` pixels of a bool [H, W] mask: random in training, evenly spaced in
    evaluation (so a checkpoint always gives the same numbers)."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if ys.numel() > max_points:
        if training:
            pick = torch.randperm(ys.numel(), device=ys.device)[:max_points]
        else:
            pick = torch.linspace(0, ys.numel() - 1, max_points, device=ys.device).long()
        ys, xs = ys[pick], xs[pick]
    height, width = mask.shape
    return torch.stack([(xs + 0.5) / width, (ys + 0.5) / height], -1)


def prompt_points(prompts: PromptInputs, num: int, max_points: int, training: bool) -> PromptPoints:
    """Positive then negative points of every prompted object, padded to one length L across the batch."""
    rows: list[list[tuple[Tensor, Tensor] | None]] = []
    for b, positive in enumerate(prompts.positive):
        negative = prompts.negative[b] if prompts.negative is not None else None
        row = []
        for k in range(num):
            if k >= len(positive):
                row.append(None)
                continue
            coords = [_pick(positive[k], max_points, training)]
            if coords[0].shape[0] == 0:
                raise ValueError(f"visual prompt {k} of sample {b} is an empty mask; it needs at least one pixel")
            if negative is not None:
                coords.append(_pick(negative[k], max_points, training))
            flags = torch.cat(
                [torch.full((len(c),), i, dtype=torch.long, device=c.device) for i, c in enumerate(coords)]
            )
            row.append((torch.cat(coords), flags))
        rows.append(row)
    device = prompts.positive[0].device
    length = max([len(item[1]) for row in rows for item in row if item is not None] + [1])
    batch = len(rows)
    coords = torch.zeros(batch, num, length, 2, device=device)
    negative = torch.zeros(batch, num, length, dtype=torch.long, device=device)
    valid = torch.zeros(batch, num, length, dtype=torch.bool, device=device)
    for b, row in enumerate(rows):
        for k, item in enumerate(row):
            if item is not None:
                n = len(item[1])
                coords[b, k, :n], negative[b, k, :n], valid[b, k, :n] = item[0], item[1], True
    owner = torch.arange(num, device=device).repeat_interleave(length)
    return PromptPoints(coords.flatten(1, 2), negative.flatten(1, 2), owner, valid.flatten(1, 2))


def sample(maps: Tensor, coords: Tensor) -> Tensor:
    """Bilinear read of maps [B, C, h, w] at normalised coords [B, P, 2] -> [B, P, C]."""
    grid = (coords * 2 - 1)[:, None].to(maps.dtype)
    return F.grid_sample(maps, grid, align_corners=False)[:, :, 0].transpose(1, 2)


def per_object(prompts: PromptInputs, num: int, copies: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Owner [num * copies] and validity [B, num * copies] of `copies` variables per (padded) prompted object."""
    owner = torch.arange(num, device=device).repeat_interleave(copies)
    counts = torch.tensor([len(p) for p in prompts.positive], device=device)
    return owner, owner[None] < counts[:, None]


def previous_blocked(prompts: PromptInputs, num: int, size: tuple[int, int], device: torch.device) -> Tensor:
    """Memory prompts' cross-attention block [B, num, h*w] at a scale of `size`: outside the previous round's mask
    (nothing blocked before the first round)."""
    blocked = torch.zeros(len(prompts.positive), num, size[0] * size[1], dtype=torch.bool, device=device)
    if prompts.previous is None:
        return blocked
    for b, previous in enumerate(prompts.previous):
        if len(previous):
            resized = F.interpolate(previous[None].float(), size=size, mode="bilinear", align_corners=False)
            blocked[b, : len(previous)] = resized[0].flatten(1) < 0.5
    return blocked
