"""Semantic mIoU, gRefCOCO N-acc / T-acc, grounded-caption mask metrics and the papers' post-processing, against
hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.metrics import (
    VOID,
    GroundedMaskMetric,
    MaskIoU,
    SemanticIoU,
    greedy_matched_iou,
    instance_topk,
    referring_union,
    semantic_inference,
)


def test_semantic_miou_ignore_and_absent_category() -> None:
    """Categories 0, 1, 2, 3; target has 0 and 1 (and two ignored pixels), prediction also paints 2 where the
    target is 1. Category 3 appears nowhere and category 2 only in the prediction: both left out of the mean
    (detectron2), but the wrong 2s lower category 1's IoU."""
    target = torch.tensor([[0, 0, 1, 1, VOID, VOID]])
    pred = torch.tensor([[0, 0, 1, 2, 3, 3]])
    metric = SemanticIoU(4)
    metric.update(pred, target)
    out = metric.compute()
    assert out["miou"] == pytest.approx((1.0 + 1 / 2) / 2)
    assert out["pacc"] == pytest.approx(3 / 4)
    assert math.isnan(SemanticIoU(2).compute()["miou"])


def test_no_target_accuracies() -> None:
    """gRefCOCO: 2 no-target samples (one predicted empty), 2 with targets (one predicted empty)."""
    obj = torch.zeros(4, 4, dtype=torch.bool)
    obj[:2, :2] = True
    empty = torch.zeros_like(obj)
    pred = torch.stack([empty, obj, obj, empty])
    target = torch.stack([empty, empty, obj, obj])
    metric = MaskIoU()
    metric.update(pred, target)
    out = metric.compute()
    assert out["n_acc"] == 0.5 and out["t_acc"] == 0.5
    assert out["giou"] == pytest.approx((1 + 0 + 1 + 0) / 4)  # ReLA: no target predicted empty scores 1
    assert out["ciou"] == pytest.approx(4 / (4 + 4 + 4))  # the false "no target" adds its target to U


def test_referring_union() -> None:
    masks = torch.full((3, 2, 2), -5.0)
    masks[0, 0, 0] = masks[1, 1, 1] = masks[2, 0, 1] = 5.0
    scores = torch.tensor([2.0, 1.0, -2.0])  # probabilities 0.88, 0.73, 0.12
    assert referring_union(scores, masks).tolist() == [[True, False], [False, True]]
    assert not referring_union(scores - 5, masks).any()  # nothing above 0.6: "no target"
    assert referring_union(scores - 5, masks, fallback_top1=True).tolist() == [[True, False], [False, False]]


def test_instance_topk_keeps_things_and_weighs_mask_quality() -> None:
    """Two queries, categories thing / stuff / no-object. The best pair (query 0, stuff) is dropped."""
    logits = torch.tensor([[1.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    masks = torch.full((2, 2, 2), -5.0)
    masks[0, 0] = 5.0
    masks[1] = 0.5
    out_masks, scores, labels = instance_topk(logits, masks, [True, False], k=3)
    probs = logits.softmax(-1)
    # top-3 pairs: (0, stuff), (1, thing), (0, thing); things only, scored by class prob x mean mask prob
    assert labels.tolist() == [0, 0]
    expected = [probs[1, 0] * torch.sigmoid(torch.tensor(0.5)), probs[0, 0] * torch.sigmoid(torch.tensor(5.0))]
    assert scores.tolist() == pytest.approx([float(e) for e in expected])
    assert out_masks[0].all() and out_masks[1].tolist() == [[True, True], [False, False]]


def test_semantic_inference_is_soft() -> None:
    """Pixel (0, 0): query 0 says category 0 with a weak mask, query 1 category 1 with a strong one."""
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    masks = torch.tensor([[[-1.0]], [[5.0]]])
    probs = logits.softmax(-1)[:, :2]
    expected = int((probs * masks.sigmoid().flatten()[:, None]).sum(0).argmax())
    assert semantic_inference(logits, masks).tolist() == [[expected]]


def test_greedy_matched_iou() -> None:
    """GLaMM pairs the highest IoU first: (pred 1, target 0) at 1.0, then (pred 0, target 1) at 1/2; the extra
    prediction stays unpaired and does not count."""
    t0, t1 = torch.zeros(4, 4, dtype=torch.bool), torch.zeros(4, 4, dtype=torch.bool)
    t0[0] = True
    t1[2:] = True
    p0 = torch.zeros_like(t0)
    p0[2] = True
    extra = torch.zeros_like(t0)
    extra[1, 0] = True
    assert greedy_matched_iou(torch.stack([p0, t0, extra]), torch.stack([t0, t1])) == pytest.approx((1 + 0.5) / 2)
    assert greedy_matched_iou(torch.zeros(0, 4, 4, dtype=torch.bool), torch.stack([t0])) == 0.0


def test_grounded_mask_metric() -> None:
    """Image 1: both phrases found exactly. Image 2: one phrase predicted on the wrong region."""
    a = torch.zeros(1, 8, 8, dtype=torch.bool)
    a[0, :4] = True
    b = torch.zeros(1, 8, 8, dtype=torch.bool)
    b[0, 4:, :4] = True
    metric = GroundedMaskMetric()
    metric.update(("img1",), torch.cat([a, b]), torch.cat([a, b]))
    metric.update(("img2",), b, a)
    out = metric.compute()
    assert out["miou"] == pytest.approx((1.0 + 0.0) / 2)
    # class-agnostic AP50, every score 1.0: 2 TPs then 1 FP over 3 ground truths -> precision 1 up to recall 2/3
    assert out["ap50"] == pytest.approx(67 / 101)
