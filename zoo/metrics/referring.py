"""cIoU / gIoU for referring, reasoning and interactive segmentation, with LISA's conventions.

Every mask in an update is one sample (an expression, or a visual-prompt region). `ciou` = ΣI / ΣU over the
dataset (dominated by large objects); `giou` = mean of per-sample IoU (every sample weighs the same; X-SAM and
PSALM's interactive "mIoU" is this number). The whole-image baseline (predict every pixel) is kept alongside,
so a collapsed model that paints everything is visible at a glance.

gRefCOCO (the ReLA paper) adds expressions with no target: a sample with an empty target counts as a correct
"no target" when the prediction is empty too (IoU 1, nothing added to I or U) and as IoU 0 with the predicted area
added to U otherwise; N-acc is the share of no-target samples predicted empty, T-acc the share of samples with a
target predicted non-empty. With an empty prediction meaning "no target", ReLA's cIoU / gIoU are exactly the ones
above (empty/empty scores 1), so one metric serves RefCOCO and gRefCOCO; N-acc / T-acc appear once a no-target
sample was seen.
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
        names = ("inter_sum", "union_sum", "whole_inter_sum", "whole_union_sum", "count", "no_target", "no_target_hit")
        for name in (*names, "target_hit"):
            self.add_state(name, default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        for name in ("iou_sum", "whole_iou_sum"):
            self.add_state(name, default=torch.zeros((), dtype=torch.double), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, ignore: Tensor | None = None) -> None:
        """Add N samples: `pred` and `target` bool [N, H, W] at the same (full image) resolution; pixels in
        `ignore` (bool, broadcastable to [N, H, W]) count in neither intersection nor union."""
        if pred.shape != target.shape or pred.dim() != 3:
            raise ValueError(
                f"Expected pred and target of the same shape [N, H, W], got {pred.shape} and {target.shape}"
            )
        valid = torch.ones_like(pred, dtype=torch.bool)
        if ignore is not None:
            valid = valid & ~ignore.bool()
        pred, target = pred.bool() & valid, target.bool() & valid
        inter, union, iou = _sample_stats(pred, target, self.empty_iou)
        whole_inter, whole_union, whole_iou = _sample_stats(valid, target, self.empty_iou)
        self.inter_sum += inter.sum()
        self.union_sum += union.sum()
        self.iou_sum += iou.sum()
        self.whole_inter_sum += whole_inter.sum()
        self.whole_union_sum += whole_union.sum()
        self.whole_iou_sum += whole_iou.sum()
        self.count += pred.shape[0]
        has_pred, has_target = pred.flatten(1).any(1), target.flatten(1).any(1)
        self.no_target += (~has_target).sum()
        self.no_target_hit += (~has_target & ~has_pred).sum()
        self.target_hit += (has_target & has_pred).sum()

    def compute(self) -> dict[str, float]:
        """`ciou`, `giou`, `ciou_whole_image`, `giou_whole_image` as fractions in [0, 1]; `n_acc` and `t_acc` too
        when some sample had no target."""

        def ratio(num: Tensor, den: Tensor) -> float:
            return float(num.double() / den.double()) if den > 0 else 0.0

        out = {
            "ciou": ratio(self.inter_sum, self.union_sum),
            "giou": ratio(self.iou_sum, self.count),
            "ciou_whole_image": ratio(self.whole_inter_sum, self.whole_union_sum),
            "giou_whole_image": ratio(self.whole_iou_sum, self.count),
        }
        if self.no_target > 0:
            out["n_acc"] = ratio(self.no_target_hit, self.no_target)
            with_target = self.count - self.no_target
            out["t_acc"] = ratio(self.target_hit, with_target) if with_target > 0 else float("nan")
        return out
