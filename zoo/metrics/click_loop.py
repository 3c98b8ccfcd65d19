"""Interactive evaluation by simulated clicks: re-run any segmentation model on click prompts, round by round.

Generic over models: each round is an ordinary interactive `Batch` whose `prompts` hold, per unfinished target,
the positive click disks (prompt type "point"), `negative_prompts` the negative ones and `previous_masks` the
last prediction. Models that read only `prompts` (PSALM) see a growing point prompt; models
that read the other two (SEEM) refine with them. The answer for each target is the top-1 query of its prompt.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from zoo.metrics.clicks import Click, click_masks, simulate_batch
from zoo.metrics.conditions import condition_masks, prompt_targets
from zoo.types import Batch, Prediction

ModelFn = Callable[[Batch], Prediction]
"""A model's last-layer prediction for a batch (the evaluator passes `lambda b: model(b).predictions[-1]`)."""


def click_targets(batch: Batch) -> list[tuple[int, Tensor]]:
    """(sample index, target mask) of every non-empty prompt target: the union of the masks answering it."""
    targets = []
    for b in range(len(batch)):
        for target in prompt_targets(batch.masks[b], batch.labels[b], len(batch.prompt_types[b])):
            if target.any():
                targets.append((b, target))
    return targets


def click_batch(
    batch: Batch, groups: dict[int, list[int]], clicks: dict[int, list[Click]], previous: dict, radius: int
) -> Batch:
    """The batch of one click round: per sample `b` of `batch` with unfinished targets `groups[b]`, one prompt per
    target holding the disks of its clicks so far (`previous` maps a target to its last mask or None)."""
    shape = tuple(batch.images.shape[-2:])
    device = batch.images.device
    samples = list(groups)
    positives, negatives = [], []
    for b in samples:
        disks = [click_masks(clicks[i], shape, radius) for i in groups[b]]
        positives.append(torch.stack([p for p, _ in disks]).to(device))
        negatives.append(torch.stack([n for _, n in disks]).to(device))
    first_round = any(previous[i] is None for i in previous)
    empty = torch.zeros(0, dtype=torch.long, device=device)
    return Batch(
        images=batch.images[samples],
        task="interactive",
        instructions=[batch.instructions[b] for b in samples],
        conditions=[list(batch.conditions[b]) for b in samples],
        masks=[torch.zeros(0, *shape, dtype=torch.bool, device=device) for _ in samples],
        labels=[empty for _ in samples],
        prompts=positives,
        prompt_types=[["point"] * len(groups[b]) for b in samples],
        meta=[batch.meta[b] if b < len(batch.meta) else {} for b in samples],
        negative_prompts=negatives,
        previous_masks=None
        if first_round
        else [torch.stack([previous[i] for i in groups[b]]).to(device) for b in samples],
    )


def run_clicks(
    batch: Batch,
    model: ModelFn,
    max_clicks: int = 20,
    radius: int = 3,
    stop_iou: float | None = None,
    min_clicks: int = 1,
) -> list[tuple[int, list[float]]]:
    """Simulate clicks on every prompt target of an interactive batch: (sample index, IoU after each click) per
    target.

    Each round runs the model once, on the samples that still have unfinished targets, with one point prompt per
    such target (as the data's own prompts: several targets of one image share a forward pass). Predictions are cut
    to the sample's scored pixels (`batch.ignore`, e.g. padding), as RITM's clicker and IoU leave ignored pixels out.
    """
    targets = click_targets(batch)
    ignore = batch.ignore or [None] * len(batch)

    def predict(items: list[int], clicks: list[list[Click]], previous: list[Tensor | None]) -> list[Tensor]:
        groups: dict[int, list[int]] = {}
        for i in items:
            groups.setdefault(targets[i][0], []).append(i)
        sub = click_batch(
            batch, groups, dict(zip(items, clicks, strict=True)), dict(zip(items, previous, strict=True)), radius
        )
        chosen = condition_masks(model(sub), sub.images.shape[-2:], [len(members) for members in groups.values()])
        masks: dict[int, Tensor] = {}
        for row, members in enumerate(groups.values()):
            for k, i in enumerate(members):
                mask = chosen[row][k]
                skipped = ignore[targets[i][0]]
                masks[i] = (mask if skipped is None else mask & ~skipped.to(mask.device).bool()).cpu()
        return [masks[i] for i in items]

    sessions = simulate_batch(predict, [t.cpu() for _, t in targets], max_clicks, stop_iou, min_clicks)
    return [(b, ious) for (b, _), ious in zip(targets, sessions, strict=True)]
