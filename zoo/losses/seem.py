"""SEEM's losses: panoptic as Mask2Former; grounding and spatial prompts pick their query by a softmax over queries.

Generic segmentation (`softmax` scoring) is the shared SetCriterion: cross-entropy against the text-similarity
logits whose last column is the `background` text class (no-object weight 0.1), point-sampled BCE and Dice. For
prompt tasks (`sigmoid` scoring: an expression, or a visual prompt, per logit column) SEEM trains differently:
each prompt's column is a softmax over the queries, matching costs -softmax + BCE + Dice, and a query whose logit
is `MASKED` (a visual prompt's score from another prompt's queries) can never be matched to it; the class term is
the cross-entropy of that softmax against the matched query. Every term is summed over decoder layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.losses.criterion import SetCriterion, mask_scoring
from zoo.losses.matcher import target_columns
from zoo.registry import register
from zoo.types import MASKED, Prediction

FORBIDDEN = 1e8  # matching cost of a pair the prompt may not take (finite, so the assignment stays solvable)


@register("criterion")
class SeemCriterion(SetCriterion):
    """Panoptic terms as SetCriterion; grounding / spatial terms with per-prompt query softmax and matching.

    Weights are SEEM's: panoptic class 2, mask 5, dice 5; prompt class 0.4, mask 1, dice 1. The returned keys are
    SetCriterion's (`loss_class`, `loss_mask`, `loss_dice`) so every task logs alike.
    """

    def __init__(
        self,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        no_object_weight: float = 0.1,
        prompt_class_weight: float = 0.4,
        prompt_mask_weight: float = 1.0,
        prompt_dice_weight: float = 1.0,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__(
            class_weight,
            mask_weight,
            dice_weight,
            no_object_weight,
            num_points,
            oversample_ratio,
            importance_sample_ratio,
            deep_supervision,
        )
        self.prompt_class_weight = prompt_class_weight
        self.prompt_mask_weight = prompt_mask_weight
        self.prompt_dice_weight = prompt_dice_weight

    def forward(
        self,
        predictions: list[Prediction],
        target_masks: list[Tensor],
        target_labels: list[Tensor],
        task: str,
        generators: list[torch.Generator] | None = None,
    ) -> dict[str, Tensor]:
        if mask_scoring(task) == "softmax":
            return super().forward(predictions, target_masks, target_labels, task, generators)
        layers = predictions if self.deep_supervision else predictions[-1:]
        device = layers[-1].masks.device
        num_masks = self._num_masks(target_labels, device)
        totals: dict[str, Tensor] = {}
        with torch.autocast(device_type=device.type, enabled=False):
            for pred in layers:
                logits, masks = pred.logits.float(), pred.masks.float()
                indices = self.match(logits, masks, target_masks, target_labels, generators)
                loss_mask, loss_dice = self._mask_losses(masks, target_masks, indices, num_masks, generators)
                terms = {
                    "loss_class": self.prompt_class_weight * self._query_ce(logits, target_labels, indices),
                    "loss_mask": self.prompt_mask_weight * loss_mask,
                    "loss_dice": self.prompt_dice_weight * loss_dice,
                }
                totals = {k: totals[k] + v for k, v in terms.items()} if totals else terms
        return totals

    @torch.no_grad()
    def match(
        self,
        logits: Tensor,
        masks: Tensor,
        target_masks: list[Tensor],
        target_labels: list[Tensor],
        generators: list[torch.Generator] | None = None,
    ) -> list[tuple[Tensor, Tensor]]:
        """Per image, (query indices, target indices): each target is matched among the queries its prompt allows,
        by cost_class * -softmax-over-queries + cost_mask * BCE + cost_dice * Dice on shared random points."""
        matcher = self.matcher
        live, sizes, cost = matcher.mask_costs(masks, target_masks, target_labels, generators)
        indices = matcher.unmatched(logits.shape[0])
        if not live:
            return indices
        columns = target_columns(logits[live], target_labels, live)  # [L, Q, N_max]: each target's prompt column
        forbidden = columns <= MASKED / 2
        cost = (cost - matcher.cost_class * columns.softmax(1)).masked_fill(forbidden, FORBIDDEN)
        for b, n, block, no in zip(live, sizes, cost.cpu(), forbidden.cpu(), strict=True):
            rows, cols = matcher.assign(block[:, :n])
            # A target its prompt's queries cannot all take (VGD: more instances of the category than queries per
            # prompt) stays unmatched rather than trained on another prompt's query.
            allowed = ~no[rows, cols]
            indices[b] = (rows[allowed], cols[allowed])
        return indices

    def _query_ce(self, logits: Tensor, target_labels: list[Tensor], indices: list[tuple[Tensor, Tensor]]) -> Tensor:
        """Mean cross-entropy, over matched targets, of their prompt's softmax over queries against the match."""
        batch_idx, query_idx, labels = self._matched(target_labels, indices, logits.device)
        if batch_idx.numel() == 0:
            return logits.sum() * 0.0
        columns = logits[batch_idx, :, labels]  # [M, Q]
        return F.cross_entropy(columns, query_idx)
