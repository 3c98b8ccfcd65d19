"""Per-task post-processing and metrics, as the papers compute them, for whatever tasks and benchmarks batches carry.

Metrics are grouped by `task/benchmark` (the benchmark from `meta["benchmark"]`, e.g. "refcoco_val"; plain `task`
without one), created when a group is first seen. Under DDP a rank may never see some group or prompt type, so
`compute` first agrees on the union of metrics across ranks, then computes (and syncs) them in one order.

Sample `meta` keys read when present (see `zoo.data.schema.Sample`): `benchmark`, `image_id` (orders AP records:
unique per image), `iscrowd` ([N] per target mask: COCO crowd regions), `generalized` (gRefCOCO-style referring:
threshold-union post-processing, N-acc / T-acc), `category_ids` ([N] per target; VGD: a prompt asks for the
category of its targets). Pixels not scored come from the schema's `Batch.ignore` ([H, W] per sample).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning import Trainer
from torch import Tensor, nn
from torchmetrics import Metric

from zoo.callbacks.overlays import save_overlay
from zoo.metrics import (
    VOID,
    ClickMetric,
    MaskAP,
    MaskIoU,
    PanopticMetric,
    SemanticIoU,
    instance_topk,
    mask_scores,
    panoptic_fusion,
    referring_top1,
    referring_union,
    semantic_inference,
    target_pairs_from_masks,
    to_panoptic_pairs,
)
from zoo.metrics.click_loop import run_clicks
from zoo.types import Batch, Prediction


class Evaluator(nn.Module):
    """Panoptic PQ / instance AP / semantic mIoU, referring cIoU / gIoU (+ N-acc / T-acc), interactive mIoU / cIoU
    per prompt type (+ NoC with simulated clicks), VGD AP per prompt type.

    Args:
        object_threshold: panoptic fusion keeps queries whose class probability exceeds this (PSALM: 0.8).
        overlap_threshold: ... and that keep this share of their mask (PSALM, X-SAM: 0.8).
        instance_topk: detections per image for instance AP and VGD AP (Mask2Former: 100).
        instance_ap: compute instance AP on panoptic batches (costs an RLE encoding of every detection).
        union_threshold: gRefCOCO keeps every query whose probability exceeds this and unions their masks.
        union_fallback_top1: with no query above it, predict the top-1 query (PSALM) instead of "no target".
        num_clicks: click-simulation budget for NoC on interactive batches (papers: 20); 0 turns it off so tiny
            recipes stay fast (the loop re-runs the model up to this many times per batch).
        click_radius: radius in pixels of a click's disk prompt.
        noc_thresholds: IoU thresholds of the reported NoC.
        num_overlays: PNGs per task and epoch written to `<log_dir>/overlays`.
    """

    def __init__(
        self,
        object_threshold: float = 0.8,
        overlap_threshold: float = 0.8,
        instance_topk: int = 100,
        instance_ap: bool = True,
        union_threshold: float = 0.6,
        union_fallback_top1: bool = False,
        num_clicks: int = 0,
        click_radius: int = 3,
        noc_thresholds: tuple[float, ...] = (0.85, 0.9),
        num_overlays: int = 2,
    ) -> None:
        super().__init__()
        self.object_threshold = object_threshold
        self.overlap_threshold = overlap_threshold
        self.instance_topk = instance_topk
        self.instance_ap = instance_ap
        self.union_threshold = union_threshold
        self.union_fallback_top1 = union_fallback_top1
        self.num_clicks = num_clicks
        self.click_radius = click_radius
        self.noc_thresholds = tuple(noc_thresholds)
        self.num_overlays = num_overlays
        self.tables: dict[str | None, list[bool]] = {}  # is_thing per category, by benchmark (None: any)
        self.names: dict[str | None, list[str]] = {}
        self._metrics: dict[tuple[str, str], Metric] = {}
        self._specs: dict[tuple[str, str], tuple] = {}  # constructor arguments, for other ranks
        self._overlays_written: dict[str, int] = {}

    def bind(self, categories: list[dict] | dict[str | None, list[dict]] | None) -> None:
        """Learn the category tables (names, thing/stuff) panoptic PQ and AP need: one table for every benchmark,
        or {benchmark: table} (e.g. COCO and ADE20K-150 evaluated side by side; the key None serves benchmarks
        without their own). None leaves PQ and AP off; semantic mIoU needs no table."""
        if not categories:
            return
        tables = categories if isinstance(categories, dict) else {None: categories}
        self.tables = {name: [bool(c["isthing"]) for c in table] for name, table in tables.items()}
        self.names = {name: [c["name"] for c in table] for name, table in tables.items()}

    # ------------------------------------------------------------ post-processing

    @staticmethod
    def _full_res(batch: Batch, pred: Prediction) -> Tensor:
        return F.interpolate(pred.masks.float(), size=batch.images.shape[-2:], mode="bilinear", align_corners=False)

    def _panoptic_table(self, num_classes: int, benchmark: str | None) -> list[bool] | None:
        """The thing/stuff table of `benchmark` (else the default one) if it has `num_classes` categories."""
        name = benchmark if benchmark in self.tables else None
        table = self.tables.get(name)
        return table if table is not None and len(table) == num_classes else None

    def postprocess(self, batch: Batch, pred: Prediction) -> list[dict]:
        """One dict per sample: predicted bool masks [N, H, W] and their labels, as the task reads them.

        Panoptic samples also carry `segment_map` / `segments` (fusion), `semantic` [H, W] and, with a category
        table, `instances` (masks, scores, categories); VGD samples carry `detections` per prompt.
        """
        masks, logits = self._full_res(batch, pred), pred.logits.float()
        results = []
        for b in range(len(batch)):
            meta = batch.meta[b] if b < len(batch.meta) else {}
            if batch.task == "panoptic":
                results.append(self._postprocess_panoptic(logits[b], masks[b], meta.get("benchmark")))
            elif batch.task == "vgd":
                results.append(self._postprocess_vgd(logits[b], masks[b], batch.prompt_types[b]))
            else:
                labels = batch.conditions[b] if batch.task == "referring" else batch.prompt_types[b]
                if meta.get("generalized", False):
                    out = [
                        referring_union(logits[b, :, k], masks[b], self.union_threshold, self.union_fallback_top1)
                        for k in range(len(labels))
                    ]
                else:
                    out = [referring_top1(logits[b, :, k], masks[b]) for k in range(len(labels))]
                empty = torch.zeros(0, *masks.shape[-2:], dtype=torch.bool, device=masks.device)
                results.append({"masks": torch.stack(out) if out else empty, "labels": list(labels)})
        return results

    def _postprocess_panoptic(self, logits: Tensor, masks: Tensor, benchmark: str | None) -> dict:
        num_classes = logits.shape[-1] - 1
        result: dict = {"semantic": semantic_inference(logits, masks), "num_classes": num_classes}
        is_thing = self._panoptic_table(num_classes, benchmark)
        if is_thing is None:
            result.update(masks=None, labels=[])
            return result
        segment_map, segments = panoptic_fusion(logits, masks, is_thing, self.object_threshold, self.overlap_threshold)
        result.update(
            masks=torch.stack([segment_map == s["id"] for s in segments]) if segments else None,
            labels=[self.names[benchmark if benchmark in self.names else None][s["category"]] for s in segments],
            segment_map=segment_map,
            segments=segments,
        )
        if self.instance_ap:
            result["instances"] = instance_topk(logits, masks, is_thing, self.instance_topk)
        return result

    def _postprocess_vgd(self, logits: Tensor, masks: Tensor, prompt_types: list[str]) -> dict:
        """Per prompt: the `instance_topk` queries by probability × mask score, as scored detections."""
        quality = mask_scores(masks)
        detections = []
        for k in range(len(prompt_types)):
            scores = logits[:, k].sigmoid() * quality
            top = scores.topk(min(self.instance_topk, len(scores))).indices
            detections.append((masks[top] > 0, scores[top]))
        best = [m[0] for m, _ in detections]
        stacked = torch.stack(best) if best else torch.zeros(0, *masks.shape[-2:], dtype=torch.bool)
        return {"masks": stacked, "labels": list(prompt_types), "detections": detections}

    # ------------------------------------------------------------ metric bookkeeping

    @staticmethod
    def _make(name: str, args: tuple) -> Metric:
        factories: dict[str, Callable[..., Metric]] = {
            "iou": MaskIoU,
            "pq": PanopticMetric,
            "semantic": SemanticIoU,
            "ap": MaskAP,
            "clicks": ClickMetric,
        }
        return factories[name.partition(":")[0]](*args)

    def _metric(self, group: str, name: str, args: tuple, device: torch.device) -> Metric:
        """The metric `name` ("kind" or "kind:prefix", the prefix naming its outputs) of `group`, made on first
        use."""
        key = (group, name)
        if key not in self._metrics:
            self._specs[key] = args
            self._metrics[key] = self._make(name, args).to(device)
        return self._metrics[key]

    @staticmethod
    def _group(task: str, meta: dict) -> str:
        benchmark = meta.get("benchmark")
        return f"{task}/{benchmark}" if benchmark else task

    # ------------------------------------------------------------ updates

    def update(self, batch: Batch, pred: Prediction) -> None:
        """Score one batch's last-layer prediction against its targets."""
        for b, result in enumerate(self.postprocess(batch, pred)):
            meta = batch.meta[b] if b < len(batch.meta) else {}
            group = self._group(batch.task, meta)
            if batch.task == "panoptic":
                self._update_panoptic(group, batch, b, result, meta)
            elif batch.task == "vgd":
                self._update_vgd(group, batch, b, result, meta)
            else:
                self._update_masks(group, batch, b, result, meta)

    def _update_masks(self, group: str, batch: Batch, b: int, result: dict, meta: dict) -> None:
        masks, labels, device = batch.masks[b], batch.labels[b], batch.images.device
        # One target per condition / prompt: the union of the masks that answer it (none: a no-target expression).
        count = len(result["masks"])
        targets = torch.stack([masks[labels == k].any(0) for k in range(count)]) if count else result["masks"]
        ignore = _ignore(batch, b)
        self._metric(group, "iou", (), device).update(result["masks"], targets, ignore)
        if batch.task == "interactive":
            for kind in sorted(set(result["labels"])):
                picked = [k for k, t in enumerate(result["labels"]) if t == kind]
                metric = self._metric(group, f"iou:{kind}", (), device)
                metric.update(result["masks"][picked], targets[picked], ignore)

    def _update_panoptic(self, group: str, batch: Batch, b: int, result: dict, meta: dict) -> None:
        masks, labels, device = batch.masks[b].bool(), batch.labels[b], batch.images.device
        ignore = _ignore(batch, b)
        ignore = ignore if ignore is not None else torch.zeros_like(result["semantic"], dtype=torch.bool)
        crowd_flags = meta.get("iscrowd")
        crowd_flags = torch.zeros(len(masks), dtype=torch.bool) if crowd_flags is None else crowd_flags.bool()
        crowd_flags = crowd_flags.to(device)
        semantic = torch.full_like(result["semantic"], VOID)
        for mask, label in zip(masks, labels.tolist(), strict=True):
            semantic[mask] = label
        semantic[ignore] = VOID
        semantic_metric = self._metric(group, "semantic", (result["num_classes"],), device)
        semantic_metric.update(result["semantic"][None], semantic[None])
        if "segment_map" not in result:
            return
        is_thing = self._panoptic_table(result["num_classes"], meta.get("benchmark"))
        target_pairs = target_pairs_from_masks(masks, labels, is_thing)
        target_pairs[ignore] = torch.tensor([VOID, 0], device=device)
        crowd = masks[crowd_flags].any(0) if crowd_flags.any() else torch.zeros_like(ignore)
        pred_pairs = to_panoptic_pairs(result["segment_map"], result["segments"])
        pq = self._metric(group, "pq", (tuple(is_thing),), device)
        pq.update(pred_pairs[None], target_pairs[None], crowd[None])
        if "instances" in result:
            things = torch.tensor(is_thing, dtype=torch.bool, device=device)[labels]
            pred_masks, scores, categories = result["instances"]
            ap = self._metric(group, "ap", (), device)
            ap.update(
                (meta.get("image_id", ""),),
                pred_masks & ~ignore,  # COCOeval has no ignore pixels: cut them away, as papers crop the padding
                scores,
                categories,
                masks[things],
                labels[things],
                crowd_flags[things],
            )

    def _update_vgd(self, group: str, batch: Batch, b: int, result: dict, meta: dict) -> None:
        """Each (sample, prompt) is one COCO image whose ground truth is every mask answering the prompt."""
        masks, labels, device = batch.masks[b].bool(), batch.labels[b], batch.images.device
        categories = meta.get("category_ids")
        ignore = _ignore(batch, b)
        for k, (kind, (pred_masks, scores)) in enumerate(zip(result["labels"], result["detections"], strict=True)):
            pred_masks = pred_masks if ignore is None else pred_masks & ~ignore  # as for instance AP
            answers = labels == k
            category = (
                int(torch.as_tensor(categories)[answers.cpu()][0]) if categories is not None and answers.any() else 0
            )
            targets = masks[answers]
            key = (meta.get("image_id", ""), kind, k)
            for name in ("ap", f"ap:{kind}"):
                self._metric(group, name, (), device).update(
                    key,
                    pred_masks,
                    scores,
                    torch.full((len(scores),), category),
                    targets,
                    torch.full((len(targets),), category),
                )

    @torch.no_grad()
    def update_clicks(self, batch: Batch, model: Callable[[Batch], Prediction]) -> None:
        """NoC on an interactive batch: simulated clicks, re-running `model` each round (no-op if `num_clicks`
        is 0)."""
        if self.num_clicks <= 0 or batch.task != "interactive":
            return
        sessions = run_clicks(batch, model, self.num_clicks, self.click_radius, stop_iou=max(self.noc_thresholds))
        groups: dict[str, list[list[float]]] = {}
        for b, ious in sessions:
            meta = batch.meta[b] if b < len(batch.meta) else {}
            groups.setdefault(self._group(batch.task, meta), []).append(ious)
        args = (self.noc_thresholds, self.num_clicks)
        for group, group_sessions in groups.items():
            self._metric(group, "clicks", args, batch.images.device).update(group_sessions)

    # ------------------------------------------------------------ results

    def _agree_on_metrics(self) -> None:
        """Build, on every rank, the metrics any rank created, so all ranks compute (and sync) the same set."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        gathered: list[dict] = [{} for _ in range(dist.get_world_size())]
        dist.all_gather_object(gathered, self._specs)
        device = next(iter(self._metrics.values())).device if self._metrics else torch.device("cpu")
        for specs in gathered:
            for (group, name), args in specs.items():
                self._metric(group, name, args, device)

    def compute(self) -> dict[str, float]:
        """Metrics of every group seen since the last call, keyed 'task[/benchmark]/metric'; resets them."""
        self._agree_on_metrics()
        out: dict[str, float] = {}
        for group, name in sorted(self._metrics):
            kind, _, prefix = name.partition(":")
            values = self._metrics[(group, name)].compute()
            if kind == "iou" and group.split("/")[0] == "interactive":  # interactive papers call gIoU "mIoU"
                values = {"miou": values["giou"], "ciou": values["ciou"]}
            out.update({f"{group}/{prefix + '_' if prefix else ''}{k}": v for k, v in values.items()})
        self._metrics.clear()
        self._specs.clear()
        self._overlays_written.clear()
        return out

    def save_overlays(self, batch: Batch, pred: Prediction, trainer: Trainer, batch_idx: int) -> None:
        """The first sample of the first `num_overlays` batches of each task: image beside predicted masks."""
        written = self._overlays_written.get(batch.task, 0)
        if written >= self.num_overlays:
            return
        self._overlays_written[batch.task] = written + 1
        result = self.postprocess(batch, pred)[0]
        image = batch.images[0].float().cpu()
        masks = result["masks"].cpu() if result["masks"] is not None else torch.zeros(0, *image.shape[-2:], dtype=bool)
        folder = Path(_local_log_dir(trainer)) / "overlays"
        name = f"epoch{trainer.current_epoch:03d}_{batch.task}_{written}.png"
        title = f"{batch.task}: {batch.instructions[0]}"
        save_overlay(folder / name, image, masks, result["labels"], title=title)


def _ignore(batch: Batch, b: int) -> Tensor | None:
    """Sample `b`'s pixels not scored (bool [H, W]), or None."""
    ignore = batch.ignore[b] if batch.ignore is not None else None
    return ignore.to(batch.images.device).bool() if ignore is not None else None


def _local_log_dir(trainer: Trainer) -> str:
    """`trainer.log_dir` without its broadcast: overlays are written by rank 0 alone, and a collective called on
    one rank deadlocks DDP."""
    logger = trainer.loggers[0] if trainer.loggers else None
    if logger is None:
        return trainer.default_root_dir
    return getattr(logger, "log_dir", None) or logger.save_dir or trainer.default_root_dir
