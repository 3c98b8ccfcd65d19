"""SAM-style padding is not part of the image: `ResizeLongestPad` marks it in `Sample.ignore`, and every metric
scores a padded sample as the papers score the unpadded one (they crop the padding away before scoring), even when
the model paints the padding. Each test evaluates the same predictions on a 24x32 sample padded to 32x32 and on the
sample itself, cropped, and checks the numbers agree (and, where it matters, that counting the padding would not).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoo.callbacks import flat_results
from zoo.data import Sample, collate
from zoo.data.transforms import ResizeLongestPad, crop
from zoo.evaluation import Evaluator
from zoo.metrics.click_loop import run_clicks
from zoo.types import Batch, Prediction

H, W = 24, 32  # the image; ResizeLongestPad(32) keeps its scale and pads rows 24..31
CATEGORIES = [{"name": "cat", "isthing": 1}, {"name": "dog", "isthing": 1}, {"name": "sky", "isthing": 0}]


def rect(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def pad(masks: torch.Tensor, paint: torch.Tensor | None = None) -> torch.Tensor:
    """[..., H, W] masks padded to [..., W, W]; `paint` [..., W - H, W] fills the padded rows."""
    padded = F.pad(masks, (0, 0, 0, W - H))
    if paint is not None:
        padded[..., H:, :] = paint
    return padded


def logit_masks(masks: torch.Tensor) -> torch.Tensor:
    return torch.where(masks, 6.0, -6.0)


def padded_and_cropped(samples: list[Sample]) -> tuple[Batch, Batch]:
    rng = np.random.default_rng(0)
    return collate([ResizeLongestPad(size=W)(s, rng) for s in samples]), collate(samples)


def evaluate(batch: Batch, pred: Prediction, categories: list[dict] | None = None) -> dict[str, float]:
    evaluator = Evaluator()
    evaluator.bind(categories)
    evaluator.update(batch, pred)
    return flat_results(evaluator.compute())


def test_padding_is_always_marked_ignored() -> None:
    sample = Sample(image=torch.rand(3, H, W), task="referring", instruction="x", conditions=["a"])
    padded = ResizeLongestPad(size=W)(sample, np.random.default_rng(0))
    assert padded.image.shape == (3, W, W) and padded.meta["valid_size"] == (H, W)
    assert padded.ignore[H:].all() and not padded.ignore[:H].any()
    # A crop that runs past the image pads too; an existing ignore mask keeps its pixels.
    own = dataclasses.replace(sample, ignore=rect(0, 2, 0, 2))
    window = crop(own, 0, 0, W, W + 4)
    assert window.ignore[:2, :2].all() and window.ignore[H:].all() and window.ignore[:, W:].all()
    assert int(window.ignore.sum()) == W * (W + 4) - H * W + 4


def prompted_samples(task: str) -> list[Sample]:
    """Two one-target samples; the second target touches the image's bottom edge, next to the padding."""
    targets = [rect(4, 12, 4, 20), rect(14, 24, 10, 30)]
    samples = []
    for k, target in enumerate(targets):
        fields: dict = {"conditions": [f"object {k}"]}
        if task == "interactive":
            rows, cols = target.nonzero().T
            y, x = int(rows.float().mean()), int(cols.float().mean())
            fields = {"prompts": rect(y, y + 2, x, x + 2)[None], "prompt_types": [("box", "point")[k]]}
        samples.append(
            Sample(
                image=torch.rand(3, H, W),
                task=task,
                instruction="x",
                masks=target[None],
                labels=torch.tensor([0]),
                meta={"benchmark": "val"},
                **fields,
            )
        )
    return samples


@pytest.mark.parametrize("task", ["referring", "interactive"])
def test_referring_and_interactive_iou_leave_padding_out(task: str) -> None:
    """Query 0 answers sample 0 and query 1 sample 1; both also paint every padded pixel."""
    padded, cropped = padded_and_cropped(prompted_samples(task))
    queries = torch.stack([rect(6, 14, 4, 20), rect(12, 24, 12, 32)])
    logits = torch.tensor([[[4.0], [-4.0]], [[-4.0], [4.0]]])
    on_padded = Prediction(logits, logit_masks(pad(queries, paint=torch.ones(W - H, W, dtype=torch.bool)))[None])
    out = evaluate(padded, dataclasses.replace(on_padded, masks=on_padded.masks.expand(2, -1, -1, -1)))
    assert out == evaluate(cropped, Prediction(logits, logit_masks(queries)[None].expand(2, -1, -1, -1)))
    # LISA at the original size: sample 0 I = 96, U = 160; sample 1 I = 180, U = 260.
    ciou, giou = (96 + 180) / (160 + 260), (96 / 160 + 180 / 260) / 2
    names = ("ciou", "giou") if task == "referring" else ("ciou", "miou")
    assert out[f"{task}/val/{names[0]}"] == pytest.approx(ciou) and out[f"{task}/val/{names[1]}"] == pytest.approx(giou)
    padded.ignore = None  # as before padding was marked: every padded pixel joins the union
    counted = evaluate(padded, dataclasses.replace(on_padded, masks=on_padded.masks.expand(2, -1, -1, -1)))
    assert counted[f"{task}/val/ciou"] == pytest.approx((96 + 180) / (160 + 260 + 2 * (W - H) * W))


def test_panoptic_pq_semantic_and_instance_ap_leave_padding_out() -> None:
    """cat, dog and sky; the cat and sky queries paint the padding (left and right halves), the dog one is
    shifted (IoU 2/3). PQ and mIoU treat the padding as void either way; instance AP needs it cut from the cat."""
    cat, dog, sky = rect(2, 10, 2, 10), rect(12, 20, 14, 24), rect(0, 24, 26, 32)
    sample = Sample(
        image=torch.rand(3, H, W),
        task="panoptic",
        instruction="x",
        conditions=[c["name"] for c in CATEGORIES],
        masks=torch.stack([cat, dog, sky]),
        labels=torch.tensor([0, 1, 2]),
        meta={"benchmark": "val", "image_id": 1},
    )
    padded, cropped = padded_and_cropped([sample])
    queries = torch.stack([cat, rect(12, 20, 16, 26) & ~sky, sky, torch.zeros(H, W, dtype=torch.bool)])
    left = torch.zeros(W - H, W, dtype=torch.bool)
    left[:, : W // 2] = True
    paint = torch.stack([left, torch.zeros_like(left), ~left, torch.zeros_like(left)])
    logits = torch.full((1, 4, 4), -4.0)
    for q, (c, s) in enumerate([(0, 6.0), (1, 5.0), (2, 5.5), (3, 4.0)]):
        logits[0, q, c] = s
    on_padded = Prediction(logits, logit_masks(pad(queries, paint))[None])
    out = evaluate(padded, on_padded, CATEGORIES)
    expected = evaluate(cropped, Prediction(logits, logit_masks(queries)[None]), CATEGORIES)
    assert out == pytest.approx(expected, nan_ok=True)
    assert out["panoptic/val/pq"] < 1.0 and out["panoptic/val/ap"] > 0.5
    padded.ignore = None
    counted = evaluate(padded, on_padded, CATEGORIES)
    assert counted["panoptic/val/pq"] == out["panoptic/val/pq"]  # void already: no target covers the padding
    assert counted["panoptic/val/ap"] < out["panoptic/val/ap"]  # the cat with its padding misses its target


def click_model(batch: Batch) -> Prediction:
    """Each prompt's positive clicks grown by 4 px, minus its negative clicks, plus every row below the image."""
    count = max(len(p) for p in batch.prompts)
    masks = torch.zeros(len(batch), count, *batch.images.shape[-2:], dtype=torch.bool)
    for b, (positive, negative) in enumerate(zip(batch.prompts, batch.negative_prompts, strict=True)):
        grown = F.max_pool2d(positive.float()[None], 9, stride=1, padding=4)[0] > 0
        masks[b, : len(positive)] = grown & ~negative
    masks[:, :, H:] = True
    logits = torch.full((len(batch), count, count), -5.0)
    logits[:, range(count), range(count)] = 5.0
    return Prediction(logits, logit_masks(masks))


def test_click_simulation_leaves_padding_out() -> None:
    """NoC's clicks and IoUs on the padded sample are those on the image: no click lands in the padding."""
    padded, cropped = padded_and_cropped(prompted_samples("interactive"))
    on_image = run_clicks(cropped, click_model, max_clicks=4)
    assert run_clicks(padded, click_model, max_clicks=4) == on_image
    padded.ignore = None
    assert run_clicks(padded, click_model, max_clicks=4) != on_image
