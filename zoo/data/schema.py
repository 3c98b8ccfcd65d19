"""The unified sample schema every reader produces, and the collate that turns samples into a `Batch`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from zoo.types import Batch

TASKS = ("panoptic", "referring", "interactive", "caption")


@dataclass
class Sample:
    """One sample in the unified schema, checked on creation so a reader bug fails where it happens.

    `labels[n]` indexes the condition (or, for interactive samples, the prompt) that `masks[n]` answers.
    `masks`, `labels` and `prompts` default to empty, so caption readers need not build them.
    """

    image: Tensor  # [3, H, W] float in [0, 1]
    task: str
    instruction: str
    conditions: list[str] = field(default_factory=list)
    masks: Tensor | None = None  # [N, H, W] bool
    labels: Tensor | None = None  # [N] long
    prompts: Tensor | None = None  # [K, H, W] bool
    prompt_types: list[str] = field(default_factory=list)
    answer: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"Unknown task '{self.task}'. Candidates: {', '.join(TASKS)}.")
        if self.image.ndim != 3 or self.image.shape[0] != 3:
            raise ValueError(f"Sample image must be [3, H, W], got {list(self.image.shape)}")
        height, width = self.image.shape[1:]
        empty = torch.zeros(0, height, width, dtype=torch.bool)
        self.masks = empty if self.masks is None else self.masks
        self.labels = torch.zeros(0, dtype=torch.long) if self.labels is None else self.labels
        self.prompts = empty if self.prompts is None else self.prompts
        for name in ("masks", "prompts"):
            value = getattr(self, name)
            if value.ndim != 3 or tuple(value.shape[1:]) != (height, width):
                raise ValueError(f"Sample {name} must be [N, {height}, {width}], got {list(value.shape)}")
        if self.labels.shape != (self.masks.shape[0],):
            raise ValueError(f"Sample has {self.masks.shape[0]} masks but labels of shape {list(self.labels.shape)}")
        if len(self.prompt_types) != self.prompts.shape[0]:
            raise ValueError(f"Sample has {self.prompts.shape[0]} prompts but {len(self.prompt_types)} prompt types")


def collate(samples: list[Sample]) -> Batch:
    """Stack images and keep per-sample targets as lists: mask counts differ between samples."""
    if not samples:
        raise ValueError("Cannot collate an empty list of samples")
    tasks = sorted({s.task for s in samples})
    if len(tasks) > 1:
        raise ValueError(f"A batch must hold one task, got samples of tasks: {', '.join(tasks)}")
    return Batch(
        images=torch.stack([s.image for s in samples]),
        task=tasks[0],
        instructions=[s.instruction for s in samples],
        conditions=[list(s.conditions) for s in samples],
        masks=[s.masks for s in samples],
        labels=[s.labels for s in samples],
        prompts=[s.prompts for s in samples],
        prompt_types=[list(s.prompt_types) for s in samples],
        answers=[s.answer for s in samples],
        meta=[s.meta for s in samples],
    )
