"""Evaluation: per-image postprocessing (query predictions to masks) and dataset-level metrics."""

from zoo.metrics.panoptic import PanopticMetric, target_pairs_from_masks
from zoo.metrics.postprocess import VOID, mask_scores, panoptic_fusion, referring_top1, to_panoptic_pairs
from zoo.metrics.referring import MaskIoU

__all__ = [
    "VOID",
    "MaskIoU",
    "PanopticMetric",
    "mask_scores",
    "panoptic_fusion",
    "referring_top1",
    "target_pairs_from_masks",
    "to_panoptic_pairs",
]
