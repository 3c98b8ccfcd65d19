"""A torchmetrics `Metric` whose state is a list of per-sample records (RLE masks, scores), for metrics such as
COCO AP that need every detection at once.

torchmetrics' own `MeanAveragePrecision(iou_type="segm")` gathers its RLE masks across ranks interleaved but its
labels and scores rank by rank, so with more than one image per rank they no longer line up (and unequal counts
per rank fail). Here each record carries a sortable key, every rank gathers all records with `all_gather_object`,
and `compute` sorts them by key, so 1 and N ranks hand the same input, in the same order, to the computation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch.distributed as dist
from pycocotools import mask as mask_utils
from torch import Tensor
from torchmetrics import Metric


def encode_masks(masks: Tensor) -> list[dict]:
    """COCO RLE of each bool [N, H, W] mask (counts as bytes, picklable)."""
    if masks.shape[0] == 0:
        return []
    array = np.asfortranarray(masks.bool().cpu().numpy().transpose(1, 2, 0).astype(np.uint8))
    return mask_utils.encode(array)


class RecordMetric(Metric):
    """Base of record metrics: subclasses append `(key, record)` to `self.records` and read `sorted_records()`."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("records", default=[], dist_reduce_fx=None)

    def sorted_records(self) -> list[Any]:
        """Records in key order: identical on every rank and for any number of ranks, given unique keys."""
        return [record for _, record in sorted(self.records, key=lambda item: item[0])]

    def _sync_dist(self, dist_sync_fn: Callable | None = None, process_group: Any | None = None) -> None:
        group = process_group or self.process_group
        gathered: list[list] = [[] for _ in range(dist.get_world_size(group))]
        dist.all_gather_object(gathered, self.records, group=group)
        self.records = [item for part in gathered for item in part]

    def _apply(self, fn: Callable, exclude_state: tuple[str, ...] = ()) -> Metric:
        return super()._apply(fn, exclude_state=("records", *exclude_state))
