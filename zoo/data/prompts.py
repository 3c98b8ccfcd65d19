"""Visual prompts generated from a target mask the way PSALM built COCO-Interactive (and X-SAM reused for VGD).

point: a random pixel of each connected component larger than 5 px, drawn as a disk; box: each component's box
scaled by a factor in [0.9, 1.1] per side; scribble: a sine-perturbed diagonal (amplitude 10-20 px, relative to
the box on small images) of a jittered box overlapping the true box by IoU >= 0.5; mask: the mask blurred with a
Gaussian (sigma 2) and thresholded at the mean of its non-zero values. All are deterministic given the Generator.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

PROMPT_KINDS = ("point", "box", "scribble", "mask")
_MIN_COMPONENT = 5


def _components(mask: np.ndarray) -> list[np.ndarray]:
    labels, count = ndimage.label(mask)
    parts = [labels == k for k in range(1, count + 1)]
    large = [p for p in parts if p.sum() > _MIN_COMPONENT]
    return large or [max(parts, key=lambda p: p.sum())]  # a target made only of tiny parts keeps its largest


def _disk(shape: tuple[int, int], y: float, x: float, radius: float) -> np.ndarray:
    ys, xs = np.ogrid[: shape[0], : shape[1]]
    return (ys + 0.5 - y) ** 2 + (xs + 0.5 - x) ** 2 <= radius**2


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def _jitter_box(box: tuple[int, int, int, int], shape: tuple[int, int], rng: np.random.Generator) -> tuple[int, ...]:
    x0, y0, x1, y1 = box
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    sw, sh = rng.uniform(0.9, 1.1, 2)
    nx0, nx1 = np.clip([cx - w * sw / 2, cx + w * sw / 2], 0, shape[1]).round().astype(int)
    ny0, ny1 = np.clip([cy - h * sh / 2, cy + h * sh / 2], 0, shape[0]).round().astype(int)
    return int(nx0), int(ny0), max(int(nx1), int(nx0) + 1), max(int(ny1), int(ny0) + 1)


def _box_iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def point_prompt(mask: np.ndarray, rng: np.random.Generator, radius: float | None = None) -> tuple[np.ndarray, tuple]:
    """One click per component (disk of `radius`, default ~1/64 of the side); returns the mask and the first
    click (x, y) in continuous pixel coordinates."""
    radius = radius if radius is not None else max(1.0, max(mask.shape) / 64)
    out = np.zeros_like(mask, dtype=bool)
    first = None
    for part in _components(mask):
        rows, cols = np.nonzero(part)
        k = int(rng.integers(len(rows)))
        y, x = rows[k] + 0.5, cols[k] + 0.5
        out |= _disk(mask.shape, y, x, radius)
        first = first or (float(x), float(y))
    return out, first


def box_prompt(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros_like(mask, dtype=bool)
    for part in _components(mask):
        x0, y0, x1, y1 = _jitter_box(_bbox(part), mask.shape, rng)
        out[y0:y1, x0:x1] = True
    return out


def scribble_prompt(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros_like(mask, dtype=bool)
    for part in _components(mask):
        box = _bbox(part)
        for _ in range(10):
            jittered = _jitter_box(box, mask.shape, rng)
            if _box_iou(jittered, box) >= 0.5:
                break
        else:
            jittered = box
        x0, y0, x1, y1 = jittered
        length = int(np.hypot(x1 - x0, y1 - y0)) + 1
        t = np.linspace(0, 1, 4 * length)
        amplitude = min(rng.uniform(10, 20), 0.15 * min(x1 - x0, y1 - y0) + 1)
        phase, cycles = rng.uniform(0, 2 * np.pi), rng.uniform(1, 3)
        wave = amplitude * np.sin(2 * np.pi * cycles * t + phase) / np.sqrt(2)
        xs = np.clip(x0 + t * (x1 - x0) + wave, 0, mask.shape[1] - 1).astype(int)
        ys = np.clip(y0 + t * (y1 - y0) - wave, 0, mask.shape[0] - 1).astype(int)
        out[ys, xs] = True
    return out


def blurred_mask_prompt(mask: np.ndarray) -> np.ndarray:
    blurred = ndimage.gaussian_filter(mask.astype(np.float32), sigma=2)
    out = blurred > blurred[blurred > 0].mean()
    return out if out.any() else mask.copy()


def make_prompt(mask: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, tuple | None]:
    """The prompt mask of `kind` for `mask`, and the click (x, y) when the prompt is a point."""
    if not mask.any():
        raise ValueError("Cannot draw a prompt from an empty mask")
    if kind == "point":
        return point_prompt(mask, rng)
    if kind == "box":
        return box_prompt(mask, rng), None
    if kind == "scribble":
        return scribble_prompt(mask, rng), None
    if kind == "mask":
        return blurred_mask_prompt(mask), None
    raise ValueError(f"Unknown prompt type '{kind}'. Candidates: {', '.join(PROMPT_KINDS)}.")


def all_prompts(mask: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """All four prompt masks, keyed `{kind}_visual_prompt_mask` as in COCO-Interactive annotations."""
    return {f"{kind}_visual_prompt_mask": make_prompt(mask, kind, rng)[0] for kind in PROMPT_KINDS}
