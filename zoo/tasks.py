"""The task table: every task zoo knows, in one place, with how it is scored and whether it is prompted.

A task's `scoring` says how class logits are trained and read. `softmax`: logits [B, Q, K+1] over the conditions
plus a no-object column, matched with a class cost (generic segmentation). `sigmoid`: logits [B, Q, K], one
independent score per (query, condition), matched on masks only (referring and visual-prompt tasks, as PSALM
does). None: the task has no masks (text only). `prompted` tasks are conditioned on visual prompts
(`Batch.prompts`, one condition per prompt) rather than texts. Parts that keep one module per task (a condition
projection, a head's query projection) key it by `condition_group`, so tasks that read conditions alike share it.

Adding a task is one `register_task` call; nothing else names tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from zoo.registry import unknown_message

Scoring = Literal["softmax", "sigmoid"]


@dataclass(frozen=True)
class TaskSpec:
    """One task: its name, how its class logits are scored, and whether its conditions are visual prompts."""

    name: str
    scoring: Scoring | None = None
    prompted: bool = False
    group: str | None = None  # the condition group it shares per-task modules with; None: its own name

    @property
    def condition_group(self) -> str:
        return self.group or self.name

    @property
    def segments(self) -> bool:
        """Whether the task predicts masks (False: text only)."""
        return self.scoring is not None


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task to the table (a second, different spec under the same name is an error)."""
    existing = _TASKS.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"task '{spec.name}' is registered twice with different specs")
    _TASKS[spec.name] = spec
    return spec


def task_spec(name: str) -> TaskSpec:
    """The spec of task `name`; an unknown name raises with the candidates and a did-you-mean."""
    if name not in _TASKS:
        raise KeyError(unknown_message("task", name, list(_TASKS)))
    return _TASKS[name]


def task_names() -> tuple[str, ...]:
    """Every registered task, in registration order."""
    return tuple(_TASKS)


def condition_groups() -> tuple[str, ...]:
    """The condition groups of the mask tasks, in table order: the keys of per-task modules."""
    return tuple(dict.fromkeys(t.condition_group for t in _TASKS.values() if t.segments))


def is_prompted(name: str) -> bool:
    return task_spec(name).prompted


for _spec in (
    TaskSpec("panoptic", "softmax"),
    TaskSpec("referring", "sigmoid"),
    # X-SAM's visual prompts: one prompt per object (interactive) or per category, whose targets are then every
    # instance of the prompted category (vgd, visual grounded detection).
    TaskSpec("interactive", "sigmoid", prompted=True),
    TaskSpec("vgd", "sigmoid", prompted=True),
    TaskSpec("caption"),
):
    register_task(_spec)
