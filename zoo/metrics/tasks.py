"""How each task is evaluated, for the task table (`zoo.tasks`) to name: post-processing (a batch's last-layer
prediction to per-sample results), metric updates, and evaluation that re-runs the model (NoC's click loop).

Every function takes the evaluator's `EvalSettings`. Updates get one `GroupMetrics` per sample, the metrics of its
group (task and benchmark), and ask it for metrics by the kinds the task's table entry declares; a metric is made
on first use with the arguments given then, so groups and prompt types appear as data shows them.

Sample `meta` keys read when present (see `zoo.data.schema.Sample`): `benchmark`, `image_id` (orders AP records:
unique per image), `iscrowd` ([N] per target mask: COCO crowd regions), `generalized` (gRefCOCO-style referring:
threshold-union post-processing, N-acc / T-acc), `category_ids` ([N] per target; VGD: a prompt asks for the
category of its targets). Pixels not scored come from the schema's `Batch.ignore` ([H, W] per sample).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import torch
from torch import Tensor
from torchmetrics import Metric

from zoo.metrics.click_loop import ModelFn, run_clicks
from zoo.metrics.conditions import at_image_size, condition_masks, prompt_targets
from zoo.metrics.panoptic import target_pairs_from_masks
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
from zoo.types import Batch, Prediction


@dataclass
class EvalSettings:
    """What post-processing and metrics are tuned by (the `Evaluator`'s arguments, documented there), and the
    category tables panoptic PQ and AP need: per benchmark (None: any without its own) names and thing flags."""

    object_threshold: float = 0.8
    overlap_threshold: float = 0.8
    instance_topk: int = 100
    instance_ap: bool = True
    union_threshold: float = 0.6
    union_fallback_top1: bool = False
    num_clicks: int = 0
    click_radius: int = 3
    noc_thresholds: tuple[float, ...] = (0.85, 0.9)
    tables: dict[str | None, list[bool]] = field(default_factory=dict)
    names: dict[str | None, list[str]] = field(default_factory=dict)

    def category_table(self, num_classes: int, benchmark: str | None) -> tuple[list[bool], list[str]] | None:
        """Thing flags and names of `benchmark` (else the default table) if it has `num_classes` categories."""
        key = benchmark if benchmark in self.tables else None
        table = self.tables.get(key)
        return (table, self.names[key]) if table is not None and len(table) == num_classes else None


class GroupMetrics(Protocol):
    """The metrics of one group (a task on one benchmark)."""

    def metric(self, kind: str, *args: object, prefix: str = "") -> Metric:
        """The group's metric of `kind` (its outputs reported as `<prefix>_<output>` when prefixed, e.g. per prompt
        type), made from `args` on first use."""
        ...


@dataclass(frozen=True)
class MetricKind:
    """A metric a task's groups may keep: `make(*args)` builds it; `report` renames or selects its outputs where
    the task's papers name them otherwise (None: reported as `compute` returns them)."""

    name: str
    make: Callable[..., Metric]
    report: Callable[[dict[str, float]], dict[str, float]] | None = None


PostProcess = Callable[[Batch, Prediction, EvalSettings], list[dict]]
"""A batch's last-layer prediction -> one result per sample: at least `masks` (bool [N, H, W] or None) and their
`labels` (one text each), what predictions and overlays show."""
Update = Callable[[Sequence[GroupMetrics], Batch, list[dict], EvalSettings], None]
"""Score the per-sample results of one batch (the groups of its samples, in order). A result also holds the
sample's generated `text` when the model generated one (a caption metric reads it beside `Batch.answers`)."""
Rerun = Callable[[Sequence[GroupMetrics], Batch, ModelFn, EvalSettings], None]
"""Evaluation that runs the model again on inputs it derives from the batch."""


def sample_meta(batch: Batch, b: int) -> dict:
    """Sample `b`'s meta ({} when the batch carries none)."""
    return batch.meta[b] if b < len(batch.meta) else {}


def sample_ignore(batch: Batch, b: int) -> Tensor | None:
    """Sample `b`'s pixels not scored (bool [H, W]), or None."""
    ignore = batch.ignore[b] if batch.ignore is not None else None
    return ignore.to(batch.images.device).bool() if ignore is not None else None


# ---------------------------------------------------------------- referring and interactive: a mask per condition


def _condition_results(batch: Batch, pred: Prediction, labels: list[list[str]], settings: EvalSettings) -> list[dict]:
    """One mask per condition: the top-1 query's, or for gRefCOCO samples the union of queries above threshold."""
    union = partial(referring_union, threshold=settings.union_threshold, fallback_top1=settings.union_fallback_top1)
    picks = [union if sample_meta(batch, b).get("generalized", False) else referring_top1 for b in range(len(batch))]
    masks = condition_masks(pred, batch.images.shape[-2:], [len(sample) for sample in labels], picks)
    return [{"masks": m, "labels": list(sample)} for m, sample in zip(masks, labels, strict=True)]


def postprocess_referring(batch: Batch, pred: Prediction, settings: EvalSettings) -> list[dict]:
    """A mask per expression, labelled with the expression."""
    return _condition_results(batch, pred, batch.conditions, settings)


def postprocess_prompts(batch: Batch, pred: Prediction, settings: EvalSettings) -> list[dict]:
    """A mask per visual prompt, labelled with the prompt's type."""
    return _condition_results(batch, pred, batch.prompt_types, settings)


def _scored_conditions(batch: Batch, results: list[dict]) -> Iterator[tuple[int, dict, Tensor, Tensor | None]]:
    """Per sample: its index, result, the target of each condition and the pixels not scored."""
    for b, result in enumerate(results):
        targets = prompt_targets(batch.masks[b], batch.labels[b], len(result["masks"]))
        yield b, result, targets, sample_ignore(batch, b)


def update_referring(groups: Sequence[GroupMetrics], batch: Batch, results: list[dict], settings: EvalSettings) -> None:
    """cIoU / gIoU (+ N-acc / T-acc on no-target expressions) over every expression."""
    for b, result, targets, ignore in _scored_conditions(batch, results):
        groups[b].metric("iou").update(result["masks"], targets, ignore)


def update_interactive(
    groups: Sequence[GroupMetrics], batch: Batch, results: list[dict], settings: EvalSettings
) -> None:
    """cIoU / mIoU over every prompt and per prompt type (point, box, scribble, mask)."""
    for b, result, targets, ignore in _scored_conditions(batch, results):
        groups[b].metric("iou").update(result["masks"], targets, ignore)
        for kind in sorted(set(result["labels"])):
            picked = [k for k, t in enumerate(result["labels"]) if t == kind]
            groups[b].metric("iou", prefix=kind).update(result["masks"][picked], targets[picked], ignore)


def papers_miou(values: dict[str, float]) -> dict[str, float]:
    """Interactive papers call gIoU (the mean per-prompt IoU) "mIoU", and report no whole-image baseline."""
    return {"miou": values["giou"], "ciou": values["ciou"]}


@torch.no_grad()
def update_clicks(groups: Sequence[GroupMetrics], batch: Batch, model: ModelFn, settings: EvalSettings) -> None:
    """NoC with simulated clicks, re-running `model` each round (off when `num_clicks` is 0)."""
    if settings.num_clicks <= 0:
        return
    sessions = run_clicks(
        batch, model, settings.num_clicks, settings.click_radius, stop_iou=max(settings.noc_thresholds)
    )
    for b, ious in sessions:
        groups[b].metric("clicks", settings.noc_thresholds, settings.num_clicks).update([ious])


# ---------------------------------------------------------------- panoptic: PQ, instance AP, semantic mIoU


def postprocess_panoptic(batch: Batch, pred: Prediction, settings: EvalSettings) -> list[dict]:
    """Per sample `semantic` [H, W] and `num_classes`; with a category table also the fused `segment_map` /
    `segments` (masks and labels: one per segment) and, with `instance_ap`, the top-k `instances`."""
    masks, logits = at_image_size(pred.masks, batch.images.shape[-2:]), pred.logits.float()
    return [_panoptic(logits[b], masks[b], sample_meta(batch, b).get("benchmark"), settings) for b in range(len(batch))]


def _panoptic(logits: Tensor, masks: Tensor, benchmark: str | None, settings: EvalSettings) -> dict:
    num_classes = logits.shape[-1] - 1
    result: dict = {"semantic": semantic_inference(logits, masks), "num_classes": num_classes}
    table = settings.category_table(num_classes, benchmark)
    if table is None:
        result.update(masks=None, labels=[])
        return result
    is_thing, names = table
    segment_map, segments = panoptic_fusion(
        logits, masks, is_thing, settings.object_threshold, settings.overlap_threshold
    )
    result.update(
        masks=torch.stack([segment_map == s["id"] for s in segments]) if segments else None,
        labels=[names[s["category"]] for s in segments],
        segment_map=segment_map,
        segments=segments,
    )
    if settings.instance_ap:
        result["instances"] = instance_topk(logits, masks, is_thing, settings.instance_topk)
    return result


def update_panoptic(groups: Sequence[GroupMetrics], batch: Batch, results: list[dict], settings: EvalSettings) -> None:
    """Semantic mIoU always; PQ with a category table; instance AP (things, crowds as COCO's) with `instances`."""
    for b, result in enumerate(results):
        _update_panoptic(groups[b], batch, b, result, settings)


def _update_panoptic(group: GroupMetrics, batch: Batch, b: int, result: dict, settings: EvalSettings) -> None:
    meta = sample_meta(batch, b)
    masks, labels, device = batch.masks[b].bool(), batch.labels[b], batch.images.device
    ignore = sample_ignore(batch, b)
    ignore = ignore if ignore is not None else torch.zeros_like(result["semantic"], dtype=torch.bool)
    crowd_flags = meta.get("iscrowd")
    crowd_flags = torch.zeros(len(masks), dtype=torch.bool) if crowd_flags is None else crowd_flags.bool()
    crowd_flags = crowd_flags.to(device)
    semantic = torch.full_like(result["semantic"], VOID)
    for mask, label in zip(masks, labels.tolist(), strict=True):
        semantic[mask] = label
    semantic[ignore] = VOID
    group.metric("semantic", result["num_classes"]).update(result["semantic"][None], semantic[None])
    if "segment_map" not in result:
        return
    is_thing, _ = settings.category_table(result["num_classes"], meta.get("benchmark"))
    target_pairs = target_pairs_from_masks(masks, labels, is_thing)
    target_pairs[ignore] = torch.tensor([VOID, 0], device=device)
    crowd = masks[crowd_flags].any(0) if crowd_flags.any() else torch.zeros_like(ignore)
    pred_pairs = to_panoptic_pairs(result["segment_map"], result["segments"])
    group.metric("pq", tuple(is_thing)).update(pred_pairs[None], target_pairs[None], crowd[None])
    if "instances" in result:
        things = torch.tensor(is_thing, dtype=torch.bool, device=device)[labels]
        pred_masks, scores, categories = result["instances"]
        group.metric("ap").update(
            (meta.get("image_id", ""),),
            pred_masks & ~ignore,  # COCOeval has no ignore pixels: cut them away, as papers crop the padding
            scores,
            categories,
            masks[things],
            labels[things],
            crowd_flags[things],
        )


# ---------------------------------------------------------------- VGD: detections per prompt


def postprocess_vgd(batch: Batch, pred: Prediction, settings: EvalSettings) -> list[dict]:
    """Per prompt: the `instance_topk` queries by probability × mask score, as scored `detections`; `masks` holds
    each prompt's best one."""
    masks, logits = at_image_size(pred.masks, batch.images.shape[-2:]), pred.logits.float()
    results = []
    for b in range(len(batch)):
        quality = mask_scores(masks[b])
        detections = []
        for k in range(len(batch.prompt_types[b])):
            scores = logits[b, :, k].sigmoid() * quality
            top = scores.topk(min(settings.instance_topk, len(scores))).indices
            detections.append((masks[b][top] > 0, scores[top]))
        best = [m[0] for m, _ in detections]
        stacked = torch.stack(best) if best else torch.zeros(0, *masks.shape[-2:], dtype=torch.bool)
        results.append({"masks": stacked, "labels": list(batch.prompt_types[b]), "detections": detections})
    return results


def update_vgd(groups: Sequence[GroupMetrics], batch: Batch, results: list[dict], settings: EvalSettings) -> None:
    """Mask AP overall and per prompt type; each (sample, prompt) is one COCO image whose ground truth is every
    mask answering the prompt."""
    for b, result in enumerate(results):
        meta = sample_meta(batch, b)
        masks, labels = batch.masks[b].bool(), batch.labels[b]
        categories = meta.get("category_ids")
        ignore = sample_ignore(batch, b)
        for k, (kind, (pred_masks, scores)) in enumerate(zip(result["labels"], result["detections"], strict=True)):
            pred_masks = pred_masks if ignore is None else pred_masks & ~ignore  # as for instance AP
            answers = labels == k
            category = (
                int(torch.as_tensor(categories)[answers.cpu()][0]) if categories is not None and answers.any() else 0
            )
            targets = masks[answers]
            key = (meta.get("image_id", ""), kind, k)
            for metric in (groups[b].metric("ap"), groups[b].metric("ap", prefix=kind)):
                metric.update(
                    key,
                    pred_masks,
                    scores,
                    torch.full((len(scores),), category),
                    targets,
                    torch.full((len(targets),), category),
                )
