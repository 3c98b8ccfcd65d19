"""Side-by-side PNGs of an image and its masks, for eyeballing what a model (or a dataset) produces, and the
callback that writes them for the first batches of each task at every validation and test."""

from __future__ import annotations

import colorsys
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from zoo.types import Batch

MIN_SIDE = 256  # tiny test images are scaled up to this so a person can see them
ALPHA = 0.5
PAD = 4


def mask_color(index: int) -> tuple[int, int, int]:
    """A saturated colour per mask index; golden-ratio hue steps keep neighbours distinct, runs identical."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.85, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


def _outline(mask: Tensor, width: int) -> Tensor:
    """Pixels of `mask` within `width` of its border (the dilated complement, intersected with the mask)."""
    outside = (~mask).float()[None, None]
    near_outside = F.max_pool2d(outside, 2 * width + 1, stride=1, padding=width)[0, 0] > 0
    return mask & near_outside


def save_overlay(path: str | Path, image: Tensor, masks: Tensor, labels: list[str], title: str = "") -> None:
    """Write a PNG: the image on the left, the image with coloured, outlined masks on the right, labels below.

    Args:
        path: output file; parent folders are created.
        image: float [3, H, W] in [0, 1].
        masks: bool [N, H, W], at the image's resolution.
        labels: one text per mask, written in the mask's colour.
        title: optional first line of the text strip.
    """
    if masks.shape[0] != len(labels):
        raise ValueError(f"{masks.shape[0]} masks but {len(labels)} labels")
    if masks.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"masks {tuple(masks.shape[-2:])} and image {tuple(image.shape[-2:])} differ in size")
    image, masks = image.detach().float().cpu(), masks.detach().bool().cpu()
    height, width = image.shape[-2:]
    scale = max(1, math.ceil(MIN_SIDE / min(height, width)))
    if scale > 1:
        image = F.interpolate(image[None], scale_factor=scale, mode="nearest")[0]
        masks = masks.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    plain = (image.clamp(0, 1) * 255).round().permute(1, 2, 0)
    blended = plain.clone()
    for n, mask in enumerate(masks):
        color = torch.tensor(mask_color(n), dtype=blended.dtype)
        blended[mask] = (1 - ALPHA) * blended[mask] + ALPHA * color
        blended[_outline(mask, width=max(1, scale // 2))] = color

    font = ImageFont.load_default()
    lines = ([(title, (255, 255, 255))] if title else []) + [(label, mask_color(n)) for n, label in enumerate(labels)]
    line_height = font.getbbox("Ag")[3] + PAD
    strip = PAD + line_height * len(lines) if lines else 0
    out_h, out_w = plain.shape[0], plain.shape[1]
    canvas = Image.new("RGB", (2 * out_w + PAD, out_h + strip), (0, 0, 0))
    canvas.paste(Image.fromarray(plain.to(torch.uint8).numpy()), (0, 0))
    canvas.paste(Image.fromarray(blended.round().to(torch.uint8).numpy()), (out_w + PAD, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (text, color) in enumerate(lines):
        draw.text((PAD, out_h + PAD + i * line_height), text, fill=color, font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


class Overlays(L.Callback):
    """The first sample of the first `num_overlays` batches of each task, per validation or test epoch: the image
    beside its predicted masks, in `<log_dir>/overlays/epoch<NNN>_<task>_<n>.png`.

    Reads what the evaluation step returns: the per-sample results of `Evaluator.update` (masks and labels), so
    nothing is post-processed twice. Rank 0 alone writes, and not during the sanity check.
    """

    def __init__(self, num_overlays: int = 2) -> None:
        self.num_overlays = num_overlays
        self.written: dict[str, int] = {}

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.written.clear()

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._save(trainer, outputs, batch)

    on_test_batch_end = on_validation_batch_end

    def _save(self, trainer: L.Trainer, results: list[dict] | None, batch: Batch) -> None:
        if not results or "masks" not in results[0] or not trainer.is_global_zero or trainer.sanity_checking:
            return
        written = self.written.get(batch.task, 0)
        if written >= self.num_overlays:
            return
        self.written[batch.task] = written + 1
        image = batch.images[0].float().cpu()
        masks = results[0]["masks"]
        masks = masks.cpu() if masks is not None else torch.zeros(0, *image.shape[-2:], dtype=torch.bool)
        name = f"epoch{trainer.current_epoch:03d}_{batch.task}_{written}.png"
        title = f"{batch.task}: {batch.instructions[0]}"
        save_overlay(Path(_local_log_dir(trainer)) / "overlays" / name, image, masks, results[0]["labels"], title=title)


def _local_log_dir(trainer: L.Trainer) -> str:
    """`trainer.log_dir` without its broadcast: overlays are written by rank 0 alone, and a collective called on
    one rank deadlocks DDP."""
    logger = trainer.loggers[0] if trainer.loggers else None
    if logger is None:
        return trainer.default_root_dir
    return getattr(logger, "log_dir", None) or logger.save_dir or trainer.default_root_dir
