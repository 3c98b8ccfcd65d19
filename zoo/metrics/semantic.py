"""Semantic segmentation mIoU as detectron2's `SemSegEvaluator` (PSALM, X-SAM, SEEM) computes it.

A confusion matrix over the dataset (torchmetrics', so it sums across ranks), ignore-label pixels left out of
both prediction and target counts; the mean runs over categories that occur in the targets, so a category
absent from the evaluated set neither helps nor hurts, while predicting it where it is absent hurts the
categories it covers. The same metric serves closed and open-vocabulary sets: only the category count differs.
"""

from __future__ import annotations

from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from zoo.metrics.postprocess import VOID


class SemanticIoU(MulticlassConfusionMatrix):
    """mIoU and pixel accuracy; targets use `VOID` (-1) for ignored pixels."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(num_classes=num_classes, ignore_index=VOID, **kwargs)

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add long [B, H, W] predicted and target category maps."""
        if preds.shape != target.shape:
            raise ValueError(f"prediction {tuple(preds.shape)} and target {tuple(target.shape)} differ in shape")
        super().update(preds, target)

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        """`miou` and `pacc` (fractions); NaN when no target pixel was scored."""
        confusion = self.confmat.double()  # rows: target, columns: prediction
        tp = confusion.diagonal()
        target_area, pred_area = confusion.sum(1), confusion.sum(0)
        present = target_area > 0
        if not present.any():
            return {"miou": float("nan"), "pacc": float("nan")}
        iou = tp[present] / (target_area + pred_area - tp)[present]
        return {
            "miou": iou.mean().item(),
            "pacc": (tp.sum() / target_area.sum()).item(),
        }
