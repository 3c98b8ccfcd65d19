"""Behaviour of the Hungarian set criterion: point sampling, matching, losses, and that they train."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.loss_helpers import per_image_mask_cost
from zoo.losses import HungarianMatcher, SetCriterion, point_sample, uncertainty_points
from zoo.registry import components, describe
from zoo.types import Prediction

NUM_POINTS = 1024


def block_masks(size: int, boxes: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """Boolean masks [N, size, size], one filled rectangle (y0, y1, x0, x1) in fractions of 8 per mask."""
    masks = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    unit = size // 8
    for n, (y0, y1, x0, x1) in enumerate(boxes):
        masks[n, y0 * unit : y1 * unit, x0 * unit : x1 * unit] = True
    return masks


BOXES = [(0, 4, 0, 4), (4, 8, 0, 8), (0, 4, 4, 8)]


def as_logits(masks: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    return scale * (2 * masks.float() - 1)


def test_point_sample_equals_indexing_at_pixel_centres() -> None:
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 5, 7)
    i, j = torch.randint(0, 5, (2, 11)), torch.randint(0, 7, (2, 11))
    coords = torch.stack([(j + 0.5) / 7, (i + 0.5) / 5], dim=-1)
    expected = torch.stack([inputs[n][:, i[n], j[n]] for n in range(2)])
    torch.testing.assert_close(point_sample(inputs, coords), expected)
    torch.testing.assert_close(point_sample(inputs[:, 0], coords), expected[:, 0])


def test_uncertainty_points_concentrate_on_the_boundary() -> None:
    torch.manual_seed(0)
    x = (torch.arange(32) + 0.5) / 32
    logits = (10 * (x - 0.5)).expand(32, 32)[None, None]  # boundary at x = 0.5
    coords = uncertainty_points(logits, 400, oversample_ratio=3.0, importance_sample_ratio=0.75)
    assert coords.shape == (1, 400, 2)
    distance = (coords[0, :, 0] - 0.5).abs()
    # The kept quarter of uniform candidates lies within ~1/8 of the boundary; the uniform fill averages 1/4.
    assert distance[:300].mean() < 0.08
    assert distance[:300].quantile(0.95) < 0.15
    assert distance[300:].mean() > 0.15
    assert ((coords >= 0) & (coords <= 1)).all()


@pytest.mark.parametrize("scoring", ["softmax", "sigmoid"])
def test_matcher_recovers_a_permutation_across_resolutions(scoring: str) -> None:
    torch.manual_seed(0)
    targets = [block_masks(64, BOXES), torch.zeros(0, 64, 64, dtype=torch.bool)]
    labels = [torch.tensor([2, 0, 1]), torch.zeros(0, dtype=torch.long)]
    query_of_target = torch.tensor([3, 0, 4])  # queries 1 and 2 predict nothing
    pred = torch.full((2, 5, 16, 16), -10.0)
    pred[0, query_of_target] = as_logits(block_masks(16, BOXES))
    num_classes = 3 + (scoring == "softmax")
    logits = torch.zeros(2, 5, num_classes)
    logits[0, query_of_target, labels[0]] = 10.0
    matcher = HungarianMatcher(num_points=NUM_POINTS)
    (q0, t0), (q1, t1) = matcher(logits, pred, targets, labels, scoring)
    assert torch.equal(q0[t0.argsort()], query_of_target)
    assert q1.numel() == 0 and t1.numel() == 0 and q1.dtype == t1.dtype == torch.int64


@pytest.mark.parametrize("sizes", [(64, 64, 64), (64, 64, 32)])
def test_batched_matching_and_mask_losses_equal_per_image_draws(sizes: tuple[int, int, int]) -> None:
    """The batch is matched and sampled in one go, yet image b's points still come from its own generator."""
    torch.manual_seed(0)
    targets = [torch.rand(3, sizes[0], sizes[0]) > 0.5, torch.zeros(0, sizes[1], sizes[1], dtype=torch.bool)]
    targets.append(torch.rand(2, sizes[2], sizes[2]) > 0.5)
    labels = [torch.tensor([2, 0, 1]), torch.zeros(0, dtype=torch.long), torch.tensor([1, 1])]
    pred, logits = torch.randn(3, 6, 16, 16), torch.randn(3, 6, 4)
    criterion = SetCriterion(num_points=NUM_POINTS)

    def streams() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(10 + b) for b in range(3)]

    indices = criterion.matcher(logits, pred, targets, labels, "softmax", streams())

    reference, ref_gens = [], streams()
    for b in (0, 2):
        cost = per_image_mask_cost(pred[b], targets[b], NUM_POINTS, ref_gens[b])
        reference.append(criterion.matcher.assign(cost - 2.0 * logits[b].softmax(-1)[:, labels[b]]))
    for (q, t), (rq, rt) in zip([indices[0], indices[2]], reference, strict=True):
        assert torch.equal(q, rq) and torch.equal(t, rt)
    assert indices[1][0].numel() == 0

    num_masks = torch.tensor(5.0)
    loss_mask, loss_dice = criterion._mask_losses(pred, targets, indices, num_masks, ref_gens)
    bce, dice, loop_gens = 0.0, 0.0, streams()
    for b in (0, 2):  # the reference loop: consume the matcher's draws, then sample each image alone
        torch.rand(1, NUM_POINTS, 2, generator=loop_gens[b])
    for b in (0, 2):
        q, t = indices[b]
        mask = pred[b, q].unsqueeze(1)
        coords = uncertainty_points(mask, NUM_POINTS, 3.0, 0.75, generator=loop_gens[b])
        x, y = point_sample(mask, coords)[:, 0], point_sample(targets[b][t].float(), coords)
        bce += F.binary_cross_entropy_with_logits(x, y, reduction="none").mean(1).sum()
        p = x.sigmoid()
        dice += (1 - (2 * (p * y).sum(-1) + 1) / (p.sum(-1) + y.sum(-1) + 1)).sum()
    torch.testing.assert_close(loss_mask, bce / num_masks)
    torch.testing.assert_close(loss_dice, dice / num_masks)


def test_class_cost_changes_the_assignment_only_with_softmax() -> None:
    torch.manual_seed(0)
    targets = [block_masks(32, [(0, 8, 0, 4), (0, 8, 4, 8)])]  # left half, right half
    labels = [torch.tensor([0, 1])]
    # Masks barely favour query 0 -> left, query 1 -> right; class scores strongly say the opposite.
    pred = as_logits(targets[0], scale=0.1).unsqueeze(0)
    logits = torch.tensor([[[-10.0, 10.0, -10.0], [10.0, -10.0, -10.0]]])
    matcher = HungarianMatcher(num_points=NUM_POINTS)
    ((query, target),) = matcher(logits[..., :2], pred, targets, labels, "sigmoid")
    assert torch.equal(query[target.argsort()], torch.tensor([0, 1]))
    ((query, target),) = matcher(logits, pred, targets, labels, "softmax")
    assert torch.equal(query[target.argsort()], torch.tensor([1, 0]))


TASK_OF = {"softmax": "panoptic", "sigmoid": "referring"}  # a task of each scoring, for the criterion


def perfect_prediction(scoring: str) -> tuple[Prediction, list[torch.Tensor], list[torch.Tensor]]:
    targets = [block_masks(32, BOXES), block_masks(32, BOXES[:1])]
    labels = [torch.tensor([2, 0, 1]), torch.tensor([1])]
    masks = torch.full((2, 4, 32, 32), -10.0)
    masks[0, :3] = as_logits(targets[0])
    masks[1, :1] = as_logits(targets[1])
    k = 3
    logits = torch.full((2, 4, k + 1), -10.0)
    if scoring == "softmax":
        logits[..., k] = 10.0
    logits[0, [0, 1, 2], labels[0]] = 10.0
    logits[1, 0, labels[1]] = 10.0
    if scoring == "softmax":
        logits[0, :3, k] = -10.0
        logits[1, 0, k] = -10.0
    else:
        logits = logits[..., :k]
    return Prediction(logits=logits, masks=masks), targets, labels


@pytest.mark.parametrize("scoring", ["softmax", "sigmoid"])
def test_perfect_prediction_scores_far_below_random(scoring: str) -> None:
    torch.manual_seed(0)
    criterion = SetCriterion(num_points=NUM_POINTS)
    perfect, targets, labels = perfect_prediction(scoring)
    random = Prediction(logits=torch.randn_like(perfect.logits), masks=torch.randn_like(perfect.masks))
    good = criterion([perfect], targets, labels, TASK_OF[scoring])
    bad = criterion([random], targets, labels, TASK_OF[scoring])
    assert set(good) == {"loss_class", "loss_mask", "loss_dice"}
    assert good["loss_class"] < 0.01 * bad["loss_class"]
    # Mask terms keep a floor: uncertainty sampling puts most points on the edges, where bilinear reads blur
    # even a perfect hard mask.
    assert good["loss_mask"] < 0.35 * bad["loss_mask"]
    assert good["loss_dice"] < 0.15 * bad["loss_dice"]


@pytest.mark.parametrize("scoring", ["softmax", "sigmoid"])
def test_optimising_free_predictions_lowers_the_loss(scoring: str) -> None:
    torch.manual_seed(0)
    _, targets, labels = perfect_prediction(scoring)
    k = 3 + (scoring == "softmax")
    logits = torch.zeros(2, 4, k, requires_grad=True)
    masks = (0.1 * torch.randn(2, 4, 16, 16)).requires_grad_()
    criterion = SetCriterion(num_points=256)
    optimiser = torch.optim.Adam([logits, masks], lr=0.1)
    history = []
    for _ in range(50):
        losses = criterion([Prediction(logits=logits, masks=masks)], targets, labels, TASK_OF[scoring])
        total = sum(losses.values())
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        history.append(total.item())
    assert history[-1] < 0.3 * history[0]


def test_sigmoid_class_term_uses_psalm_pos_weight() -> None:
    torch.manual_seed(0)
    targets = [block_masks(16, BOXES[:1])]
    labels = [torch.tensor([1])]
    masks = torch.full((1, 4, 16, 16), -10.0)
    masks[0, 2] = as_logits(targets[0])  # query 2 is the unambiguous match
    logits = torch.randn(1, 4, 2)
    criterion = SetCriterion(num_points=NUM_POINTS)
    losses = criterion([Prediction(logits=logits, masks=masks)], targets, labels, "referring")
    target = torch.zeros(1, 4, 2)
    target[0, 2, 1] = 1.0
    # One positive among 8 scores: pos_weight = (8 - 1) / 1.
    expected = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(7.0))
    torch.testing.assert_close(losses["loss_class"], 2.0 * expected)


def test_softmax_class_term_down_weights_no_object() -> None:
    torch.manual_seed(0)
    targets = [block_masks(16, BOXES[:1])]
    labels = [torch.tensor([1])]
    masks = torch.full((1, 4, 16, 16), -10.0)
    masks[0, 2] = as_logits(targets[0])
    logits = torch.randn(1, 4, 3)
    criterion = SetCriterion(num_points=NUM_POINTS, no_object_weight=0.1)
    losses = criterion([Prediction(logits=logits, masks=masks)], targets, labels, "panoptic")
    log_probs = logits[0].log_softmax(-1)
    # Weighted mean: the matched query (weight 1) and three no-object queries (weight 0.1 each).
    expected = -(log_probs[2, 1] + 0.1 * (log_probs[0, 2] + log_probs[1, 2] + log_probs[3, 2])) / 1.3
    torch.testing.assert_close(losses["loss_class"], 2.0 * expected)


@pytest.mark.parametrize("scoring", ["softmax", "sigmoid"])
def test_empty_targets_give_zero_mask_loss_with_a_gradient_path(scoring: str) -> None:
    k = 3 + (scoring == "softmax")
    logits = torch.randn(2, 4, k, requires_grad=True)
    masks = torch.randn(2, 4, 8, 8, requires_grad=True)
    targets = [torch.zeros(0, 32, 32, dtype=torch.bool)] * 2
    labels = [torch.zeros(0, dtype=torch.long)] * 2
    losses = SetCriterion(num_points=64)([Prediction(logits=logits, masks=masks)], targets, labels, TASK_OF[scoring])
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    sum(losses.values()).backward()
    assert masks.grad is not None and torch.equal(masks.grad, torch.zeros_like(masks))
    if scoring == "softmax":
        expected = F.cross_entropy(logits.detach().transpose(1, 2), torch.full((2, 4), k - 1))
    else:
        expected = F.binary_cross_entropy_with_logits(logits.detach(), torch.zeros(2, 4, k))
    torch.testing.assert_close(losses["loss_class"], 2.0 * expected)
    assert logits.grad.abs().sum() > 0


def test_deep_supervision_sums_independently_matched_layers() -> None:
    perfect, targets, labels = perfect_prediction("softmax")
    torch.manual_seed(1)
    aux = Prediction(logits=torch.randn_like(perfect.logits), masks=torch.randn_like(perfect.masks))
    criterion = SetCriterion(num_points=NUM_POINTS)
    torch.manual_seed(0)
    both = criterion([aux, perfect], targets, labels, "panoptic")
    torch.manual_seed(0)  # the same random draws, in the same order, layer by layer
    first = criterion([aux], targets, labels, "panoptic")
    second = criterion([perfect], targets, labels, "panoptic")
    for key in both:
        torch.testing.assert_close(both[key], first[key] + second[key])
    # An unambiguous match makes the class term independent of the sampled points: exactly twice one layer.
    twice = criterion([perfect, perfect], targets, labels, "panoptic")
    torch.testing.assert_close(twice["loss_class"], 2 * second["loss_class"])
    torch.manual_seed(0)
    last_only = SetCriterion(num_points=NUM_POINTS, deep_supervision=False)([aux, perfect], targets, labels, "panoptic")
    torch.manual_seed(0)
    for key, value in criterion([perfect], targets, labels, "panoptic").items():
        torch.testing.assert_close(last_only[key], value)


def test_bf16_autocast_computes_float32_losses() -> None:
    torch.manual_seed(0)
    perfect, targets, labels = perfect_prediction("softmax")
    logits = torch.randn_like(perfect.logits).bfloat16().requires_grad_()
    masks = torch.randn_like(perfect.masks).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = SetCriterion(num_points=256)([Prediction(logits, masks)], targets, labels, "panoptic")
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert masks.grad is not None and masks.grad.dtype == torch.bfloat16


def test_criterion_is_registered_with_a_description() -> None:
    assert components("criterion")["criterion"]["SetCriterion"] is SetCriterion
    assert describe(SetCriterion)
    with pytest.raises(KeyError, match="Unknown task 'panoptc'. Did you mean 'panoptic'"):
        SetCriterion()([perfect_prediction("softmax")[0]], [], [], "panoptc")
    with pytest.raises(ValueError, match="task 'caption' has no masks"):
        SetCriterion()([perfect_prediction("softmax")[0]], [], [], "caption")
