"""COCO mask AP through pycocotools' COCOeval, fed from tensors: instance segmentation, VGD, grounded captioning.

The COCO objects are built in memory exactly as `COCO(json)` + `loadRes(results)` would build them (areas and
boxes from the RLE, detections non-crowd), so the numbers equal COCOeval run on the same predictions written to
disk; `tests/test_metrics_ap.py` checks that to 1e-6.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

from zoo.metrics.records import RecordMetric, encode_masks

AP_NAMES = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")


def _coco(images: list[dict], categories: list[int], annotations: list[dict]) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "categories": [{"id": c} for c in categories], "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_mask_ap(records: Sequence[dict]) -> dict[str, float]:
    """AP, AP50, AP75 and AP small / medium / large (fractions; NaN where COCOeval has no ground truth).

    Each record is one image: `height`, `width`, `gt` [(rle, category, iscrowd)] and `dt` [(rle, category, score)].
    Images are numbered in record order; categories are those seen in either list (one with detections but no
    ground truth is left out of the mean, as COCOeval does).
    """
    images, gts, dts = [], [], []
    for image_id, record in enumerate(records, start=1):
        images.append({"id": image_id, "height": record["height"], "width": record["width"]})
        for rle, category, crowd in record["gt"]:
            gts.append((image_id, rle, category, {"iscrowd": int(crowd)}))
        for rle, category, score in record["dt"]:
            dts.append((image_id, rle, category, {"iscrowd": 0, "score": float(score)}))
    categories = sorted({c for _, _, c, _ in gts} | {c for _, _, c, _ in dts})

    def annotations(items: list) -> list[dict]:
        return [
            {
                "id": n,
                "image_id": image_id,
                "category_id": category,
                "segmentation": rle,
                "area": float(mask_utils.area(rle)),
                "bbox": mask_utils.toBbox(rle).tolist(),
                **extra,
            }
            for n, (image_id, rle, category, extra) in enumerate(items, start=1)
        ]

    ground_truth = _coco(images, categories, annotations(gts))
    detections = _coco(images, categories, annotations(dts))
    evaluator = COCOeval(ground_truth, detections, "segm")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(v) if v >= 0 else math.nan for name, v in zip(AP_NAMES, evaluator.stats, strict=False)}


class MaskAP(RecordMetric):
    """COCO mask AP over images, DDP-safe and rank-count independent (see `RecordMetric`).

    Each `update` adds one image under a `key` that orders it (unique per image: e.g. (benchmark, image_id)).
    """

    higher_is_better = True

    def update(
        self,
        key: tuple,
        pred_masks: Tensor,
        scores: Tensor,
        pred_labels: Tensor,
        target_masks: Tensor,
        target_labels: Tensor,
        target_crowd: Tensor | None = None,
    ) -> None:
        """Predicted bool masks [D, H, W] with scores and categories [D]; targets [N, H, W] with categories and
        crowd flags [N] (crowd targets are COCO's iscrowd: matching them neither helps nor hurts)."""
        if pred_masks.shape[1:] != target_masks.shape[1:]:
            raise ValueError(f"prediction masks {pred_masks.shape} and targets {target_masks.shape} differ in size")
        if not len(pred_masks) == len(scores) == len(pred_labels) or len(target_masks) != len(target_labels):
            raise ValueError("masks, scores and labels must have one entry per mask")
        crowd = [False] * len(target_labels) if target_crowd is None else target_crowd.bool().tolist()
        height, width = target_masks.shape[1:]
        record = {
            "height": int(height),
            "width": int(width),
            "gt": list(zip(encode_masks(target_masks), target_labels.tolist(), crowd, strict=True)),
            "dt": list(zip(encode_masks(pred_masks), pred_labels.tolist(), scores.tolist(), strict=True)),
        }
        self.records.append((tuple(str(k) for k in key), record))

    def compute(self) -> dict[str, float]:
        """`ap`, `ap50`, `ap75`, `ap_small`, `ap_medium`, `ap_large`."""
        records = self.sorted_records()
        if not records:
            return {name: math.nan for name in AP_NAMES}
        return coco_mask_ap(records)


def greedy_matched_iou(pred_masks: Tensor, target_masks: Tensor) -> float:
    """GLaMM's grounded-caption mIoU for one image: pair predictions and targets one-to-one by repeatedly taking
    the highest remaining IoU (first in row-major order on ties), then average the paired IoUs (0 if none)."""
    if len(pred_masks) == 0 or len(target_masks) == 0:
        return 0.0
    pred = pred_masks.flatten(1).double()
    target = target_masks.flatten(1).double()
    inter = pred @ target.T
    union = pred.sum(1)[:, None] + target.sum(1)[None, :] - inter
    iou = np.where(union.numpy() > 0, (inter / union.clamp(min=1)).numpy(), 0.0)
    paired = []
    while iou.size > 0 and iou.max() > 0:
        row, col = np.unravel_index(int(iou.argmax()), iou.shape)
        paired.append(float(iou[row, col]))
        iou = np.delete(np.delete(iou, row, axis=0), col, axis=1)
    return float(np.mean(paired)) if paired else 0.0


class GroundedMaskMetric(RecordMetric):
    """Grounded captioning (GCG) mask metrics as GLaMM / MGLMM / X-SAM report them: class-agnostic mask AP50 of
    the phrase masks (every prediction scored 1.0, all one category) and the mean over images of the greedy
    matched-phrase IoU. Caption-text metrics (METEOR, CIDEr) need pycocoevalcap, which is not installed."""

    higher_is_better = True

    def update(self, key: tuple, pred_masks: Tensor, target_masks: Tensor) -> None:
        """One image: the masks of its predicted phrases and of its annotated phrases, bool [P | G, H, W]."""
        height, width = target_masks.shape[1:]
        record = {
            "height": int(height),
            "width": int(width),
            "gt": [(rle, 1, False) for rle in encode_masks(target_masks)],
            "dt": [(rle, 1, 1.0) for rle in encode_masks(pred_masks)],
            "miou": greedy_matched_iou(pred_masks.bool().cpu(), target_masks.bool().cpu()),
        }
        self.records.append((tuple(str(k) for k in key), record))

    def compute(self) -> dict[str, float]:
        """`ap50` and `miou` (fractions)."""
        records = self.sorted_records()
        if not records:
            return {"ap50": math.nan, "miou": math.nan}
        return {"ap50": coco_mask_ap(records)["ap50"], "miou": float(np.mean([r["miou"] for r in records]))}
