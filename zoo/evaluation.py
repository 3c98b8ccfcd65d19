"""Per-task post-processing and metrics, as the papers compute them, for whatever tasks a batch carries."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from lightning import Trainer
from torch import Tensor, nn

from zoo.callbacks.overlays import save_overlay
from zoo.metrics import MaskIoU, PanopticMetric, panoptic_fusion, referring_top1, target_pairs_from_masks
from zoo.metrics.postprocess import to_panoptic_pairs
from zoo.types import Batch, Prediction


class Evaluator(nn.Module):
    """Referring cIoU/gIoU (top-1 query), interactive mIoU/cIoU per prompt, panoptic PQ (Mask2Former fusion).

    Thresholds follow PSALM's inference: a panoptic query is kept when its class probability exceeds
    `object_threshold` and it keeps `overlap_threshold` of its mask. `num_overlays` PNGs per task and epoch are
    written to `<log_dir>/overlays` so a person can look at what the model does.
    """

    def __init__(self, object_threshold: float = 0.8, overlap_threshold: float = 0.8, num_overlays: int = 2):
        super().__init__()
        self.object_threshold = object_threshold
        self.overlap_threshold = overlap_threshold
        self.num_overlays = num_overlays
        self.referring = MaskIoU()
        self.interactive = MaskIoU()
        self.panoptic: PanopticMetric | None = None
        self.category_names: list[str] = []
        self.is_thing: list[bool] = []
        self._overlays_written: dict[str, int] = {}

    def bind(self, categories: list[dict] | None) -> None:
        """Learn the category table (names, thing/stuff) the panoptic metric needs; None disables PQ."""
        if not categories:
            return
        self.category_names = [c["name"] for c in categories]
        self.is_thing = [bool(c["isthing"]) for c in categories]
        device = self.referring.inter_sum.device
        self.panoptic = PanopticMetric(self.is_thing).to(device)

    @staticmethod
    def _full_res(batch: Batch, pred: Prediction) -> Tensor:
        return F.interpolate(pred.masks.float(), size=batch.images.shape[-2:], mode="bilinear", align_corners=False)

    def postprocess(self, batch: Batch, pred: Prediction) -> list[dict]:
        """One dict per sample: predicted bool masks [N, H, W] and their labels, as the task reads them."""
        masks, logits = self._full_res(batch, pred), pred.logits.float()
        results = []
        for b in range(len(batch)):
            if batch.task == "panoptic":
                segment_map, segments = panoptic_fusion(
                    logits[b], masks[b], self.is_thing, self.object_threshold, self.overlap_threshold
                )
                out_masks = torch.stack([segment_map == s["id"] for s in segments]) if segments else None
                labels = [self.category_names[s["category"]] for s in segments]
                results.append({"masks": out_masks, "labels": labels, "segment_map": segment_map, "segments": segments})
            else:
                count = logits.shape[-1]
                out_masks = torch.stack([referring_top1(logits[b, :, k], masks[b]) for k in range(count)])
                labels = batch.conditions[b] if batch.task == "referring" else batch.prompt_types[b]
                results.append({"masks": out_masks[: len(labels)], "labels": list(labels)})
        return results

    def update(self, batch: Batch, pred: Prediction) -> None:
        for b, result in enumerate(self.postprocess(batch, pred)):
            masks, labels = batch.masks[b], batch.labels[b]
            if batch.task == "panoptic":
                if self.panoptic is None:
                    continue
                pred_pairs = to_panoptic_pairs(result["segment_map"], result["segments"])
                target_pairs = target_pairs_from_masks(masks, labels, self.is_thing)
                self.panoptic.update(pred_pairs[None], target_pairs[None])
                continue
            # One target per condition / prompt: the union of the masks that answer it.
            targets = torch.stack([masks[labels == k].any(0) for k in range(len(result["masks"]))])
            metric = self.referring if batch.task == "referring" else self.interactive
            metric.update(result["masks"], targets)

    def compute(self) -> dict[str, float]:
        """Metrics of every task seen since the last call, keyed 'task/metric'; resets them."""
        out: dict[str, float] = {}
        if int(self.referring.count) > 0:
            out.update({f"referring/{k}": v for k, v in self.referring.compute().items()})
        if int(self.interactive.count) > 0:
            stats = self.interactive.compute()
            out.update({"interactive/miou": stats["giou"], "interactive/ciou": stats["ciou"]})
        if self.panoptic is not None and self.panoptic.update_count > 0:
            out.update({f"panoptic/{k}": v for k, v in self.panoptic.compute().items()})
            self.panoptic.reset()
        self.referring.reset()
        self.interactive.reset()
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
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "overlays"
        name = f"epoch{trainer.current_epoch:03d}_{batch.task}_{written}.png"
        title = f"{batch.task}: {batch.instructions[0]}"
        save_overlay(folder / name, image, masks, result["labels"], title=title)
