"""Evaluation pieces against hand-computed numbers."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger
from PIL import Image
from rich.console import Console

from zoo.callbacks import Overlays, ResultsTable, flat_results, results_table, save_overlay
from zoo.metrics import (
    VOID,
    MaskIoU,
    PanopticMetric,
    panoptic_fusion,
    referring_top1,
    target_pairs_from_masks,
    to_panoptic_pairs,
)
from zoo.types import Batch


def grid(h: int, w: int, pixels: list[tuple[int, int]]) -> torch.Tensor:
    mask = torch.zeros(h, w, dtype=torch.bool)
    for y, x in pixels:
        mask[y, x] = True
    return mask


# ---------------------------------------------------------------- MaskIoU


def two_samples() -> tuple[torch.Tensor, torch.Tensor]:
    """4x4 images. Sample 1: target rows 0-1 (8 px), pred row 0 -> I=4, U=8, IoU 1/2.
    Sample 2: target (0,0), pred row 0 -> I=1, U=4, IoU 1/4."""
    target = torch.stack([grid(4, 4, [(y, x) for y in range(2) for x in range(4)]), grid(4, 4, [(0, 0)])])
    pred = torch.stack([grid(4, 4, [(0, x) for x in range(4)])] * 2)
    return pred, target


def test_ciou_and_giou_differ() -> None:
    metric = MaskIoU()
    metric.update(*two_samples())
    out = metric.compute()
    assert out["ciou"] == pytest.approx(5 / 12)
    assert out["giou"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    # whole image: I = |target|, U = 16 -> 8/16 and 1/16
    assert out["ciou_whole_image"] == pytest.approx(9 / 32)
    assert out["giou_whole_image"] == pytest.approx((8 / 16 + 1 / 16) / 2)
    assert all(isinstance(v, float) for v in out.values())


def test_updates_accumulate() -> None:
    pred, target = two_samples()
    split = MaskIoU()
    split.update(pred[:1], target[:1])
    split.update(pred[1:], target[1:])
    whole = MaskIoU()
    whole.update(pred, target)
    assert split.compute() == pytest.approx(whole.compute())


@pytest.mark.parametrize("empty_iou", [1.0, 0.0])
def test_empty_prediction_of_empty_target(empty_iou: float) -> None:
    pred, target = two_samples()
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    metric = MaskIoU(empty_iou=empty_iou)
    metric.update(torch.cat([pred, empty]), torch.cat([target, empty]))
    out = metric.compute()
    assert out["giou"] == pytest.approx((1 / 2 + 1 / 4 + empty_iou) / 3)
    assert out["ciou"] == pytest.approx(5 / 12)  # adds nothing to I or U
    # the whole image against an empty target: I = 0, U = 16
    assert out["ciou_whole_image"] == pytest.approx(9 / 48)
    assert out["giou_whole_image"] == pytest.approx((8 / 16 + 1 / 16 + 0) / 3)


def test_mask_iou_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        MaskIoU().update(torch.zeros(1, 4, 4, dtype=torch.bool), torch.zeros(1, 4, 5, dtype=torch.bool))


# ---------------------------------------------------------------- postprocessing


def test_referring_top1_weighs_mask_quality() -> None:
    masks = torch.full((3, 2, 2), -5.0)
    masks[0, 0, 0] = 0.1  # vague: sigmoid(3) * sigmoid(0.1) = 0.953 * 0.525 = 0.50
    masks[1, 0] = 5.0  # crisp: sigmoid(1) * sigmoid(5) = 0.731 * 0.993 = 0.73
    masks[2] = 10.0  # crisp but unlikely: sigmoid(-5) * 1 = 0.007
    scores = torch.tensor([3.0, 1.0, -5.0])
    out = referring_top1(scores, masks)
    assert out.dtype == torch.bool
    assert torch.equal(out, torch.tensor([[True, True], [False, False]]))


def columns(q: int, h: int, w: int, cols: dict[int, dict[int, float]]) -> torch.Tensor:
    """Mask logits [q, h, w], -5 everywhere except the given {query: {column: logit}}."""
    masks = torch.full((q, h, w), -5.0)
    for k, by_col in cols.items():
        for col, logit in by_col.items():
            masks[k, :, col] = logit
    return masks


def fusion_case() -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
    """4x4 image, categories: 0 = person (thing), 1 = sky (stuff). Query by query:
    q0 person, confident, columns 0-1; q1 and q2 sky, confident, column 3 top and bottom half (merge);
    q3 unsure (p ~ 0.5, dropped); q4 no-object (dropped); q5 person, confident, columns 0-2 but only wins
    column 2 (loses columns 0-1 to q0's higher class score): 4/12 < 0.8, dropped."""
    class_logits = torch.tensor([[10.0, 0, 0], [0, 10.0, 0], [0, 10.0, 0], [1.0, 0.5, 0], [0, 0, 10.0], [8.0, 0, 0]])
    masks = columns(6, 4, 4, {0: {0: 5, 1: 5}, 3: {c: 5 for c in range(4)}, 4: {c: 5 for c in range(4)}})
    masks[1, :2, 3] = 5
    masks[2, 2:, 3] = 5
    masks[5, :, :3] = 5
    masks[5, :, 2] = 8
    return class_logits, masks, [True, False]


def test_panoptic_fusion() -> None:
    class_logits, masks, is_thing = fusion_case()
    segment_map, segments = panoptic_fusion(class_logits, masks, is_thing)
    expected = torch.tensor([[1, 1, 0, 2]] * 4)
    assert torch.equal(segment_map, expected)
    assert [(s["id"], s["category"], s["isthing"]) for s in segments] == [(1, 0, True), (2, 1, False)]
    assert segments[0]["score"] == pytest.approx(class_logits[0].softmax(-1)[0].item())
    assert segments[1]["score"] == pytest.approx(class_logits[1].softmax(-1)[1].item())


def test_panoptic_fusion_overlap_threshold_keeps_partial_query() -> None:
    class_logits, masks, is_thing = fusion_case()
    segment_map, segments = panoptic_fusion(class_logits, masks, is_thing, overlap_threshold=0.3)
    assert torch.equal(segment_map, torch.tensor([[1, 1, 3, 2]] * 4))
    assert [(s["id"], s["category"]) for s in segments] == [(1, 0), (2, 1), (3, 0)]


def test_panoptic_fusion_nothing_confident() -> None:
    segment_map, segments = panoptic_fusion(torch.zeros(3, 3), torch.ones(3, 2, 2), [True, False])
    assert segments == [] and not segment_map.any()


def test_to_panoptic_pairs() -> None:
    class_logits, masks, is_thing = fusion_case()
    pairs = to_panoptic_pairs(*panoptic_fusion(class_logits, masks, is_thing))
    assert pairs.shape == (4, 4, 2) and pairs.dtype == torch.long
    assert pairs[0].tolist() == [[0, 1], [0, 1], [VOID, 0], [1, 0]]


# ---------------------------------------------------------------- panoptic quality


def test_target_pairs_from_masks() -> None:
    masks = torch.stack([grid(2, 3, [(0, 0)]), grid(2, 3, [(1, 0)]), grid(2, 3, [(0, 2), (1, 2)])])
    pairs = target_pairs_from_masks(masks, torch.tensor([0, 0, 1]), [True, False])
    assert pairs.tolist() == [[[0, 1], [VOID, 0], [1, 0]], [[0, 2], [VOID, 0], [1, 0]]]


def pq_case() -> tuple[torch.Tensor, torch.Tensor]:
    """A 1x20 image; categories 0 = thing, 1 = stuff.
    Target: thing A on px 0-4, void 5-9, stuff on 10-19.
    Pred: thing on px 0-2 (I=3, U=5: IoU 0.6, pred void on A's px 3-4 counts, as in panopticapi), void 3-9,
    a second thing on 10-12 (FP), stuff on 13-19 (I=7, U=10: IoU 0.7).
    Thing: SQ 0.6, RQ 1 / (1 + 0.5) = 2/3, PQ 0.4. Stuff: SQ 0.7, RQ 1, PQ 0.7."""
    target = torch.tensor([[0, 1]] * 5 + [[VOID, 0]] * 5 + [[1, 0]] * 10)
    pred = torch.tensor([[0, 1]] * 3 + [[VOID, 0]] * 7 + [[0, 2]] * 3 + [[1, 0]] * 7)
    return pred.view(1, 1, 20, 2), target.view(1, 1, 20, 2)


def test_pq_hand_computed() -> None:
    metric = PanopticMetric([True, False])
    metric.update(*pq_case())
    out = metric.compute()
    assert out["pq"] == pytest.approx((0.4 + 0.7) / 2)
    assert out["sq"] == pytest.approx((0.6 + 0.7) / 2)
    assert out["rq"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["pq_things"] == pytest.approx(0.4)
    assert out["pq_stuff"] == pytest.approx(0.7)


def test_pq_perfect() -> None:
    _, target = pq_case()
    metric = PanopticMetric([True, False])
    metric.update(target, target)
    assert metric.compute() == pytest.approx({"pq": 1.0, "sq": 1.0, "rq": 1.0, "pq_things": 1.0, "pq_stuff": 1.0})


def test_pq_counts_predicted_void_as_missed() -> None:
    """torchmetrics alone would score these 1.0 and NaN; panopticapi scores 0 (IoU 0.5 is no match)."""
    target = torch.tensor([[0, 1]] * 10).view(1, 1, 10, 2)
    half = target.clone()
    half[0, 0, 5:] = torch.tensor([VOID, 0])
    empty = torch.full_like(target, 0)
    empty[..., 0] = VOID
    for pred in (half, empty):
        metric = PanopticMetric([True, False])
        metric.update(pred, target)
        assert metric.compute()["pq"] == 0.0


def test_pq_empty_is_nan() -> None:
    metric = PanopticMetric([True])
    empty = torch.full((1, 2, 2, 2), 0)
    empty[..., 0] = VOID
    metric.update(empty, empty)
    assert math.isnan(metric.compute()["pq"])


# ---------------------------------------------------------------- overlays


def test_save_overlay(tmp_path) -> None:
    image = torch.full((3, 8, 16), 0.5)
    masks = torch.zeros(2, 8, 16, dtype=torch.bool)
    masks[0, :4, :4] = True
    masks[1, 4:, 8:] = True
    path = tmp_path / "sub" / "overlay.png"
    save_overlay(path, image, masks, ["cat", "sky"], title="sample 0")
    png = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).int()
    scale = 256 // 8  # nearest-neighbour upscaling to >= 256 px on the short side
    side_w = 16 * scale
    assert png.shape[0] > 8 * scale and png.shape[1] > 2 * side_w  # text strip below, gap between
    left, right = png[: 8 * scale, :side_w], png[: 8 * scale, -side_w:]
    assert (left == 128).all()  # plain image untouched
    upscaled = torch.nn.functional.interpolate(masks[None].float(), scale_factor=scale)[0].bool()
    changed = (right != left).any(-1)
    assert changed[upscaled.any(0)].all() and not changed[~upscaled.any(0)].any()
    assert not torch.equal(right[upscaled[0]][0], right[upscaled[1]][0])  # distinct colours
    again = tmp_path / "again.png"
    save_overlay(again, image, masks, ["cat", "sky"], title="sample 0")
    assert again.read_bytes() == path.read_bytes()


def test_save_overlay_checks_labels(tmp_path) -> None:
    with pytest.raises(ValueError):
        save_overlay(tmp_path / "x.png", torch.zeros(3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.bool), ["one"])


def overlay_batch(task: str, count: int) -> Batch:
    images = torch.rand(count, 3, 8, 8, generator=torch.Generator().manual_seed(count))
    empty = torch.zeros(0, 8, 8, dtype=torch.bool)
    return Batch(images, task, [f"{task} {b}" for b in range(count)], [[]] * count, [empty] * count, [])


def test_overlays_callback_draws_the_first_sample_of_the_first_batches_per_task(tmp_path) -> None:
    """What the evaluation step returned (the evaluator's per-sample results) is drawn, as `save_overlay` draws it,
    for the first `num_overlays` batches of each task per epoch; never during the sanity check or off rank 0."""
    trainer = SimpleNamespace(
        is_global_zero=True, sanity_checking=False, current_epoch=3, loggers=[], default_root_dir=str(tmp_path)
    )
    callback = Overlays(num_overlays=2)
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, 2:6, 2:6] = True
    referring = [{"masks": masks, "labels": ["the cat"]}, {"masks": ~masks, "labels": ["the rest"]}]
    callback.on_validation_epoch_start(trainer, None)
    for index in range(3):
        callback.on_validation_batch_end(trainer, None, referring, overlay_batch("referring", 2), index)
    callback.on_validation_batch_end(trainer, None, [{"masks": None, "labels": []}], overlay_batch("panoptic", 1), 0)
    callback.on_validation_batch_end(trainer, None, [], overlay_batch("caption", 1), 0)  # no masks, no overlay
    folder = tmp_path / "overlays"
    names = ["epoch003_panoptic_0.png", "epoch003_referring_0.png", "epoch003_referring_1.png"]
    assert sorted(p.name for p in folder.iterdir()) == names
    batch = overlay_batch("referring", 2)
    save_overlay(tmp_path / "expected.png", batch.images[0], masks, ["the cat"], title="referring: referring 0")
    assert (folder / names[1]).read_bytes() == (tmp_path / "expected.png").read_bytes()
    save_overlay(
        tmp_path / "plain.png", overlay_batch("panoptic", 1).images[0], masks[:0], [], title="panoptic: panoptic 0"
    )
    assert (folder / names[0]).read_bytes() == (tmp_path / "plain.png").read_bytes()

    trainer.current_epoch, trainer.sanity_checking = 4, True
    callback.on_validation_epoch_start(trainer, None)
    callback.on_validation_batch_end(trainer, None, referring, overlay_batch("referring", 2), 0)
    trainer.sanity_checking, trainer.is_global_zero = False, False
    callback.on_test_batch_end(trainer, None, referring, overlay_batch("referring", 2), 0)
    assert len(list(folder.iterdir())) == 3
    trainer.is_global_zero = True
    callback.on_test_epoch_start(trainer, None)
    callback.on_test_batch_end(trainer, None, referring, overlay_batch("referring", 2), 0)
    assert (folder / "epoch004_referring_0.png").exists()


# ---------------------------------------------------------------- results table


def test_flat_results() -> None:
    results = {"referring/refcocog": {"giou": 0.3, "ciou": 0.5}, "panoptic": {"pq": 0.25}}
    assert flat_results(results, "val/") == {
        "val/referring/refcocog/giou": 0.3,
        "val/referring/refcocog/ciou": 0.5,
        "val/panoptic/pq": 0.25,
    }
    assert flat_results(results) == {k.removeprefix("val/"): v for k, v in flat_results(results, "val/").items()}


class LoggingModel(BoringModel):
    """Leaves fake results where a real module does (`results`, set in its own epoch end), with a loss logged per
    step that is not a result."""

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", 1.5)
        return super().validation_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self.results = {"referring": {"ciou": 0.5, "ciou_whole_image": 0.125}, "panoptic": {"pq": 0.25}}

    def on_test_epoch_end(self) -> None:
        self.results = {"interactive": {"miou": 0.75}}


class CountingResults(ResultsTable):
    writes = 0

    def _write(self, path) -> None:
        self.writes += 1
        super()._write(path)


def test_results_table_writes_json(tmp_path, capsys) -> None:
    callback = CountingResults()
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        logger=CSVLogger(tmp_path),
        callbacks=[callback],
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=2,
        limit_test_batches=2,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
    )
    model = LoggingModel()
    trainer.fit(model)
    assert callback.writes == 1  # the sanity check is not recorded
    results = json.loads((tmp_path / "lightning_logs" / "version_0" / "results.json").read_text())
    assert results == {
        "metrics": {"referring": {"ciou": 0.5, "ciou_whole_image": 0.125}, "panoptic": {"pq": 0.25}},
        "epoch": 0,
        "step": 2,
    }
    printed = capsys.readouterr().out
    assert "referring" in printed and "50.0" in printed and "12.5" in printed

    trainer.test(model, verbose=False)
    test_results = json.loads((tmp_path / "lightning_logs" / "version_0" / "test_results.json").read_text())
    assert test_results["metrics"] == {"interactive": {"miou": 0.75}}
    assert "75.0" in capsys.readouterr().out


def test_results_table_is_benchmark_by_metric() -> None:
    results = {
        "referring/refcoco_val": {"giou": 0.5, "ciou": 0.836},
        "referring/refcoco_testA": {"ciou": 0.847, "giou": 0.6},
        "interactive": {"noc85": 3.25, "miou": 0.64},
    }
    console = Console(record=True, width=120)
    console.print(results_table(results, "t"))
    lines = [line for line in console.export_text().splitlines() if "│" in line]
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in lines]
    assert cells[0][:3] == ["referring", "ciou", "giou"]  # the papers' column order, not alphabetical by row
    assert cells[1][:3] == ["refcoco_val", "83.6", "50.0"] and cells[2][:3] == ["refcoco_testA", "84.7", "60.0"]
    assert cells[3][:3] == ["interactive", "miou", "noc85"] and cells[4][1:3] == ["64.0", "3.25"]  # NoC in clicks
