"""Hungarian matching of predicted queries to target masks on sampled points (PSALM, X-SAM, Mask2Former)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from zoo.losses.points import point_sample, point_sample_groups
from zoo.tasks import Scoring


def pairwise_sigmoid_bce(inputs: Tensor, targets: Tensor) -> Tensor:
    """Mean sigmoid BCE over points for every (prediction [..., Q, P], target [..., N, P]) pair: [..., Q, N]."""
    pos = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    neg = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    return (pos @ targets.mT + neg @ (1 - targets).mT) / inputs.shape[-1]


def pairwise_dice(inputs: Tensor, targets: Tensor) -> Tensor:
    """Dice loss of sigmoid(prediction [..., Q, P]) against every target [..., N, P]: [..., Q, N]."""
    probs = inputs.sigmoid()
    numerator = 2 * probs @ targets.mT
    denominator = probs.sum(-1)[..., :, None] + targets.sum(-1)[..., None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def target_columns(scores: Tensor, target_labels: list[Tensor], live: list[int]) -> Tensor:
    """[L, Q, N_max]: for each image in `live` (scores [L, Q, K]), the score column of each of its targets' labels,
    targets padded to the largest count as `HungarianMatcher.mask_costs` pads them."""
    labels = nn.utils.rnn.pad_sequence([target_labels[b].to(scores.device) for b in live], batch_first=True)
    return scores.gather(2, labels[:, None, :].expand(-1, scores.shape[1], -1))


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets minimising a mask (+ class) cost, per image.

    The class cost is used only with `softmax` scoring (generic segmentation); `sigmoid` heads (referring,
    visual prompts) are matched on masks alone, as PSALM does.
    """

    def __init__(
        self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0, num_points: int = 12544
    ) -> None:
        super().__init__()
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def forward(
        self,
        logits: Tensor,
        pred_masks: Tensor,
        target_masks: list[Tensor],
        target_labels: list[Tensor],
        scoring: Scoring,
        generators: list[torch.Generator] | None = None,
    ) -> list[tuple[Tensor, Tensor]]:
        """Per image, (query indices, target indices) as CPU int64 tensors of equal length.

        `logits` [B, Q, K'] and `pred_masks` [B, Q, h, w] logits; `target_masks[b]` [N_b, H, W] at their own
        resolution (points are normalised, so nothing is resized), `target_labels[b]` [N_b]. Image b's points come
        from `generators[b]` when given (torch's global generator otherwise).
        """
        if scoring not in ("softmax", "sigmoid"):
            raise ValueError(f"scoring must be 'softmax' or 'sigmoid', got {scoring!r}")
        live, sizes, cost = self.mask_costs(pred_masks, target_masks, target_labels, generators)
        indices = self.unmatched(logits.shape[0])
        if not live:
            return indices
        if scoring == "softmax":
            probs = logits[live].float().softmax(-1)  # [L, Q, K']
            cost = cost - self.cost_class * target_columns(probs, target_labels, live)
        for b, n, block in zip(live, sizes, cost.cpu(), strict=True):
            indices[b] = self.assign(block[:, :n])
        return indices

    def mask_costs(
        self,
        pred_masks: Tensor,
        target_masks: list[Tensor],
        target_labels: list[Tensor],
        generators: list[torch.Generator] | None,
    ) -> tuple[list[int], list[int], Tensor]:
        """The images with targets, their target counts, and their [L, Q, N_max] cost_mask * BCE + cost_dice * Dice
        (targets padded to the largest count; a padded column is garbage to slice off).

        Each image draws its uniform points from its own stream, shared by its predictions and targets; both reads
        then run once for the batch."""
        live = [b for b in range(pred_masks.shape[0]) if target_labels[b].numel()]
        if not live:
            return live, [], pred_masks.new_empty(0, pred_masks.shape[1], 0)
        device = pred_masks.device
        coords = torch.cat(
            [
                torch.rand(1, self.num_points, 2, device=device, generator=generators[b] if generators else None)
                for b in live
            ]
        )
        pred = point_sample(pred_masks[live].float(), coords)  # [L, Q, P]
        targets = [target_masks[b].float().to(device) for b in live]
        sizes = [len(t) for t in targets]
        # Image i's points repeated for its n_i targets, sizes known here: no device -> host sync to learn them.
        repeated = torch.cat([c.expand(n, -1, -1) for c, n in zip(coords[:, None], sizes, strict=True)])
        tgt = point_sample_groups(targets, repeated)
        return live, sizes, self._cost(pred, nn.utils.rnn.pad_sequence(list(tgt.split(sizes)), batch_first=True))

    @staticmethod
    def unmatched(batch: int) -> list[tuple[Tensor, Tensor]]:
        """Empty (query indices, target indices) for every image: what an image without targets gets."""
        empty = torch.empty(0, dtype=torch.int64)
        return [(empty, empty)] * batch

    def _cost(self, pred: Tensor, tgt: Tensor) -> Tensor:
        """[..., Q, N] weighted BCE + Dice of point logits [..., Q, P] against point targets [..., N, P]."""
        return self.cost_mask * pairwise_sigmoid_bce(pred, tgt) + self.cost_dice * pairwise_dice(pred, tgt)

    @staticmethod
    def assign(cost: Tensor) -> tuple[Tensor, Tensor]:
        """The minimum-cost one-to-one assignment of a [Q, N] cost: (query indices, target indices), CPU int64."""
        cost = torch.nan_to_num(cost.cpu(), nan=0.0).clamp(-1e10, 1e10)
        rows, cols = linear_sum_assignment(cost.numpy())
        return torch.from_numpy(rows).long(), torch.from_numpy(cols).long()
