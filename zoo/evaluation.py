"""Evaluation of whatever tasks and benchmarks batches carry, as the task table (`zoo.tasks`) says each task is
post-processed and scored (the per-task functions are in `zoo.metrics.tasks`).

Metrics are grouped by `task/benchmark` (the benchmark from `meta["benchmark"]`, e.g. "refcoco_val"; plain `task`
without one), created when a group is first seen. Under DDP a rank may never see some group or prompt type, so
`compute` first agrees on the union of metrics across ranks, then computes (and syncs) them in one order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torchmetrics import Metric

from zoo.metrics.click_loop import ModelFn
from zoo.metrics.tasks import EvalSettings, sample_meta
from zoo.tasks import task_spec
from zoo.types import Batch, Prediction

Results = dict[str, dict[str, float]]
"""{group: {metric: value}}, e.g. {"referring/refcoco_val": {"ciou": 0.7, ...}}."""


class Evaluator(nn.Module):
    """Panoptic PQ / instance AP / semantic mIoU, referring cIoU / gIoU (+ N-acc / T-acc), interactive mIoU / cIoU
    per prompt type (+ NoC with simulated clicks), VGD AP per prompt type; any task the table gives an `update`.

    Args:
        object_threshold: panoptic fusion keeps queries whose class probability exceeds this (PSALM: 0.8).
        overlap_threshold: ... and that keep this share of their mask (PSALM, X-SAM: 0.8).
        instance_topk: detections per image for instance AP and VGD AP (Mask2Former: 100).
        instance_ap: compute instance AP on panoptic batches (costs an RLE encoding of every detection).
        union_threshold: gRefCOCO keeps every query whose probability exceeds this and unions their masks.
        union_fallback_top1: with no query above it, predict the top-1 query (PSALM) instead of "no target".
        num_clicks: click-simulation budget for NoC on interactive batches (papers: 20); 0 turns it off so tiny
            recipes stay fast (the loop re-runs the model up to this many times per batch).
        click_radius: radius in pixels of a click's disk prompt.
        noc_thresholds: IoU thresholds of the reported NoC.
        num_overlays: PNGs per task and epoch written to `<log_dir>/overlays` (`zoo.callbacks.Overlays`).
    """

    def __init__(
        self,
        object_threshold: float = 0.8,
        overlap_threshold: float = 0.8,
        instance_topk: int = 100,
        instance_ap: bool = True,
        union_threshold: float = 0.6,
        union_fallback_top1: bool = False,
        num_clicks: int = 0,
        click_radius: int = 3,
        noc_thresholds: tuple[float, ...] = (0.85, 0.9),
        num_overlays: int = 2,
    ) -> None:
        super().__init__()
        self.settings = EvalSettings(
            object_threshold=object_threshold,
            overlap_threshold=overlap_threshold,
            instance_topk=instance_topk,
            instance_ap=instance_ap,
            union_threshold=union_threshold,
            union_fallback_top1=union_fallback_top1,
            num_clicks=num_clicks,
            click_radius=click_radius,
            noc_thresholds=tuple(noc_thresholds),
        )
        self.num_overlays = num_overlays
        self._metrics: dict[tuple[str, str], Metric] = {}  # (group, kind[:prefix]) -> metric
        self._specs: dict[tuple[str, str], tuple[str, tuple]] = {}  # ... -> (task, arguments), for other ranks

    def bind(self, categories: list[dict] | dict[str | None, list[dict]] | None) -> None:
        """Learn the category tables (names, thing/stuff) panoptic PQ and AP need: one table for every benchmark,
        or {benchmark: table} (e.g. COCO and ADE20K-150 evaluated side by side; the key None serves benchmarks
        without their own). None leaves PQ and AP off; semantic mIoU needs no table."""
        if not categories:
            return
        tables = categories if isinstance(categories, dict) else {None: categories}
        self.settings.tables = {name: [bool(c["isthing"]) for c in table] for name, table in tables.items()}
        self.settings.names = {name: [c["name"] for c in table] for name, table in tables.items()}

    def postprocess(self, batch: Batch, pred: Prediction | None, texts: list[str] | None = None) -> list[dict]:
        """One result per sample as the task reads its prediction (`zoo.metrics.tasks`): predicted bool masks
        [N, H, W] (or None), their labels and what the task's metrics need; with `texts`, each sample's generated
        `text` too. [] when there is neither a prediction nor texts."""
        if pred is None and texts is None:
            return []
        post = task_spec(batch.task).postprocess
        if post is not None and pred is not None:
            results = post(batch, pred, self.settings)
        else:
            results = [{} for _ in range(len(batch))]
        if texts is not None:
            for result, text in zip(results, texts, strict=True):
                result["text"] = text
        return results

    def update(self, batch: Batch, pred: Prediction | None, texts: list[str] | None = None) -> list[dict]:
        """Score one batch's last-layer prediction (None: text only) and generated texts (None: not generated)
        against its targets; returns the per-sample results."""
        results = self.postprocess(batch, pred, texts)
        update = task_spec(batch.task).update
        if results and update is not None:
            update(self._groups(batch), batch, results, self.settings)
        return results

    def rerun(self, batch: Batch, model: ModelFn) -> None:
        """Score what needs `model` run again on inputs derived from the batch (interactive: simulated clicks)."""
        rerun = task_spec(batch.task).rerun
        if rerun is not None:
            rerun(self._groups(batch), batch, model, self.settings)

    def _groups(self, batch: Batch) -> list[_Group]:
        """The group of each sample: its task on its benchmark."""
        groups = []
        for b in range(len(batch)):
            benchmark = sample_meta(batch, b).get("benchmark")
            name = f"{batch.task}/{benchmark}" if benchmark else batch.task
            groups.append(_Group(self, name, batch.task, batch.images.device))
        return groups

    def _metric(self, group: str, key: str, task: str, args: tuple, device: torch.device) -> Metric:
        """Metric `key` ("kind" or "kind:prefix") of `group`, made by `task`'s declared kind on first use."""
        if (group, key) not in self._metrics:
            make = task_spec(task).metric_kind(key.partition(":")[0]).make
            self._metrics[(group, key)] = make(*args).to(device)
            self._specs[(group, key)] = (task, args)
        return self._metrics[(group, key)]

    def _agree_on_metrics(self) -> None:
        """Build, on every rank, the metrics any rank created, so all ranks compute (and sync) the same set."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        gathered: list[dict] = [{} for _ in range(dist.get_world_size())]
        dist.all_gather_object(gathered, self._specs)
        device = next(iter(self._metrics.values())).device if self._metrics else torch.device("cpu")
        for specs in gathered:
            for (group, key), (task, args) in specs.items():
                self._metric(group, key, task, args, device)

    def compute(self) -> Results:
        """Metrics of every group seen since the last call, `{group: {metric: value}}`; resets them."""
        self._agree_on_metrics()
        out: Results = {}
        for group, key in sorted(self._metrics):
            kind, _, prefix = key.partition(":")
            values = _values(kind, self._metrics[(group, key)].compute())
            report = task_spec(self._specs[(group, key)][0]).metric_kind(kind).report
            values = report(values) if report is not None else values
            out.setdefault(group, {}).update({f"{prefix + '_' if prefix else ''}{k}": v for k, v in values.items()})
        self._metrics.clear()
        self._specs.clear()
        return {group: dict(sorted(metrics.items())) for group, metrics in out.items()}


def _values(kind: str, computed: dict | Tensor | float) -> dict[str, float]:
    """A metric's outputs by name, as floats: a dict as it is, a single value (a plain torchmetrics metric's)
    under its kind's name."""
    items = computed.items() if isinstance(computed, dict) else [(kind, computed)]
    return {name: float(value) for name, value in items}


@dataclass
class _Group:
    """One group's view of the evaluator's metrics, handed to the task table's update functions."""

    evaluator: Evaluator
    name: str
    task: str
    device: torch.device

    def metric(self, kind: str, *args: object, prefix: str = "") -> Metric:
        key = f"{kind}:{prefix}" if prefix else kind
        return self.evaluator._metric(self.name, key, self.task, args, self.device)
