"""The Hungarian set criterion shared by the mask decoders (Mask2Former / PSALM / X-SAM losses)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.distributed import mean_over_ranks
from zoo.losses.base import Criterion
from zoo.losses.matcher import HungarianMatcher
from zoo.losses.points import most_uncertain, point_sample, point_sample_groups, uniform_draws
from zoo.registry import register
from zoo.tasks import Scoring, task_spec
from zoo.types import MASKED, Prediction


@register("criterion")
class SetCriterion(Criterion):
    """Hungarian-matched class + point-sampled BCE/Dice mask losses, summed over decoder layers.

    Returns the weighted terms `loss_class`, `loss_mask`, `loss_dice`; the trainer sums them and logs each.
    `softmax` scoring trains K+1-way cross-entropy with a down-weighted no-object column; `sigmoid` scoring
    (referring / visual prompts, as PSALM) trains independent per-(query, condition) scores with PSALM's
    `pos_weight` rule and matches on masks only.
    """

    def __init__(
        self,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        no_object_weight: float = 0.1,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        self.class_weight = class_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.no_object_weight = no_object_weight
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.deep_supervision = deep_supervision
        self.matcher = HungarianMatcher(class_weight, mask_weight, dice_weight, num_points)

    def forward(
        self,
        predictions: list[Prediction],
        target_masks: list[Tensor],
        target_labels: list[Tensor],
        task: str,
        generators: list[torch.Generator] | None = None,
    ) -> dict[str, Tensor]:
        """Weighted losses summed over the supervised layers; `predictions` are ordered [aux..., final].

        The task's scoring (`zoo.tasks`) picks the class loss and whether matching costs the class.

        `generators[b]` draws image b's points (None: torch's global generator). Each term is this rank's sum over
        its samples divided by a count averaged over ranks (`zoo.distributed.mean_over_ranks`), so the mean of the
        rank losses is the loss of the global batch, however it is split.
        """
        scoring = mask_scoring(task)
        layers = predictions if self.deep_supervision else predictions[-1:]
        device = layers[-1].masks.device
        num_masks = self._num_masks(target_labels, device)
        class_sums, class_counts, mask_terms = [], [], []
        # Losses are computed in float32 even inside a bf16 autocast region.
        with torch.autocast(device_type=device.type, enabled=False):
            for pred in layers:
                logits, masks = pred.logits.float(), pred.masks.float()
                indices = self.matcher(logits, masks, target_masks, target_labels, scoring, generators)
                sums, counts = self._class_sums(logits, target_labels, indices, scoring)
                class_sums.append(sums)
                class_counts.append(counts)
                mask_terms.append(self._mask_losses(masks, target_masks, indices, num_masks, generators))
            # One collective for every layer's class normaliser (their matches differ, so their counts do).
            counts = mean_over_ranks(torch.cat(class_counts)).split([len(c) for c in class_counts])
            totals: dict[str, Tensor] = {}
            for sums, count, (loss_mask, loss_dice) in zip(class_sums, counts, mask_terms, strict=True):
                terms = {
                    "loss_class": self.class_weight * self._class_loss(sums, count, scoring),
                    "loss_mask": self.mask_weight * loss_mask,
                    "loss_dice": self.dice_weight * loss_dice,
                }
                totals = {k: totals[k] + v for k, v in terms.items()} if totals else terms
        return totals

    @staticmethod
    def _num_masks(target_labels: list[Tensor], device: torch.device) -> Tensor:
        """Targets per rank, averaged over ranks so every rank normalises alike (Mask2Former's `num_masks`).

        Clamped only against 0 / 0: with no target on any rank there is no matched pair to divide either.
        """
        num = torch.tensor(float(sum(len(t) for t in target_labels)), device=device)
        return mean_over_ranks(num).clamp(min=1e-6)

    def _class_sums(
        self,
        logits: Tensor,
        target_labels: list[Tensor],
        indices: list[tuple[Tensor, Tensor]],
        scoring: Scoring,
    ) -> tuple[Tensor, Tensor]:
        """This rank's class-loss sums (with gradient) and the counts that normalise them, before averaging.

        `softmax`: ([sum of weight * CE], [sum of weights]), Mask2Former's weighted mean once divided.
        `sigmoid`: ([BCE over positives, BCE over negatives], [scores, positives]) over real conditions only:
        padded ones (logit `MASKED`) would make a sample's loss depend on its batch-mates' condition counts.
        """
        batch_idx, query_idx, labels = self._matched(target_labels, indices, logits.device)
        if scoring == "softmax":
            no_object = logits.shape[-1] - 1
            target = torch.full(logits.shape[:2], no_object, dtype=torch.int64, device=logits.device)
            target[batch_idx, query_idx] = labels
            weight = torch.ones(logits.shape[-1], device=logits.device)
            weight[-1] = self.no_object_weight
            weighted = F.cross_entropy(logits.transpose(1, 2), target, weight=weight, reduction="sum")
            return weighted[None], weight[target].sum()[None]
        target = torch.zeros_like(logits)
        target[batch_idx, query_idx, labels] = 1.0
        real = (logits > MASKED / 2).float()
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * real
        sums = torch.stack([(bce * target).sum(), (bce * (1 - target)).sum()])
        return sums, torch.stack([real.sum(), target.sum()]).detach()

    @staticmethod
    def _class_loss(sums: Tensor, counts: Tensor, scoring: Scoring) -> Tensor:
        """The class term from `_class_sums` and its counts averaged over ranks."""
        if scoring == "softmax":
            return sums[0] / counts[0].clamp(min=1e-6)
        scores, positives = counts
        # PSALM's rule: weigh the rare positives up to balance the negatives (moot when there are none).
        pos_weight = torch.where(positives > 0, (scores - positives) / positives.clamp(min=1e-6), 1.0)
        return (pos_weight * sums[0] + sums[1]) / scores.clamp(min=1e-6)

    @staticmethod
    def _matched(
        target_labels: list[Tensor], indices: list[tuple[Tensor, Tensor]], device: torch.device
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Flattened (image index, query index, target label) of all matched pairs."""
        batch_idx = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(indices)]).to(device)
        query_idx = torch.cat([q for q, _ in indices]).to(device)
        labels = torch.cat([y[t.to(y.device)] for y, (_, t) in zip(target_labels, indices, strict=True)])
        return batch_idx, query_idx, labels.to(device).long()

    def _mask_losses(
        self,
        masks: Tensor,
        target_masks: list[Tensor],
        indices: list[tuple[Tensor, Tensor]],
        num_masks: Tensor,
        generators: list[torch.Generator] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Point-sampled sigmoid BCE and Dice over matched pairs, each summed over masks / `num_masks`; image b's
        points come from `generators[b]` when given."""
        live = [(b, query, target) for b, (query, target) in enumerate(indices) if len(query)]
        if not live:
            # Exactly zero, but still connected to the graph so backward and DDP see every parameter.
            zero = masks.sum() * 0.0
            return zero, zero
        # Each image draws its points from its own stream; selection and sampling then run once for the batch.
        ratios = (self.oversample_ratio, self.importance_sample_ratio)
        draws = [
            uniform_draws(len(q), self.num_points, *ratios, masks.device, generators[b] if generators else None)
            for b, q, _ in live
        ]
        pred = torch.cat([masks[b, q.to(masks.device)] for b, q, _ in live]).unsqueeze(1)
        coords = most_uncertain(pred, *(torch.cat(d) for d in zip(*draws, strict=True)), self.num_points)
        logits = point_sample(pred, coords)[:, 0]
        with torch.no_grad():
            targets = [target_masks[b][t.to(target_masks[b].device)].float().to(masks.device) for b, _, t in live]
            labels = point_sample_groups(targets, coords)
        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1)
        probs = logits.sigmoid()
        dice = 1 - (2 * (probs * labels).sum(-1) + 1) / (probs.sum(-1) + labels.sum(-1) + 1)
        return bce.sum() / num_masks, dice.sum() / num_masks


def mask_scoring(task: str) -> Scoring:
    """The scoring of a task with masks; a text-only task has no mask loss to compute."""
    scoring = task_spec(task).scoring
    if scoring is None:
        raise ValueError(f"task '{task}' has no masks, so it has no mask losses")
    return scoring
