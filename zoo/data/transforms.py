"""Geometric transforms that move an image and everything drawn on it together: masks, prompts, boxes, points.

Each transform takes a `Sample` and a numpy Generator (the dataset seeds it per index, so augmentation is
reproducible) and returns a new `Sample`. Targets fully cut away by a crop are dropped for panoptic samples (the
object is no longer in the image); for other tasks a crop must keep every target and prompt, since their target
is the point of the sample: the crop is re-drawn, and if no crop keeps them the sample is a `ValueError`.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.data.schema import Sample

_SIDE_WORDS = re.compile(r"\b(left|right|leftmost|rightmost)\b", re.IGNORECASE)
_CROP_TRIES = 10


class Transform:
    """Base: `transform(sample, rng) -> sample`, composable and selectable in recipes by class_path."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        raise NotImplementedError


class Compose(Transform):
    """Apply transforms in order."""

    def __init__(self, transforms: list[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


def _resize_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    if masks.shape[0] == 0:
        return torch.zeros(0, *size, dtype=torch.bool)
    # uint8, not float: a 1024^2 panoptic sample has dozens of masks, and this is the loader's hottest line.
    return F.interpolate(masks[None].to(torch.uint8), size=size, mode="nearest-exact")[0].bool()


def resize(sample: Sample, height: int, width: int) -> Sample:
    """Scale image (bilinear, antialiased) and masks (nearest) to height x width; boxes and points follow."""
    h, w = sample.image.shape[1:]
    if (h, w) == (height, width):
        return sample
    sy, sx = height / h, width / w
    image = F.interpolate(
        sample.image[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False
    )
    scale = torch.tensor([sx, sy, sx, sy])
    return dataclasses.replace(
        sample,
        image=image[0].clamp(0, 1),
        masks=_resize_masks(sample.masks, (height, width)),
        prompts=_resize_masks(sample.prompts, (height, width)),
        ignore=None if sample.ignore is None else _resize_masks(sample.ignore[None], (height, width))[0],
        boxes=None if sample.boxes is None else sample.boxes * scale,
        points=None if sample.points is None else sample.points * scale[:2],
    )


def _crop_ok(sample: Sample, y0: int, x0: int, height: int, width: int) -> bool:
    if sample.task == "panoptic":
        return True
    window = (slice(None), slice(y0, y0 + height), slice(x0, x0 + width))
    return bool(sample.masks[window].flatten(1).any(1).all() and sample.prompts[window].flatten(1).any(1).all())


def crop(sample: Sample, y0: int, x0: int, height: int, width: int) -> Sample:
    """Cut a window (which may extend past the image: it is padded); empty panoptic targets are dropped."""
    h, w = sample.image.shape[1:]
    pad_bottom, pad_right = max(0, y0 + height - h), max(0, x0 + width - w)
    sample = pad(sample, h + pad_bottom, w + pad_right) if pad_bottom or pad_right else sample
    window = (slice(None), slice(y0, y0 + height), slice(x0, x0 + width))
    masks = sample.masks[window]
    keep = masks.flatten(1).any(1)
    offset = torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
    boxes = sample.boxes
    if boxes is not None:
        boxes = (boxes - offset).clamp(min=0)
        boxes = torch.minimum(boxes, torch.tensor([width, height, width, height], dtype=boxes.dtype))
    labels = sample.labels
    if sample.task == "panoptic" and not keep.all():
        masks, labels = masks[keep], labels[keep]
        boxes = None if boxes is None else boxes[keep]
        meta = dict(sample.meta)
        for key in ("category_ids", "isthing", "iscrowd"):
            if isinstance(meta.get(key), Tensor) and meta[key].shape == keep.shape:
                meta[key] = meta[key][keep]
        sample = dataclasses.replace(sample, meta=meta)
    return dataclasses.replace(
        sample,
        image=sample.image[window],
        masks=masks,
        labels=labels,
        boxes=boxes,
        prompts=sample.prompts[window],
        ignore=None if sample.ignore is None else sample.ignore[y0 : y0 + height, x0 : x0 + width],
        points=None if sample.points is None else sample.points - offset[:2],
    )


def pad(sample: Sample, height: int, width: int, value: float = 0.0) -> Sample:
    """Pad bottom and right to height x width (SAM style). The padding is always marked in `ignore` (created when
    the sample has none): it is not part of the image, so no metric may score it, as the papers crop it away before
    scoring. Target masks are zero there, as Mask2Former's padded targets, so losses train it as background."""
    h, w = sample.image.shape[1:]
    if height < h or width < w:
        raise ValueError(f"Cannot pad a {h}x{w} image to {height}x{width}")
    if (h, w) == (height, width):
        return dataclasses.replace(sample, meta={**sample.meta, "valid_size": sample.meta.get("valid_size", (h, w))})
    padding = (0, width - w, 0, height - h)
    ignore = sample.ignore if sample.ignore is not None else torch.zeros(h, w, dtype=torch.bool)
    ignore = F.pad(ignore, padding, value=True)
    meta = {**sample.meta, "valid_size": sample.meta.get("valid_size", (h, w))}
    return dataclasses.replace(
        sample,
        image=F.pad(sample.image, padding, value=value),
        masks=F.pad(sample.masks, padding),
        prompts=F.pad(sample.prompts, padding),
        ignore=ignore,
        meta=meta,
    )


def _random_crop(sample: Sample, height: int, width: int, rng: np.random.Generator) -> Sample:
    h, w = sample.image.shape[1:]
    for _ in range(_CROP_TRIES):
        y0, x0 = int(rng.integers(0, max(0, h - height) + 1)), int(rng.integers(0, max(0, w - width) + 1))
        if _crop_ok(sample, y0, x0, height, width):
            return crop(sample, y0, x0, height, width)
    raise ValueError(
        f"No {height}x{width} crop of a {h}x{w} '{sample.task}' sample keeps all its targets and prompts "
        f"({sample.meta.get('file_name', sample.meta.get('image_id', '?'))})"
    )


class ResizeLongestPad(Transform):
    """SAM's input: scale the longest side to `size`, then pad bottom/right to size x size."""

    def __init__(self, size: int = 1024, pad_value: float = 0.0) -> None:
        self.size = size
        self.pad_value = pad_value

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        h, w = sample.image.shape[1:]
        scale = self.size / max(h, w)
        sample = resize(sample, max(1, round(h * scale)), max(1, round(w * scale)))
        return pad(sample, self.size, self.size, self.pad_value)


class ResizeShortestCrop(Transform):
    """Swin/Mask2Former style: scale the shortest side to `size`, then crop `crop` x `crop` (random or centred)."""

    def __init__(self, size: int = 384, crop: int | None = None, random: bool = True) -> None:
        self.size = size
        self.crop = crop if crop is not None else size
        self.random = random

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        h, w = sample.image.shape[1:]
        scale = self.size / min(h, w)
        sample = resize(sample, max(self.crop, round(h * scale)), max(self.crop, round(w * scale)))
        if self.random:
            return _random_crop(sample, self.crop, self.crop, rng)
        h, w = sample.image.shape[1:]
        return crop(sample, (h - self.crop) // 2, (w - self.crop) // 2, self.crop, self.crop)


class LargeScaleJitter(Transform):
    """Large-scale jitter (X-SAM stage 1, from detectron2's LSJ): fit `size` times a scale drawn from
    [min_scale, max_scale], random-crop to at most size x size, and pad to size x size."""

    def __init__(self, size: int = 1024, min_scale: float = 0.1, max_scale: float = 2.0) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"LargeScaleJitter needs 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.size = size
        self.min_scale = min_scale
        self.max_scale = max_scale

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        h, w = sample.image.shape[1:]
        scale = rng.uniform(self.min_scale, self.max_scale) * min(self.size / h, self.size / w)
        sample = resize(sample, max(1, math.floor(h * scale)), max(1, math.floor(w * scale)))
        h, w = sample.image.shape[1:]
        sample = _random_crop(sample, min(h, self.size), min(w, self.size), rng)
        return pad(sample, self.size, self.size)


def mentions_sides(sample: Sample) -> bool:
    """Whether a text of the sample says left or right, which a horizontal flip would make false."""
    texts = [sample.instruction, sample.answer, *sample.conditions, *(t for turn in sample.follow_ups for t in turn)]
    return any(_SIDE_WORDS.search(text) for text in texts)


class RandomFlip(Transform):
    """Horizontal flip with probability `prob`, except where a text says left or right (referring expressions,
    captions): flipping those would teach the model the opposite of the words."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.prob or mentions_sides(sample):
            return sample
        w = sample.image.shape[2]
        boxes = sample.boxes
        if boxes is not None:
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
        points = sample.points
        if points is not None:
            points = torch.stack([w - points[:, 0], points[:, 1]], dim=1)
        return dataclasses.replace(
            sample,
            image=sample.image.flip(-1),
            masks=sample.masks.flip(-1),
            prompts=sample.prompts.flip(-1),
            ignore=None if sample.ignore is None else sample.ignore.flip(-1),
            boxes=boxes,
            points=points,
            meta={**sample.meta, "flipped": True},
        )
