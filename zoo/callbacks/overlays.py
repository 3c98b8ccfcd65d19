"""Side-by-side PNGs of an image and its masks, for eyeballing what a model (or a dataset) produces."""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

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
