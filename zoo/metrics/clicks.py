"""The click simulator of interactive segmentation benchmarks (NoC@85/90, mIoU after N clicks).

Each next click goes where a careful annotator would put it: into the largest connected error region (missed
object or spurious mask), at its interior-most pixel, the one farthest from the region's boundary (the image
border counts as boundary). A click in a missed region is positive, one in a spurious region negative. This is
the protocol of RITM / SimpleClick / SEEM's evaluation, with the region chosen by area.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor


class Click(NamedTuple):
    """One simulated click at pixel (y, x); positive clicks add to the object, negative ones remove."""

    y: int
    x: int
    positive: bool


def _largest_region(error: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest 4-connected region of a bool map and its area (an empty map gives area 0)."""
    labels, count = ndimage.label(error)
    if count == 0:
        return error, 0
    areas = np.bincount(labels.ravel())[1:]
    best = int(areas.argmax())
    return labels == best + 1, int(areas[best])


def next_click(pred: Tensor, target: Tensor) -> Click:
    """The next click for a bool [H, W] prediction of a bool [H, W] target.

    Picks the larger of the largest false-negative and the largest false-positive connected regions (ties go to
    the false negative: adding the object is what a user does first) and clicks its interior-most pixel by the
    Euclidean distance transform; ties between pixels go to the first in row-major order, so the simulator is
    deterministic. Raises ValueError when the prediction already equals the target.
    """
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f"next_click needs pred and target of the same [H, W] shape, got {pred.shape}, {target.shape}")
    pred_np, target_np = pred.bool().cpu().numpy(), target.bool().cpu().numpy()
    fn_region, fn_area = _largest_region(target_np & ~pred_np)
    fp_region, fp_area = _largest_region(pred_np & ~target_np)
    if fn_area == 0 and fp_area == 0:
        raise ValueError("the prediction equals the target: there is no error region to click")
    positive = fn_area >= fp_area
    region = fn_region if positive else fp_region
    # Padding with background makes the image border a boundary, so clicks stay off the edge.
    distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return Click(int(y), int(x), positive)


def click_masks(clicks: Sequence[Click], shape: tuple[int, int], radius: int) -> tuple[Tensor, Tensor]:
    """Disks of `radius` px around the positive and the negative clicks: bool [H, W] each (a radius of 0 is the
    clicked pixel alone)."""
    height, width = shape
    ys = torch.arange(height)[:, None]
    xs = torch.arange(width)[None, :]
    positive = torch.zeros(height, width, dtype=torch.bool)
    negative = torch.zeros(height, width, dtype=torch.bool)
    for click in clicks:
        disk = (ys - click.y) ** 2 + (xs - click.x) ** 2 <= radius**2
        if click.positive:
            positive |= disk
        else:
            negative |= disk
    return positive, negative


def mask_iou(pred: Tensor, target: Tensor) -> float:
    """IoU of two bool masks; 1.0 when both are empty."""
    union = int((pred | target).sum())
    return int((pred & target).sum()) / union if union else 1.0


BatchPredict = Callable[[list[int], list[list[Click]], list[Tensor | None]], list[Tensor]]


def simulate_batch(
    predict: BatchPredict,
    targets: Sequence[Tensor],
    max_clicks: int = 20,
    stop_iou: float | None = None,
    min_clicks: int = 1,
) -> list[list[float]]:
    """Run the click loop for many targets at once, one `predict` call per round for all unfinished targets.

    `predict(items, clicks, previous)` gets the indices of the unfinished targets, their clicks so far and their
    previous predictions (None before the first click) and returns their new bool [H, W] masks. A target stops
    after `max_clicks`, when nothing is left to click (the prediction is exact), or once its IoU reaches
    `stop_iou` with at least `min_clicks` clicks (NoC needs nothing past its highest threshold). Returns the IoU
    after each click, per target.
    """
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be at least 1, got {max_clicks}")
    for n, target in enumerate(targets):
        if not target.any():
            raise ValueError(f"target {n} is empty: there is nothing to click on")
    clicks: list[list[Click]] = [[] for _ in targets]
    previous: list[Tensor | None] = [None] * len(targets)
    ious: list[list[float]] = [[] for _ in targets]
    active = list(range(len(targets)))
    while active:
        for i in active:
            current = previous[i] if previous[i] is not None else torch.zeros_like(targets[i], dtype=torch.bool)
            clicks[i].append(next_click(current, targets[i]))
        masks = predict(active, [clicks[i] for i in active], [previous[i] for i in active])
        still = []
        for i, mask in zip(active, masks, strict=True):
            mask = mask.bool()
            ious[i].append(mask_iou(mask, targets[i].bool()))
            previous[i] = mask
            done = len(clicks[i]) >= max_clicks or torch.equal(mask, targets[i].bool())
            if stop_iou is not None and ious[i][-1] >= stop_iou and len(clicks[i]) >= min_clicks:
                done = True
            if not done:
                still.append(i)
        active = still
    return ious


def simulate(
    predict: Callable[[list[Click], Tensor | None], Tensor],
    target: Tensor,
    max_clicks: int = 20,
    stop_iou: float | None = None,
) -> list[float]:
    """The click loop for one target: `predict(clicks, previous_mask)` returns the bool mask after those clicks.

    Click 1 is placed against an empty prediction; returns the IoU after each click (fewer than `max_clicks`
    when the prediction becomes exact or reaches `stop_iou`)."""

    def one(_: list[int], clicks: list[list[Click]], previous: list[Tensor | None]) -> list[Tensor]:
        return [predict(clicks[0], previous[0])]

    return simulate_batch(one, [target], max_clicks, stop_iou)[0]


def number_of_clicks(ious: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """NoC@threshold: the first click count whose IoU reaches `threshold`, `max_clicks` if none does."""
    for n, iou in enumerate(ious[:max_clicks], start=1):
        if iou >= threshold:
            return n
    return max_clicks
