"""Panoptic quality through torchmetrics, scored as panopticapi (COCO's, PSALM's, X-SAM's evaluator) does.

Category ids are indices into the dataset's category list (the panoptic conditions), so the metric only needs
`is_thing` per category. Unassigned pixels carry category `VOID` (-1) in predictions and targets alike.

torchmetrics treats *predicted* void as "don't care": it removes those pixels from a target segment's area and
skips false negatives that are mostly predicted void, so a prediction covering half of an object scores PQ 1.0
and an empty prediction scores NaN. panopticapi counts both against the model. `PanopticMetric` therefore maps
predicted void to an extra stuff category that no target has (an ordinary, wrong segment for torchmetrics) and
leaves it out of the averages; target void stays torchmetrics' void (ignored), as in panopticapi.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics.detection import PanopticQuality

from zoo.metrics.postprocess import VOID


class PanopticMetric(PanopticQuality):
    """PQ / SQ / RQ averaged over categories (plus PQ over things and over stuff), DDP-safe.

    `update(pred_pairs, target_pairs)` takes long [B, H, W, 2] (category, instance) maps, e.g. from
    `to_panoptic_pairs` and `target_pairs_from_masks`. Crowd regions are not modelled.
    """

    def __init__(self, is_thing: Sequence[bool], **kwargs) -> None:
        unassigned = len(is_thing)
        things = {i for i, thing in enumerate(is_thing) if thing}
        stuffs = {i for i, thing in enumerate(is_thing) if not thing} | {unassigned}
        super().__init__(things, stuffs, return_sq_and_rq=True, **kwargs)
        self.unassigned = unassigned
        is_thing_by_id = torch.tensor([bool(t) for t in is_thing] + [False])
        order = sorted(self.cat_id_to_continuous_id, key=self.cat_id_to_continuous_id.get)
        self.thing_columns = is_thing_by_id[order]  # per torchmetrics' (continuous) state column
        self.real_columns = torch.tensor(order) != unassigned

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch; predicted `VOID` pixels become the (scored, unreported) unassigned category."""
        unassigned = preds[..., 0] == VOID
        preds = torch.stack(
            (
                preds[..., 0].masked_fill(unassigned, self.unassigned),
                preds[..., 1].masked_fill(unassigned, 0),
            ),
            -1,
        )
        super().update(preds, target)

    def compute(self) -> dict[str, float]:
        """`pq`, `sq`, `rq`, `pq_things`, `pq_stuff` as fractions, averaged over categories seen in targets or
        predictions; NaN where there is no such category."""
        tp = self.true_positives.double()
        detections = tp + 0.5 * self.false_positives + 0.5 * self.false_negatives
        sq = torch.where(tp > 0, self.iou_sum / tp.clamp(min=1), 0.0)
        rq = torch.where(detections > 0, tp / detections.clamp(min=1e-9), 0.0)
        pq = sq * rq
        seen = (detections > 0) & self.real_columns.to(tp.device)
        things = self.thing_columns.to(tp.device)
        return {
            "pq": pq[seen].mean().item(),
            "sq": sq[seen].mean().item(),
            "rq": rq[seen].mean().item(),
            "pq_things": pq[seen & things].mean().item(),
            "pq_stuff": pq[seen & ~things].mean().item(),
        }


def target_pairs_from_masks(masks: Tensor, category_ids: Tensor, is_thing: Sequence[bool] | Tensor) -> Tensor:
    """Target (category, instance) pairs, long [H, W, 2], from unified-schema masks.

    Args:
        masks: bool [N, H, W], one per segment (COCO panoptic segments never overlap; if they do, later wins).
        category_ids: long [N], index of each segment's category.
        is_thing: per category (indexed by category id, not by mask), whether it is a thing.

    Each thing mask gets its own instance id (1, 2, ...); stuff gets instance 0; uncovered pixels are `VOID`.
    """
    pairs = torch.zeros((*masks.shape[-2:], 2), dtype=torch.long, device=masks.device)
    pairs[..., 0] = VOID
    for n, (mask, category) in enumerate(zip(masks.bool(), category_ids.tolist(), strict=True)):
        instance = n + 1 if bool(is_thing[category]) else 0
        pairs[mask] = torch.tensor([category, instance], device=masks.device)
    return pairs
