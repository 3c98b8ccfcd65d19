"""Turning one image's query predictions into masks the benchmarks score, as PSALM / Mask2Former do.

All functions work on a single image and take mask logits already resized to the resolution to be scored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

VOID = -1
"""Category id of unassigned pixels in (category, instance) pair maps: neither a thing nor a stuff id. In
targets torchmetrics ignores it (as panopticapi ignores unlabeled pixels); in predictions `PanopticMetric`
scores it as panopticapi does (a missed pixel), see `zoo.metrics.panoptic`."""


def mask_scores(masks: Tensor) -> Tensor:
    """Mean sigmoid probability inside each predicted mask (logit > 0), [Q]: how sure the mask itself is."""
    prob = masks.sigmoid().flatten(1)
    fg = (masks > 0).flatten(1).to(prob.dtype)
    return (prob * fg).sum(1) / (fg.sum(1) + 1e-6)


def referring_top1(scores: Tensor, masks: Tensor) -> Tensor:
    """The mask of the single best query for one condition, bool [H, W].

    PSALM ranks queries by sigmoid(condition logit) × mask score rather than by the logit alone, so a
    confident query with a vague mask loses to a slightly less confident one with a crisp mask.

    Args:
        scores: [Q] logits of each query for this condition (expression or visual prompt).
        masks: [Q, H, W] mask logits.
    """
    best = (scores.sigmoid() * mask_scores(masks)).argmax()
    return masks[best] > 0


def panoptic_fusion(
    class_logits: Tensor,
    masks: Tensor,
    is_thing: Sequence[bool],
    object_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
) -> tuple[Tensor, list[dict]]:
    """Mask2Former's panoptic inference: non-overlapping segments from per-query classes and masks.

    Queries whose best class is a real category with softmax probability > `object_threshold` compete for
    pixels by probability × mask probability; a query that keeps less than `overlap_threshold` of its own mask
    (it was mostly covered by better queries) is dropped, and stuff queries of one category merge into one
    segment.

    Args:
        class_logits: [Q, K+1] logits, the last column is no-object.
        masks: [Q, H, W] mask logits.
        is_thing: length K, whether each category is a countable thing.
        object_threshold: minimum class probability for a query to be kept (PSALM: 0.8).
        overlap_threshold: minimum kept / original mask area (PSALM and X-SAM: 0.8).

    Returns:
        segment_map: long [H, W], 0 = void, segments numbered from 1.
        segments: one dict per segment with `id`, `category` (index into the K categories), `isthing`, `score`
            (the best class probability among the queries merged into it).
    """
    num_classes = class_logits.shape[-1] - 1
    if len(is_thing) != num_classes:
        raise ValueError(f"is_thing has {len(is_thing)} entries for {num_classes} categories")
    probs, labels = class_logits.softmax(-1).max(-1)
    keep = (labels != num_classes) & (probs > object_threshold)
    probs, labels, mask_probs = probs[keep], labels[keep], masks[keep].sigmoid()

    segment_map = torch.zeros(masks.shape[-2:], dtype=torch.long, device=masks.device)
    segments: list[dict] = []
    if not keep.any():
        return segment_map, segments
    owner = (probs[:, None, None] * mask_probs).argmax(0)
    stuff_segment: dict[int, dict] = {}
    for k, (prob, label) in enumerate(zip(probs.tolist(), labels.tolist(), strict=True)):
        won = owner == k
        mask = won & (mask_probs[k] >= 0.5)
        original_area = int((mask_probs[k] >= 0.5).sum())
        if original_area == 0 or not mask.any() or int(won.sum()) / original_area < overlap_threshold:
            continue
        thing = bool(is_thing[label])
        if not thing and label in stuff_segment:
            merged = stuff_segment[label]
            merged["score"] = max(merged["score"], prob)
            segment_map[mask] = merged["id"]
            continue
        segment = {"id": len(segments) + 1, "category": label, "isthing": thing, "score": prob}
        segments.append(segment)
        segment_map[mask] = segment["id"]
        if not thing:
            stuff_segment[label] = segment
    return segment_map, segments


def to_panoptic_pairs(segment_map: Tensor, segments: Sequence[dict]) -> Tensor:
    """(category, instance) pairs, long [H, W, 2], as `torchmetrics` PanopticQuality reads them.

    Void pixels become (`VOID`, 0); things keep their segment id as instance id; stuff gets instance 0 (one
    segment per stuff category, torchmetrics ignores stuff instance ids anyway).
    """
    pairs = torch.zeros((*segment_map.shape, 2), dtype=torch.long, device=segment_map.device)
    pairs[..., 0] = VOID
    for segment in segments:
        region = segment_map == segment["id"]
        pairs[region] = torch.tensor(
            [segment["category"], segment["id"] if segment["isthing"] else 0], device=segment_map.device
        )
    return pairs


def instance_topk(
    class_logits: Tensor, masks: Tensor, is_thing: Sequence[bool], k: int = 100
) -> tuple[Tensor, Tensor, Tensor]:
    """Mask2Former's instance inference: the `k` best (query, category) pairs, things only.

    Every query may answer several categories; its score for each is the softmax class probability times the
    mask score, and stuff categories are dropped (instance AP is over things).

    Args:
        class_logits: [Q, K+1] logits, the last column is no-object.
        masks: [Q, H, W] mask logits.
        is_thing: length K.
        k: detections per image (Mask2Former and PSALM: 100).

    Returns:
        masks bool [D, H, W], scores [D], categories long [D], best first, D <= k.
    """
    num_classes = class_logits.shape[-1] - 1
    if len(is_thing) != num_classes:
        raise ValueError(f"is_thing has {len(is_thing)} entries for {num_classes} categories")
    probs = class_logits.softmax(-1)[:, :-1].flatten()
    scores, flat = probs.topk(min(k, probs.numel()))
    queries, labels = flat // num_classes, flat % num_classes
    thing = torch.tensor([bool(t) for t in is_thing], device=labels.device)[labels]
    queries, labels, scores = queries[thing], labels[thing], scores[thing]
    chosen = masks[queries]
    return chosen > 0, scores * mask_scores(chosen), labels


def semantic_inference(class_logits: Tensor, masks: Tensor) -> Tensor:
    """Mask2Former's semantic inference: argmax over categories of Σ_q p(category | q) · sigmoid(mask_q), long
    [H, W]. Soft, so every pixel gets a category even where no query is confident."""
    probs = class_logits.softmax(-1)[:, :-1]
    return torch.einsum("qk,qhw->khw", probs, masks.sigmoid()).argmax(0)


def referring_union(scores: Tensor, masks: Tensor, threshold: float = 0.6, fallback_top1: bool = False) -> Tensor:
    """gRefCOCO post-processing: the union of the masks of every query whose probability exceeds `threshold`,
    bool [H, W]. An expression can name several objects or none, so an empty union means "no target"; PSALM's
    evaluation instead falls back to the top-1 query (`fallback_top1`), which never predicts no target."""
    keep = scores.sigmoid() > threshold
    if not keep.any():
        return referring_top1(scores, masks) if fallback_top1 else torch.zeros_like(masks[0], dtype=torch.bool)
    return (masks[keep] > 0).any(0)
