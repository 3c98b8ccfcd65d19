"""Panoptic quality exactly as panopticapi's `pq_compute` (COCO's, PSALM's, X-SAM's evaluator) scores it.

Category ids are indices into the dataset's category list (the panoptic conditions), so the metric only needs
`is_thing` per category. Unassigned pixels carry category `VOID` (-1) in predictions and targets alike.

panopticapi's rules, which torchmetrics' `PanopticQuality` does not follow in full (it treats predicted void as
"don't care" and has no crowd regions), hence this implementation:
- a prediction matches a target segment of its category when IoU > 0.5, where the union leaves out the
  prediction's pixels on target void; predicted void pixels count against the target (a half-covered object is
  a miss, an empty prediction scores 0, not NaN);
- crowd target regions are never matched nor missed, and an unmatched prediction lying more than half on target
  void plus the crowd region of its own category is not a false positive;
- PQ / SQ / RQ average over categories with any true positive, false positive or false negative.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from zoo.metrics.postprocess import VOID


def _segments(pairs: Tensor, is_thing: Tensor, crowd: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Index each pixel by segment: (segment index [H*W], category per segment, kind per segment).

    A segment is a (category, instance) pair with stuff instances merged; kind is 0 for a real segment, 1 for
    void, 2 for the crowd region of its category.
    """
    category, instance = pairs[..., 0].flatten(), pairs[..., 1].flatten()
    void = category == VOID
    safe = category.clamp(min=0)
    instance = torch.where(is_thing[safe], instance, torch.zeros_like(instance))
    kind = torch.zeros_like(category)
    kind[void] = 1
    if crowd is not None:
        kind[crowd.flatten() & ~void] = 2
        instance = instance.masked_fill(kind == 2, 0)
    key = torch.stack((kind, safe.masked_fill(void, 0), instance.masked_fill(void, 0)), 1)
    unique, index = torch.unique(key, dim=0, return_inverse=True)
    return index, unique[:, 1], unique[:, 0]


class PanopticMetric(Metric):
    """PQ / SQ / RQ averaged over categories (plus PQ over things and over stuff), DDP-safe (sums only).

    `update(pred_pairs, target_pairs, crowd)` takes long [B, H, W, 2] (category, instance) maps, e.g. from
    `to_panoptic_pairs` and `target_pairs_from_masks`, and optionally bool [B, H, W] crowd pixels of the target
    (their category is the one in `target_pairs`). As in COCO, a category has at most one crowd region per image.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, is_thing: Sequence[bool], **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer("is_thing", torch.tensor([bool(t) for t in is_thing]), persistent=False)
        num = len(is_thing)
        for name in ("true_positives", "false_positives", "false_negatives"):
            self.add_state(name, default=torch.zeros(num, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("iou_sum", default=torch.zeros(num, dtype=torch.double), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, crowd: Tensor | None = None) -> None:
        """Add a batch of images."""
        if preds.shape != target.shape or preds.dim() != 4 or preds.shape[-1] != 2:
            raise ValueError(f"Expected preds and target of shape [B, H, W, 2], got {preds.shape} and {target.shape}")
        for b in range(preds.shape[0]):
            self._update_image(preds[b], target[b], None if crowd is None else crowd[b].bool())

    def _update_image(self, pred: Tensor, target: Tensor, crowd: Tensor | None) -> None:
        num = len(self.is_thing)
        for name, pairs in (("prediction", pred), ("target", target)):
            bad = (pairs[..., 0] < VOID) | (pairs[..., 0] >= num)
            if bad.any():
                raise ValueError(f"{name} has category {int(pairs[..., 0][bad][0])}, not in [0, {num}) or VOID")
        t_index, t_category, t_kind = _segments(target, self.is_thing, crowd)
        p_index, p_category, p_kind = _segments(pred, self.is_thing, None)
        joint = torch.bincount(t_index * len(p_kind) + p_index, minlength=len(t_kind) * len(p_kind))
        joint = joint.view(len(t_kind), len(p_kind)).tolist()
        t_area = [sum(row) for row in joint]
        p_area = [sum(col) for col in zip(*joint, strict=True)]
        t_category, t_kind, p_category, p_kind = (x.tolist() for x in (t_category, t_kind, p_category, p_kind))
        void_row = t_kind.index(1) if 1 in t_kind else None
        crowd_row = {c: g for g, (c, k) in enumerate(zip(t_category, t_kind, strict=True)) if k == 2}
        tp, fp, fn = [0] * num, [0] * num, [0] * num
        iou_sum = [0.0] * num
        matched_t, matched_p = set(), set()
        for g, row in enumerate(joint):
            if t_kind[g] != 0:
                continue
            for p, inter in enumerate(row):
                if inter == 0 or p_kind[p] != 0 or p_category[p] != t_category[g]:
                    continue
                on_void = joint[void_row][p] if void_row is not None else 0
                iou = inter / (t_area[g] + p_area[p] - inter - on_void)
                if iou > 0.5:  # at most one prediction can pass: segments do not overlap
                    tp[t_category[g]] += 1
                    iou_sum[t_category[g]] += iou
                    matched_t.add(g)
                    matched_p.add(p)
        for g, kind in enumerate(t_kind):
            if kind == 0 and g not in matched_t:
                fn[t_category[g]] += 1
        for p, kind in enumerate(p_kind):
            if kind != 0 or p in matched_p:
                continue
            ignored = joint[void_row][p] if void_row is not None else 0
            if p_category[p] in crowd_row:
                ignored += joint[crowd_row[p_category[p]]][p]
            if ignored / p_area[p] <= 0.5:
                fp[p_category[p]] += 1
        device = self.true_positives.device
        self.true_positives += torch.tensor(tp, device=device)
        self.false_positives += torch.tensor(fp, device=device)
        self.false_negatives += torch.tensor(fn, device=device)
        self.iou_sum += torch.tensor(iou_sum, dtype=torch.double, device=device)

    def compute(self) -> dict[str, float]:
        """`pq`, `sq`, `rq`, `pq_things`, `pq_stuff` as fractions, averaged over categories seen in targets or
        predictions; NaN where there is no such category."""
        tp = self.true_positives.double()
        detections = tp + 0.5 * self.false_positives + 0.5 * self.false_negatives
        sq = torch.where(tp > 0, self.iou_sum / tp.clamp(min=1), 0.0)
        rq = torch.where(detections > 0, tp / detections.clamp(min=1e-9), 0.0)
        pq = sq * rq
        seen = detections > 0
        things = self.is_thing.to(tp.device)
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
