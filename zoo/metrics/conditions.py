"""One mask per condition (an expression or a visual prompt), predicted and targeted, as every scorer reads it.

Evaluation, the click loop of interactive evaluation and SEEM's multi-round training all score the same answer
(the top-1 query of each condition, at image resolution) against the same target (the union of the masks labelled
with the condition's index), so they share these definitions rather than each writing its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.metrics.postprocess import referring_top1
from zoo.types import Prediction

Pick = Callable[[Tensor, Tensor], Tensor]
"""(a condition's logits per query [Q], mask logits [Q, H, W]) -> the condition's bool mask [H, W]."""


def at_image_size(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Mask logits [B, Q, h, w] resized (bilinear, float) to the image's [H, W]: benchmarks score at image size."""
    return F.interpolate(masks.float(), size=size, mode="bilinear", align_corners=False)


def condition_masks(
    pred: Prediction, size: tuple[int, int], counts: Sequence[int], picks: Sequence[Pick] | None = None
) -> list[Tensor]:
    """The top-1 mask at image size of each condition: per sample `b`, bool [counts[b], H, W].

    The answer to a condition is its top-1 query (`referring_top1`: probability × mask score) unless `picks[b]`
    chooses sample `b`'s answers otherwise (gRefCOCO's union of the queries above a threshold).
    """
    masks, logits = at_image_size(pred.masks, size), pred.logits.float()
    picks = picks if picks is not None else [referring_top1] * len(counts)
    out = []
    for b, (count, pick) in enumerate(zip(counts, picks, strict=True)):
        chosen = [pick(logits[b, :, k], masks[b]) for k in range(count)]
        out.append(torch.stack(chosen) if chosen else torch.zeros(0, *size, dtype=torch.bool, device=masks.device))
    return out


def prompt_targets(masks: Tensor, labels: Tensor, count: int) -> Tensor:
    """One sample's target of each of its `count` conditions, bool [count, H, W]: the union of the masks `masks`
    [N, H, W] labelled with its index (none: empty, a no-target expression)."""
    if count == 0:
        return torch.zeros(0, *masks.shape[-2:], dtype=torch.bool, device=masks.device)
    return torch.stack([masks[labels == k].any(0) for k in range(count)])
