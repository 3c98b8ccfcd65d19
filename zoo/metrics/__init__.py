"""Evaluation: per-image postprocessing (query predictions to masks) and dataset-level metrics."""

from zoo.metrics.ap import GroundedMaskMetric, MaskAP, coco_mask_ap, greedy_matched_iou
from zoo.metrics.clicks import Click, click_masks, next_click, number_of_clicks, simulate, simulate_batch
from zoo.metrics.interactive import ClickMetric
from zoo.metrics.panoptic import PanopticMetric, target_pairs_from_masks
from zoo.metrics.postprocess import (
    VOID,
    instance_topk,
    mask_scores,
    panoptic_fusion,
    referring_top1,
    referring_union,
    semantic_inference,
    to_panoptic_pairs,
)
from zoo.metrics.referring import MaskIoU
from zoo.metrics.semantic import SemanticIoU

__all__ = [
    "VOID",
    "Click",
    "ClickMetric",
    "GroundedMaskMetric",
    "MaskAP",
    "MaskIoU",
    "PanopticMetric",
    "SemanticIoU",
    "click_masks",
    "coco_mask_ap",
    "greedy_matched_iou",
    "instance_topk",
    "mask_scores",
    "next_click",
    "number_of_clicks",
    "panoptic_fusion",
    "referring_top1",
    "referring_union",
    "semantic_inference",
    "simulate",
    "simulate_batch",
    "target_pairs_from_masks",
    "to_panoptic_pairs",
]
