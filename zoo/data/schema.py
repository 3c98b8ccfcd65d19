"""The unified sample schema every reader produces, and the collate that turns samples into a `Batch`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from zoo.registry import unknown_message
from zoo.tasks import task_names
from zoo.types import Batch


@dataclass
class Sample:
    """One sample in the unified schema, checked on creation so a reader bug fails where it happens.

    `labels[n]` indexes the condition (or, for interactive samples, the prompt) that `masks[n]` answers.
    `masks`, `labels` and `prompts` default to empty, so caption readers need not build them. `boxes` (target
    boxes, xyxy pixels, one per mask), `points` (the click of each prompt, xy pixels, NaN for non-point prompts)
    and `ignore` (pixels no metric scores: ADE20K's label 255, padding; losses, like Mask2Former's, train them as
    background) are optional: None when a format does not carry them; transforms keep them consistent with the
    image, and padding always marks its pixels in `ignore`.

    `meta` keys readers write and evaluation reads (each optional): `benchmark` (the results-table row, e.g.
    "refcoco_val"), `image_id` (unique per image within a benchmark: orders AP records), `iscrowd` (bool [N], COCO
    crowd regions: scored as COCO's crowd, left out of the loss), `category_ids` (long [N], each target's category;
    VGD's per-prompt category is that of its targets) and `generalized` (gRefCOCO-style referring: zero, one or
    several targets per expression).
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
    # The (question, answer) turns after the first of a multi-turn conversation, whose first turn is
    # (`instruction`, `answer`): LLaVA's conversations are trained on whole.
    follow_ups: list[tuple[str, str]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    boxes: Tensor | None = None  # [N, 4] float xyxy
    points: Tensor | None = None  # [K, 2] float xy
    ignore: Tensor | None = None  # [H, W] bool

    def __post_init__(self) -> None:
        if self.task not in task_names():
            raise ValueError(unknown_message("task", self.task, list(task_names())))
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
        if self.boxes is not None and tuple(self.boxes.shape) != (self.masks.shape[0], 4):
            raise ValueError(f"Sample has {self.masks.shape[0]} masks but boxes of shape {list(self.boxes.shape)}")
        if self.points is not None and tuple(self.points.shape) != (self.prompts.shape[0], 2):
            raise ValueError(
                f"Sample has {self.prompts.shape[0]} prompts but points of shape {list(self.points.shape)}"
            )
        if any(len(turn) != 2 or not all(isinstance(t, str) for t in turn) for turn in self.follow_ups):
            raise ValueError(f"Sample follow_ups must be (question, answer) string pairs, got {self.follow_ups}")
        if self.ignore is not None and tuple(self.ignore.shape) != (height, width):
            raise ValueError(f"Sample ignore mask must be [{height}, {width}], got {list(self.ignore.shape)}")


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
        follow_ups=[list(s.follow_ups) for s in samples],
        meta=[s.meta for s in samples],
        **{
            name: [getattr(s, name) for s in samples]
            for name in ("boxes", "points", "ignore")
            if any(getattr(s, name) is not None for s in samples)
        },
    )
