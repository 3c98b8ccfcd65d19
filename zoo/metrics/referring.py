"""cIoU / gIoU for referring, reasoning and interactive segmentation, with LISA's conventions.

Every mask in an update is one sample (an expression, or a visual-prompt region). `ciou` = ΣI / ΣU over the
dataset (dominated by large objects); `giou` = mean of per-sample IoU (every sample weighs the same; X-SAM and
PSALM's interactive "mIoU" is this number). The whole-image baseline (predict every pixel) is kept alongside,
so a collapsed model that paints everything is visible at a glance.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


def _sample_stats(pred: Tensor, target: Tensor, empty_iou: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample intersection, union (pixel counts) and IoU, where an empty union scores `empty_iou`."""
    inter = (pred & target).flatten(1).sum(1)
    union = (pred | target).flatten(1).sum(1)
    iou = torch.where(union > 0, inter.double() / union.clamp(min=1).double(), empty_iou)
    return inter, union, iou


class MaskIoU(Metric):
    """Cumulative IoU (cIoU), mean per-sample IoU (gIoU) and their whole-image baselines, DDP-safe.

    Args:
        empty_iou: IoU credited when prediction and target are both empty (LISA scores it 1.0; torchmetrics'
            `MeanIoU` would skip the sample instead, which changes gIoU on data with no-target expressions).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, empty_iou: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.empty_iou = empty_iou
        # Pixel counts overflow int32 over a benchmark, hence long; IoU sums in double for exact-ish averages.
        for name in ("inter_sum", "union_sum", "whole_inter_sum", "whole_union_sum", "count"):
            self.add_state(name, default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        for name in ("iou_sum", "whole_iou_sum"):
            self.add_state(name, default=torch.zeros((), dtype=torch.double), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add N samples: `pred` and `target` bool [N, H, W] at the same (full image) resolution."""
        if pred.shape != target.shape or pred.dim() != 3:
            raise ValueError(
                f"Expected pred and target of the same shape [N, H, W], got {pred.shape} and {target.shape}"
            )
        pred, target = pred.bool(), target.bool()
        inter, union, iou = _sample_stats(pred, target, self.empty_iou)
        whole_inter, whole_union, whole_iou = _sample_stats(torch.ones_like(pred), target, self.empty_iou)
        self.inter_sum += inter.sum()
        self.union_sum += union.sum()
        self.iou_sum += iou.sum()
        self.whole_inter_sum += whole_inter.sum()
        self.whole_union_sum += whole_union.sum()
        self.whole_iou_sum += whole_iou.sum()
        self.count += pred.shape[0]

    def compute(self) -> dict[str, float]:
        """`ciou`, `giou`, `ciou_whole_image`, `giou_whole_image` as fractions in [0, 1]."""

        def ratio(num: Tensor, den: Tensor) -> float:
            return float(num.double() / den.double()) if den > 0 else 0.0

        return {
            "ciou": ratio(self.inter_sum, self.union_sum),
            "giou": ratio(self.iou_sum, self.count),
            "ciou_whole_image": ratio(self.whole_inter_sum, self.whole_union_sum),
            "giou_whole_image": ratio(self.whole_iou_sum, self.count),
        }
