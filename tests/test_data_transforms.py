"""Transforms keep image, masks, prompts, boxes and points together; prompts generated from masks; determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from zoo.data import Sample
from zoo.data.prompts import PROMPT_KINDS, all_prompts, make_prompt
from zoo.data.transforms import (
    Compose,
    LargeScaleJitter,
    RandomFlip,
    ResizeLongestPad,
    ResizeShortestCrop,
    mentions_sides,
)

H, W = 40, 60


def painted(task: str = "referring", condition: str = "the red square") -> Sample:
    """A sample whose image paints its own annotations: channel 0 = target 0, channel 1 = prompt 0, so any
    geometric mismatch between image and annotations shows up as a disagreement between them."""
    masks = torch.zeros(2, H, W, dtype=torch.bool)
    masks[0, 8:24, 10:30] = True
    masks[1, 26:36, 40:56] = True
    prompts = torch.zeros(1, H, W, dtype=torch.bool)
    prompts[0, 14:18, 18:22] = True
    image = torch.zeros(3, H, W)
    image[0] = masks[0].float()
    image[1] = prompts[0].float()
    return Sample(
        image=image,
        task=task,
        instruction="x",
        conditions=[condition],
        masks=masks,
        labels=torch.tensor([0, 1]),
        prompts=prompts,
        prompt_types=["point"],
        boxes=torch.tensor([[10.0, 8, 30, 24], [40, 26, 56, 36]]),
        points=torch.tensor([[20.0, 16.0]]),
        ignore=torch.zeros(H, W, dtype=torch.bool),
        meta={"category_ids": torch.tensor([3, 5]), "isthing": torch.tensor([True, True])},
    )


def assert_consistent(sample: Sample) -> None:
    valid = ~sample.ignore if sample.ignore is not None else torch.ones_like(sample.masks[0])
    painted_target = sample.image[0] > 0.5
    assert (painted_target == sample.masks[0])[valid].float().mean() > 0.98
    assert ((sample.image[1] > 0.5) == sample.prompts[0])[valid].float().mean() > 0.98
    for mask, box in zip(sample.masks, sample.boxes, strict=True):
        rows, cols = mask.nonzero().T
        extent = torch.tensor([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=torch.float32)
        assert torch.allclose(extent, box, atol=1.5), (extent, box)
    x, y = sample.points[0].floor().long().tolist()
    assert sample.prompts[0, y, x], "the click stays on its prompt"


def test_resize_longest_and_pad_is_sam_input() -> None:
    out = ResizeLongestPad(size=90)(painted(), np.random.default_rng(0))
    assert out.image.shape == (3, 90, 90) and out.masks.shape == (2, 90, 90) and out.meta["valid_size"] == (60, 90)
    assert torch.equal(out.boxes, painted().boxes * 1.5) and torch.equal(out.points, painted().points * 1.5)
    assert not out.masks[:, 60:].any() and out.ignore[60:].all() and not out.ignore[:60].any()
    assert_consistent(out)


@pytest.mark.parametrize("seed", range(4))
def test_shortest_edge_crop_and_lsj_keep_everything_together(seed: int) -> None:
    rng = np.random.default_rng(seed)
    crop = ResizeShortestCrop(size=48, crop=40)(painted(), rng)
    assert crop.image.shape == (3, 40, 40) and crop.masks[0].any() and crop.prompts[0].any()
    assert_consistent(crop)
    jitter = LargeScaleJitter(size=64, min_scale=0.5, max_scale=2.0)(painted(), rng)
    assert jitter.image.shape == (3, 64, 64)
    assert_consistent(jitter)


def test_crop_drops_vanished_panoptic_targets_with_their_metadata() -> None:
    sample = painted(task="panoptic", condition="cat")
    out = ResizeShortestCrop(size=40, crop=20, random=False)(sample, np.random.default_rng(0))
    assert out.labels.tolist() == [0] and out.meta["category_ids"].tolist() == [3] and len(out.boxes) == 1
    with pytest.raises(ValueError, match="keeps all its targets"):  # a referring target may not be cropped away
        ResizeShortestCrop(size=40, crop=20)(painted(), np.random.default_rng(0))


def test_flip_moves_everything_but_never_flips_left_or_right() -> None:
    flip = RandomFlip(prob=1.0)
    out = flip(painted(), np.random.default_rng(0))
    assert out.meta["flipped"] and torch.equal(out.masks, painted().masks.flip(-1))
    assert out.boxes[0].tolist() == [30, 8, 50, 24] and out.points[0].tolist() == [40, 16]
    assert_consistent(out)
    for text in ("the cat on the left", "Right dog", "leftmost cup"):
        kept = flip(painted(condition=text), np.random.default_rng(0))
        assert "flipped" not in kept.meta and torch.equal(kept.image, painted().image)
    assert not mentions_sides(painted(condition="the bright light"))
    assert "flipped" not in RandomFlip(prob=0.0)(painted(), np.random.default_rng(0)).meta


def test_transforms_are_deterministic_by_generator() -> None:
    chain = Compose([RandomFlip(), LargeScaleJitter(size=48, min_scale=0.3, max_scale=1.5)])
    a = chain(painted(task="panoptic"), np.random.default_rng(5))
    b = chain(painted(task="panoptic"), np.random.default_rng(5))
    assert torch.equal(a.image, b.image) and torch.equal(a.masks, b.masks)


# --- prompts from masks -------------------------------------------------------------------------------------


def two_blobs() -> np.ndarray:
    mask = np.zeros((64, 64), dtype=bool)
    mask[5:25, 5:30] = True
    mask[40:60, 35:60] = True
    mask[0:2, 62:64] = True  # a 4-pixel speck: too small to get its own prompt
    return mask


def test_prompts_follow_psalm_generation() -> None:
    mask = two_blobs()
    rng = np.random.default_rng(0)
    point, click = make_prompt(mask, "point", rng)
    assert ndimage.label(point)[1] == 2 and point[mask].sum() >= 2, "one click per component larger than 5 px"
    assert mask[int(click[1]), int(click[0])]
    box = make_prompt(mask, "box", rng)[0]
    assert box[10:20, 10:25].all() and box[45:55, 40:55].all() and not box[30:38].any()
    rows, cols = np.nonzero(box[:32])
    assert abs(rows.max() + 1 - rows.min() - 20) <= 2.5 and abs(cols.max() + 1 - cols.min() - 25) <= 3
    scribble = make_prompt(mask, "scribble", rng)[0]
    assert scribble.any() and scribble.sum() < 0.2 * mask.sum()
    blurred = make_prompt(mask, "mask", rng)[0]
    assert (blurred & mask).sum() / (blurred | mask).sum() > 0.8
    with pytest.raises(ValueError, match="Unknown prompt type 'lasso'"):
        make_prompt(mask, "lasso", rng)
    with pytest.raises(ValueError, match="empty mask"):
        make_prompt(np.zeros_like(mask), "point", rng)


def test_prompts_are_deterministic_by_seed() -> None:
    first = all_prompts(two_blobs(), np.random.default_rng(7))
    again = all_prompts(two_blobs(), np.random.default_rng(7))
    other = all_prompts(two_blobs(), np.random.default_rng(8))
    assert set(first) == {f"{k}_visual_prompt_mask" for k in PROMPT_KINDS}
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not all(np.array_equal(first[k], other[k]) for k in first)
