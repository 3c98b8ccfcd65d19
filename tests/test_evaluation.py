"""The Evaluator end to end on hand-built batches and predictions: keys per task and benchmark, values equal to
the metrics computed directly, gRefCOCO no-target handling, the click loop, crowd and ignore regions."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.evaluation import Evaluator
from zoo.metrics import Click, MaskIoU, click_masks
from zoo.types import Batch, Prediction

SIZE = 32
CATEGORIES = [{"name": "cat", "isthing": 1}, {"name": "dog", "isthing": 1}, {"name": "sky", "isthing": 0}]


def rect(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def logit_masks(masks: list[torch.Tensor]) -> torch.Tensor:
    """Confident mask logits [Q, H, W] reproducing bool masks."""
    return torch.stack([torch.where(m, 6.0, -6.0) for m in masks])


def make_batch(
    task: str, masks, labels, *, prompts=None, prompt_types=None, conditions=None, meta=None, ignore=None
) -> Batch:
    b = len(masks)
    return Batch(
        images=torch.zeros(b, 3, SIZE, SIZE),
        task=task,
        instructions=[""] * b,
        conditions=conditions or [[] for _ in range(b)],
        masks=masks,
        labels=labels,
        prompts=prompts or [torch.zeros(0, SIZE, SIZE, dtype=torch.bool) for _ in range(b)],
        prompt_types=prompt_types or [[] for _ in range(b)],
        meta=meta or [{} for _ in range(b)],
        ignore=ignore,
    )


# ---------------------------------------------------------------- referring / gRefCOCO


def referring_case() -> tuple[Batch, Prediction]:
    """Two expressions on benchmark "refcoco_val". Query 0 predicts the top half, query 1 the left half; the
    expression logits pick query 0 for sample 0 and query 1 for sample 1."""
    top, left = rect(0, 16, 0, 32), rect(0, 32, 0, 16)
    batch = make_batch(
        "referring",
        [top[None], rect(0, 8, 0, 32)[None]],
        [torch.tensor([0]), torch.tensor([0])],
        conditions=[["the top"], ["the strip"]],
        meta=[{"benchmark": "refcoco_val"}] * 2,
    )
    masks = logit_masks([top, left]).expand(2, -1, -1, -1)
    logits = torch.tensor([[[4.0], [-4.0]], [[-4.0], [4.0]]])
    return batch, Prediction(logits=logits, masks=masks)


def test_referring_keys_and_values() -> None:
    batch, pred = referring_case()
    evaluator = Evaluator()
    evaluator.update(batch, pred)
    out = evaluator.compute()
    # sample 0: exact (I = U = 512); sample 1: pred left half vs the top 8 rows: I = 128, U = 512 + 256 - 128
    assert out["referring/refcoco_val"]["giou"] == pytest.approx((1 + 128 / 640) / 2)
    assert out["referring/refcoco_val"]["ciou"] == pytest.approx((512 + 128) / (512 + 640))
    assert "n_acc" not in out["referring/refcoco_val"]  # no no-target expression on RefCOCO
    assert evaluator.compute() == {}  # reset


def test_grefcoco_threshold_union_and_no_target() -> None:
    """Sample 0 names two objects (queries 0 and 1 both above 0.6: union, exact). Sample 1 has no target and no
    query above 0.6: empty, a correct "no target". Sample 2 has no target but query 2 fires: wrong, IoU 0."""
    a, b, c = rect(0, 8, 0, 8), rect(20, 28, 20, 28), rect(10, 14, 10, 14)
    none = torch.zeros(0, SIZE, SIZE, dtype=torch.bool)
    batch = make_batch(
        "referring",
        [torch.stack([a, b]), none, none],
        [torch.tensor([0, 0]), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)],
        conditions=[["both"], ["nothing"], ["nothing either"]],
        meta=[{"benchmark": "grefcoco_val", "generalized": True}] * 3,
    )
    masks = logit_masks([a, b, c]).expand(3, -1, -1, -1)
    logits = torch.tensor([[[3.0], [3.0], [-3.0]], [[0.0], [0.2], [-3.0]], [[-3.0], [-3.0], [3.0]]])
    evaluator = Evaluator()
    evaluator.update(batch, Prediction(logits=logits, masks=masks))
    out = evaluator.compute()
    assert out["referring/grefcoco_val"]["giou"] == pytest.approx((1 + 1 + 0) / 3)
    assert out["referring/grefcoco_val"]["ciou"] == pytest.approx(128 / (128 + 16))
    assert out["referring/grefcoco_val"]["n_acc"] == pytest.approx(1 / 2)
    assert out["referring/grefcoco_val"]["t_acc"] == pytest.approx(1.0)
    # PSALM's fallback to the top-1 query never predicts "no target"
    fallback = Evaluator(union_fallback_top1=True)
    fallback.update(batch, Prediction(logits=logits, masks=masks))
    assert fallback.compute()["referring/grefcoco_val"]["n_acc"] == 0.0


def test_ignore_region_is_left_out() -> None:
    batch, pred = referring_case()
    batch.ignore = [rect(0, 32, 16, 32)] * len(batch)  # the right half, in the schema's field
    evaluator = Evaluator()
    evaluator.update(batch, pred)
    out = evaluator.compute()
    reference = MaskIoU()
    left = rect(0, 32, 0, 16)
    reference.update(torch.stack([rect(0, 16, 0, 16), left]), torch.stack([rect(0, 16, 0, 16), rect(0, 8, 0, 16)]))
    assert out["referring/refcoco_val"]["giou"] == pytest.approx(reference.compute()["giou"])


# ---------------------------------------------------------------- interactive


def interactive_case() -> tuple[Batch, Prediction]:
    """One sample, three prompts (point, box, point) for three objects; queries reproduce the objects, the
    third prompt picks the wrong query."""
    objects = [rect(0, 8, 0, 8), rect(10, 20, 10, 20), rect(24, 32, 0, 32)]
    batch = make_batch(
        "interactive",
        [torch.stack(objects)],
        [torch.tensor([0, 1, 2])],
        prompts=[torch.stack([rect(2, 3, 2, 3), rect(10, 20, 10, 20), rect(28, 29, 5, 6)])],
        prompt_types=[["point", "box", "point"]],
    )
    logits = torch.tensor([[[5.0, -5, -5], [-5, 5, 5], [-5, -5, -5]]])
    return batch, Prediction(logits=logits, masks=logit_masks(objects)[None])


def test_interactive_per_prompt_type() -> None:
    batch, pred = interactive_case()
    evaluator = Evaluator()
    evaluator.update(batch, pred)
    out = evaluator.compute()
    assert out["interactive"]["point_miou"] == pytest.approx(0.5)  # 1 and 0 (box mask vs the strip: no overlap)
    assert out["interactive"]["box_miou"] == 1.0
    assert out["interactive"]["miou"] == pytest.approx(2 / 3)
    assert out["interactive"]["point_ciou"] == pytest.approx(64 / (64 + 100 + 256))
    assert "noc85" not in out["interactive"]  # clicks are off by default


class ClickModel:
    """A model that segments, for each prompt, the objects under its positive clicks minus its negative disks
    (query k answers prompt k), and records the batches it is given."""

    def __init__(self, objects: list[torch.Tensor]) -> None:
        self.objects = objects
        self.batches: list[Batch] = []

    def segment(self, positive: torch.Tensor, negative: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        hit = [o for o in self.objects if (o & positive).any()]
        return (torch.stack(hit).any(0) if hit else torch.zeros_like(positive)) & ~negative

    def __call__(self, batch: Batch) -> Prediction:
        self.batches.append(batch)
        masks, logits = [], []
        for b, (positive, negative) in enumerate(zip(batch.prompts, batch.negative_prompts, strict=True)):
            previous = batch.previous_masks[b] if batch.previous_masks is not None else [None] * len(positive)
            masks.append(logit_masks([self.segment(*args) for args in zip(positive, negative, previous, strict=True)]))
            logits.append(torch.eye(len(positive)) * 10 - 5)
        return Prediction(logits=torch.stack(logits), masks=torch.stack(masks))


def test_click_loop_noc() -> None:
    batch, _ = interactive_case()
    model = ClickModel([rect(0, 8, 0, 8), rect(10, 20, 10, 20), rect(24, 32, 0, 32)])
    evaluator = Evaluator(num_clicks=20, click_radius=1)
    evaluator.rerun(batch, model)
    out = evaluator.compute()
    assert out["interactive"]["noc85"] == 1.0 and out["interactive"]["noc90"] == 1.0
    assert out["interactive"]["miou_1click"] == 1.0
    assert len(model.batches) == 1  # one forward pass for the three targets of the image
    first = model.batches[0]
    assert len(first) == 1 and first.previous_masks is None and first.prompt_types == [["point"] * 3]
    expected, _ = click_masks([Click(3, 3, True)], (SIZE, SIZE), 1)
    assert torch.equal(first.prompts[0][0], expected)
    assert not first.negative_prompts[0].any()


def test_click_loop_refines_with_negative_clicks() -> None:
    """Clicked, the model returns two touching squares; the second click is negative, at the centre of the
    spurious one, and removes it: IoU 0.5 then 1.0, so NoC@85 = 2."""
    target, extra = rect(0, 16, 0, 16), rect(0, 16, 16, 32)

    class Merged(ClickModel):
        def segment(self, positive, negative, previous):
            return target if negative.any() else target | extra

    batch = make_batch(
        "interactive", [target[None]], [torch.tensor([0])], prompts=[rect(0, 1, 0, 1)[None]], prompt_types=[["box"]]
    )
    model = Merged([])
    evaluator = Evaluator(num_clicks=20)
    evaluator.rerun(batch, model)
    out = evaluator.compute()
    assert out["interactive"]["noc85"] == 2.0 and out["interactive"]["miou_1click"] == pytest.approx(0.5)
    second = model.batches[1]
    assert torch.equal(second.previous_masks[0][0], target | extra)
    assert second.negative_prompts[0][0, 7, 23]  # the click at the centre of the spurious square
    assert len(model.batches) == 2  # exact after click 2: the session stops


# ---------------------------------------------------------------- panoptic, instance AP, semantic


def panoptic_case(perfect: bool) -> tuple[Batch, Prediction]:
    """cat (thing), dog (thing), sky (stuff), a crowd of cats, an ignored column. Queries 0-2 reproduce cat, dog,
    sky; query 3 is a cat on the crowd region; query 4 is no-object. With `perfect` False the dog query says
    "cat" (a dog is missed, a cat is a false positive). Class logits differ per query so no scores tie."""
    cat, dog, sky, crowd = rect(0, 10, 0, 10), rect(12, 22, 12, 22), rect(24, 32, 0, 32), rect(0, 10, 20, 30)
    meta = {
        "benchmark": "coco_val",
        "image_id": 7,
        "iscrowd": torch.tensor([0, 0, 0, 1]),
    }
    batch = make_batch(
        "panoptic",
        [torch.stack([cat, dog, sky, crowd])],
        [torch.tensor([0, 1, 2, 0])],
        conditions=[[c["name"] for c in CATEGORIES]],
        meta=[meta],
        ignore=[rect(0, 32, 31, 32)],
    )
    logits = torch.full((5, 4), -5.0)
    logits[0, 0], logits[2, 2], logits[3, 0], logits[4, 3] = 6.0, 5.0, 4.0, 5.0
    logits[1, 1 if perfect else 0] = 5.0
    masks = logit_masks([cat, dog, sky, crowd, torch.zeros_like(cat)])
    return batch, Prediction(logits=logits[None], masks=masks[None])


def test_panoptic_perfect_with_crowd_and_ignore() -> None:
    evaluator = Evaluator()
    evaluator.bind(CATEGORIES)
    evaluator.update(*panoptic_case(perfect=True))
    out = evaluator.compute()
    for key in ("pq", "sq", "rq", "pq_things", "pq_stuff", "ap", "ap50", "miou", "pacc"):
        assert out["panoptic/coco_val"][key] == pytest.approx(1.0), key
    assert math.isnan(out["panoptic/coco_val"]["ap_large"])  # no large object in a 32 px image


def test_panoptic_mistake() -> None:
    evaluator = Evaluator(instance_topk=2)  # the two best (query, category) pairs: queries 0 and 1 as "cat"
    evaluator.bind(CATEGORIES)
    evaluator.update(*panoptic_case(perfect=False))
    out = evaluator.compute()
    # cat: TP (the query on the crowd is ignored) + FP (the dog predicted as cat): RQ 1/1.5; dog: FN; sky exact
    assert out["panoptic/coco_val"]["pq_things"] == pytest.approx((1 / 1.5 + 0) / 2)
    assert out["panoptic/coco_val"]["pq_stuff"] == 1.0
    assert out["panoptic/coco_val"]["ap50"] == pytest.approx(0.5)  # cat found first (AP 1), dog never (AP 0)
    # semantic, right column ignored: cat 200 px (with the crowd) + the dog's 100 px predicted cat -> IoU 2/3;
    # dog IoU 0; sky (248 px) exact
    assert out["panoptic/coco_val"]["miou"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert out["panoptic/coco_val"]["pacc"] == pytest.approx((200 + 248) / (300 + 248))


def test_panoptic_without_category_table_scores_semantic_only() -> None:
    evaluator = Evaluator()
    evaluator.update(*panoptic_case(perfect=True))
    out = evaluator.compute()
    assert set(out) == {"panoptic/coco_val"} and set(out["panoptic/coco_val"]) == {"miou", "pacc"}


# ---------------------------------------------------------------- VGD


def test_vgd_ap_per_prompt_type() -> None:
    """Two prompts: a point asking for both cats (queries 0, 1 find them) and a box asking for the dog (query 2
    finds a wrong region)."""
    cat1, cat2, dog = rect(0, 10, 0, 10), rect(0, 10, 20, 30), rect(20, 30, 0, 10)
    batch = make_batch(
        "vgd",
        [torch.stack([cat1, cat2, dog])],
        [torch.tensor([0, 0, 1])],
        prompts=[torch.stack([rect(2, 3, 2, 3), rect(20, 30, 0, 10)])],
        prompt_types=[["point", "box"]],
        meta=[{"image_id": 1, "category_ids": torch.tensor([0, 0, 1])}],
    )
    logits = torch.tensor([[[5.0, -5], [5, -5], [-5, 5]]])
    masks = logit_masks([cat1, cat2, rect(20, 30, 20, 30)])[None]
    evaluator = Evaluator()
    evaluator.update(batch, Prediction(logits=logits, masks=masks))
    out = evaluator.compute()
    assert out["vgd"]["point_ap50"] == pytest.approx(1.0)
    assert out["vgd"]["box_ap50"] == 0.0
    assert out["vgd"]["ap50"] == pytest.approx(0.5)


def test_empty_batch_predictions_and_targets() -> None:
    """A referring batch with no expressions and an interactive sample without prompts add nothing."""
    none = torch.zeros(0, SIZE, SIZE, dtype=torch.bool)
    batch = make_batch("interactive", [none], [torch.zeros(0, dtype=torch.long)])
    evaluator = Evaluator(num_clicks=5)
    evaluator.update(batch, Prediction(logits=torch.zeros(1, 2, 0), masks=torch.zeros(1, 2, SIZE, SIZE)))
    evaluator.rerun(batch, lambda b: pytest.fail("no target: the model must not run"))
    out = evaluator.compute()
    assert out["interactive"]["miou"] == 0.0 and "noc85" not in out["interactive"]
