"""Click simulator and NoC against hand-placed clicks."""

from __future__ import annotations

import pytest
import torch

from zoo.metrics.clicks import Click, click_masks, next_click, number_of_clicks, simulate, simulate_batch
from zoo.metrics.interactive import ClickMetric


def box(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_first_click_is_interior_most_pixel_of_missed_object() -> None:
    target = box(20, 20, 5, 15, 5, 15)
    # distance 5 to the background at the four central pixels; row-major order picks (9, 9)
    assert next_click(torch.zeros_like(target), target) == Click(9, 9, True)


def test_image_border_counts_as_boundary() -> None:
    # A strip along the left border. Without the border as boundary, column 0 would be farthest from the
    # background (3 px); with it, the middle column is (2 px from the border, the top and the background).
    target = box(10, 10, 0, 10, 0, 3)
    assert next_click(torch.zeros_like(target), target) == Click(1, 1, True)


def test_largest_region_wins_and_false_positive_is_negative() -> None:
    target = box(20, 20, 0, 2, 0, 2)  # 4 px missed
    pred = box(20, 20, 10, 15, 10, 15)  # 25 px spurious
    assert next_click(pred, target) == Click(12, 12, False)
    two_missed = target | box(20, 20, 15, 18, 0, 3)  # a second missed region of 9 px beats the 4 px one
    assert next_click(pred & False, two_missed) == Click(16, 1, True)


def test_no_error_left_is_an_error() -> None:
    target = box(5, 5, 1, 3, 1, 3)
    with pytest.raises(ValueError, match="no error region"):
        next_click(target, target)


def test_click_masks_disks() -> None:
    positive, negative = click_masks([Click(2, 2, True), Click(0, 4, False)], (5, 5), radius=1)
    assert positive.sum() == 5 and positive[1:4, 2].all() and positive[2, 1:4].all()
    assert negative.sum() == 3 and negative[0, 3:].all() and negative[1, 4]
    point, _ = click_masks([Click(1, 1, True)], (3, 3), radius=0)
    assert point.sum() == 1 and point[1, 1]


def test_simulate_corrects_a_spurious_region_with_a_negative_click() -> None:
    target = box(20, 20, 2, 8, 2, 8)
    blob = box(20, 20, 12, 18, 12, 18)
    seen: list[tuple[list[Click], torch.Tensor | None]] = []

    def predict(clicks: list[Click], previous: torch.Tensor | None) -> torch.Tensor:
        seen.append((list(clicks), previous))
        return target | blob if len(clicks) == 1 else target

    ious = simulate(predict, target)
    assert ious == [36 / 72, 1.0]  # stops: nothing left to click
    assert seen[0] == ([Click(4, 4, True)], None)
    assert seen[1][0][1] == Click(14, 14, False) and torch.equal(seen[1][1], target | blob)
    assert number_of_clicks(ious, 0.85) == 2


def test_simulate_gives_up_after_max_clicks_and_stops_at_stop_iou() -> None:
    target = box(8, 8, 0, 4, 0, 4)
    ious = simulate(lambda clicks, previous: torch.zeros_like(target), target, max_clicks=20)
    assert ious == [0.0] * 20 and number_of_clicks(ious, 0.9) == 20

    def grow(clicks: list[Click], previous: torch.Tensor | None) -> torch.Tensor:
        return box(8, 8, 0, 4, 0, len(clicks))  # IoU 1/4, 2/4, 3/4, 1

    assert simulate(grow, target, stop_iou=0.7) == [0.25, 0.5, 0.75]
    assert number_of_clicks([0.25, 0.5, 0.75], 0.85, max_clicks=20) == 20


def test_simulate_batch_asks_only_for_unfinished_targets() -> None:
    targets = [box(8, 8, 0, 4, 0, 4), box(8, 8, 4, 8, 4, 8)]
    calls: list[list[int]] = []

    def predict(items, clicks, previous):
        calls.append(list(items))
        return [targets[i] if i == 0 else torch.zeros(8, 8, dtype=torch.bool) for i in items]

    ious = simulate_batch(predict, targets, max_clicks=3)
    assert ious == [[1.0], [0.0, 0.0, 0.0]]
    assert calls == [[0, 1], [1], [1]]
    with pytest.raises(ValueError, match="target 0 is empty"):
        simulate_batch(predict, [torch.zeros(4, 4, dtype=torch.bool)])


def test_click_metric() -> None:
    metric = ClickMetric(report_clicks=(1, 3))
    metric.update([[0.5, 0.86, 0.95], [0.95], [0.1] * 20])
    out = metric.compute()
    assert out["noc85"] == pytest.approx((2 + 1 + 20) / 3)
    assert out["noc90"] == pytest.approx((3 + 1 + 20) / 3)
    assert out["miou_1click"] == pytest.approx((0.5 + 0.95 + 0.1) / 3)
    assert out["miou_3click"] == pytest.approx((0.95 + 0.95 + 0.1) / 3)  # a finished session keeps its last IoU
