"""The task table: every task zoo knows, in one place, with how it is scored, whether it is prompted, and how it
is evaluated.

A task's `scoring` says how class logits are trained and read. `softmax`: logits [B, Q, K+1] over the conditions
plus a no-object column, matched with a class cost (generic segmentation). `sigmoid`: logits [B, Q, K], one
independent score per (query, condition), matched on masks only (referring and visual-prompt tasks, as PSALM
does). None: the task has no masks (text only). `prompted` tasks are conditioned on visual prompts
(`Batch.prompts`, one condition per prompt) rather than texts. Parts that keep one module per task (a condition
projection, a head's query projection) key it by `condition_group`, so tasks that read conditions alike share it.

Evaluation (`zoo.evaluation.Evaluator`) reads the rest: `postprocess` turns a batch's last-layer prediction into
per-sample results, `update` scores them into the metrics of each sample's group (task and benchmark), asking
for the kinds `metrics` declares, and `rerun` scores what needs the model run again (NoC's simulated clicks). The
functions live in `zoo.metrics.tasks`; a task without `update` is not scored.

Adding a task is one `register_task` call; nothing else names tasks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from zoo.metrics import ClickMetric, MaskAP, MaskIoU, PanopticMetric, SemanticIoU
from zoo.metrics.tasks import (
    MetricKind,
    PostProcess,
    Rerun,
    Update,
    papers_miou,
    postprocess_panoptic,
    postprocess_prompts,
    postprocess_referring,
    postprocess_vgd,
    update_clicks,
    update_interactive,
    update_panoptic,
    update_referring,
    update_vgd,
)
from zoo.registry import unknown_message

Scoring = Literal["softmax", "sigmoid"]


@dataclass(frozen=True)
class TaskSpec:
    """One task: how its class logits are scored, whether its conditions are visual prompts, and its evaluation."""

    name: str
    scoring: Scoring | None = None
    prompted: bool = False
    group: str | None = None  # the condition group it shares per-task modules with; None: its own name
    postprocess: PostProcess | None = None
    update: Update | None = None
    metrics: tuple[MetricKind, ...] = ()
    rerun: Rerun | None = None

    @property
    def condition_group(self) -> str:
        return self.group or self.name

    @property
    def segments(self) -> bool:
        """Whether the task predicts masks (False: text only)."""
        return self.scoring is not None

    def metric_kind(self, name: str) -> MetricKind:
        """The declared metric kind `name`; an undeclared one raises with the task's kinds."""
        for kind in self.metrics:
            if kind.name == name:
                return kind
        raise KeyError(unknown_message(f"metric kind of task '{self.name}'", name, [k.name for k in self.metrics]))


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task to the table (a second, different spec under the same name is an error)."""
    existing = _TASKS.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"task '{spec.name}' is registered twice with different specs")
    _TASKS[spec.name] = spec
    return spec


@contextmanager
def registered_task(spec: TaskSpec) -> Iterator[TaskSpec]:
    """`spec` in the table for the duration of a `with` block (a task added by a test or an experiment), then
    removed, so what runs afterwards sees the table as it was."""
    if spec.name in _TASKS:
        raise ValueError(f"task '{spec.name}' is already registered")
    register_task(spec)
    try:
        yield spec
    finally:
        del _TASKS[spec.name]


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
    TaskSpec(
        "panoptic",
        "softmax",
        postprocess=postprocess_panoptic,
        update=update_panoptic,
        metrics=(MetricKind("semantic", SemanticIoU), MetricKind("pq", PanopticMetric), MetricKind("ap", MaskAP)),
    ),
    TaskSpec(
        "referring",
        "sigmoid",
        postprocess=postprocess_referring,
        update=update_referring,
        metrics=(MetricKind("iou", MaskIoU),),
    ),
    # X-SAM's visual prompts: one prompt per object (interactive) or per category, whose targets are then every
    # instance of the prompted category (vgd, visual grounded detection).
    TaskSpec(
        "interactive",
        "sigmoid",
        prompted=True,
        postprocess=postprocess_prompts,
        update=update_interactive,
        metrics=(MetricKind("iou", MaskIoU, report=papers_miou), MetricKind("clicks", ClickMetric)),
        rerun=update_clicks,
    ),
    TaskSpec(
        "vgd",
        "sigmoid",
        prompted=True,
        postprocess=postprocess_vgd,
        update=update_vgd,
        metrics=(MetricKind("ap", MaskAP),),
    ),
    TaskSpec("caption"),
):
    register_task(_spec)
