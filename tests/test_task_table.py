"""The task table drives evaluation: a task added with one `register_task` entry (its post-processing and a
metric) is scored, grouped per benchmark and reported without any change to the Evaluator; removing it restores the
table the model's per-task modules are built over."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from rich.console import Console
from torchmetrics.classification import BinaryJaccardIndex

from tests.test_evaluation import SIZE, logit_masks, make_batch, rect
from zoo.callbacks import results_table
from zoo.evaluation import Evaluator
from zoo.metrics.conditions import condition_masks, prompt_targets
from zoo.metrics.tasks import EvalSettings, GroupMetrics, MetricKind
from zoo.tasks import TaskSpec, condition_groups, registered_task, task_names, task_spec
from zoo.types import Batch, Prediction


def postprocess_salient(batch: Batch, pred: Prediction, settings: EvalSettings) -> list[dict]:
    """The salient object: the top-1 mask of the sample's one condition."""
    masks = condition_masks(pred, batch.images.shape[-2:], [1] * len(batch))
    return [{"masks": m, "labels": ["salient"]} for m in masks]


def update_salient(groups: Sequence[GroupMetrics], batch: Batch, results: list[dict], settings: EvalSettings) -> None:
    for b, result in enumerate(results):
        target = prompt_targets(batch.masks[b], batch.labels[b], 1)
        groups[b].metric("jaccard").update(result["masks"].long(), target.long())


SALIENT = TaskSpec(
    "salient",
    "sigmoid",
    postprocess=postprocess_salient,
    update=update_salient,
    metrics=(MetricKind("jaccard", BinaryJaccardIndex),),
)


def salient_case() -> tuple[Batch, Prediction]:
    """Two samples of benchmark "duts" and one without a benchmark. Query 0 is the top half, query 1 the left half;
    the targets are the top half (samples 0 and 2) and the top-left quarter (sample 1)."""
    top, left, quarter = rect(0, 16, 0, 32), rect(0, 32, 0, 16), rect(0, 16, 0, 16)
    batch = make_batch(
        "salient",
        [top[None], quarter[None], top[None]],
        [torch.tensor([0])] * 3,
        conditions=[["salient object"]] * 3,
        meta=[{"benchmark": "duts"}, {"benchmark": "duts"}, {}],
    )
    logits = torch.tensor([[[4.0], [-4.0]], [[-4.0], [4.0]], [[4.0], [-4.0]]])
    return batch, Prediction(logits=logits, masks=logit_masks([top, left]).expand(3, -1, -1, -1))


def test_a_registered_task_is_evaluated_and_reported() -> None:
    batch, pred = salient_case()
    with registered_task(SALIENT):
        assert "salient" in task_names()
        evaluator = Evaluator()
        results = evaluator.update(batch, pred)
        assert [r["labels"] for r in results] == [["salient"]] * 3
        out = evaluator.compute()
    # duts: pixel IoU over both samples: I = 512 + 256, U = 512 + 512; the sample without a benchmark is exact
    assert out == {"salient": {"jaccard": 1.0}, "salient/duts": {"jaccard": pytest.approx(768 / 1024)}}
    console = Console(record=True, width=120)
    console.print(results_table(out, "t"))
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in console.export_text().splitlines() if "│" in line]
    assert cells[0][:2] == ["salient", "jaccard"]
    assert ["", "100.0"] in [row[:2] for row in cells] and ["duts", "75.0"] in [row[:2] for row in cells]


def test_registered_task_leaves_the_table_as_it_was() -> None:
    before = task_names()
    with pytest.raises(RuntimeError), registered_task(SALIENT):
        raise RuntimeError("a failing test body")
    assert task_names() == before and "salient" not in task_names()
    assert condition_groups() == ("panoptic", "referring", "interactive", "vgd")  # per-task modules' keys
    with pytest.raises(ValueError, match="already registered"), registered_task(TaskSpec("referring", "sigmoid")):
        pass
    assert task_spec("referring").update is not None


def test_a_metric_kind_the_task_does_not_declare_fails_loudly() -> None:
    def update_other(groups, batch, results, settings) -> None:
        groups[0].metric("jacard")

    batch, pred = salient_case()
    with registered_task(TaskSpec("salient", "sigmoid", postprocess=postprocess_salient, update=update_other)):
        with pytest.raises(KeyError, match="metric kind of task 'salient'"):
            Evaluator().update(batch, pred)


def test_every_mask_task_is_post_processed_and_scored() -> None:
    for name in task_names():
        spec = task_spec(name)
        assert (spec.postprocess is not None and spec.update is not None) == spec.segments, name


def test_text_only_batches_are_not_scored() -> None:
    batch = make_batch("caption", [torch.zeros(0, SIZE, SIZE, dtype=torch.bool)], [torch.zeros(0, dtype=torch.long)])
    evaluator = Evaluator()
    assert evaluator.update(batch, None) == []
    assert evaluator.update(batch, None, texts=["a cat"]) == [{"text": "a cat"}]
    assert evaluator.compute() == {}
