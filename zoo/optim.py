"""Learning-rate schedules that size themselves from the trainer's step count."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class _Warmup(LambdaLR):
    """Linear warm-up over `warmup_ratio` of training, then the subclass's decay.

    The total step count is filled in by the LightningModule from the trainer (`set_total_steps`), so recipes
    never repeat it.
    """

    def __init__(self, optimizer: Optimizer, warmup_ratio: float) -> None:
        self.warmup_ratio = warmup_ratio
        self.total_steps = 1
        super().__init__(optimizer, self._factor)

    def set_total_steps(self, total: int) -> None:
        self.total_steps = max(1, int(total))
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * self._factor(self.last_epoch)

    def _factor(self, step: int) -> float:
        warmup = int(self.warmup_ratio * self.total_steps)
        if step < warmup:
            return (step + 1) / warmup
        return self._decay(step, warmup)

    def _decay(self, step: int, warmup: int) -> float:
        raise NotImplementedError


class WarmupCosine(_Warmup):
    """Warm-up, then cosine decay to `min_ratio` (PSALM, X-SAM stages 2 and 3)."""

    def __init__(self, optimizer: Optimizer, warmup_ratio: float = 0.03, min_ratio: float = 0.0) -> None:
        self.min_ratio = min_ratio
        super().__init__(optimizer, warmup_ratio)

    def _decay(self, step: int, warmup: int) -> float:
        progress = min(1.0, (step - warmup) / max(1, self.total_steps - warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupMultiStep(_Warmup):
    """Warm-up, then x`gamma` at each milestone, given as fractions of training (X-SAM stage 1: 24/36 and 30/36 of
    36 epochs), so the schedule keeps its shape whatever the step count."""

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_ratio: float = 0.03,
        milestones: tuple[float, ...] = (2 / 3, 5 / 6),
        gamma: float = 0.1,
    ) -> None:
        if any(not 0 < m < 1 for m in milestones):
            raise ValueError(f"WarmupMultiStep milestones are fractions of training in (0, 1), got {milestones}")
        self.milestones = sorted(milestones)
        self.gamma = gamma
        super().__init__(optimizer, warmup_ratio)

    def _decay(self, step: int, warmup: int) -> float:
        return self.gamma ** sum(step >= m * self.total_steps for m in self.milestones)
