"""Readers and Evaluator agree: what the format readers write (crowd flags, ignore pixels, benchmarks, gRefCOCO and
VGD samples) is what evaluation scores, as COCO defines it, on files in the published formats and end to end from
`zoo data synth` through `zoo validate`."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.conftest import TINY_RECIPE
from zoo.__main__ import main
from zoo.cli import ZooCLI
from zoo.data import MixtureDataset, ZooDataModule, collate, write_png
from zoo.data.readers import CocoInstances, CocoPanoptic, SemanticSegmentation, VisualGrounding
from zoo.data.readers.coco import id2rgb
from zoo.data.readers.common import encode_mask
from zoo.evaluation import Evaluator
from zoo.losses import SeemCriterion, SetCriterion
from zoo.metrics import instance_topk
from zoo.model import ModelOutput
from zoo.module import ZooModule
from zoo.tasks import task_spec
from zoo.types import Batch, Prediction

SIZE = 32
CATEGORIES = [{"id": 3, "name": "cat", "isthing": 1}, {"id": 5, "name": "dog", "isthing": 1}]
CATEGORIES += [{"id": 7, "name": "sky", "isthing": 0}]


def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def query_logits(classes: list[int | None], num_classes: int, strength: list[float]) -> torch.Tensor:
    """Class logits [Q, K+1]: query q says `classes[q]` (None: no-object) with its own confidence, so no two
    detections tie in score."""
    logits = torch.full((len(classes), num_classes + 1), -4.0)
    for q, (c, s) in enumerate(zip(classes, strength, strict=True)):
        logits[q, num_classes if c is None else c] = s
    return logits


def mask_logits(masks: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([torch.where(torch.from_numpy(m), 6.0, -6.0) for m in masks])


def write_image(path: Path) -> None:
    write_png(path, np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))


# ---------------------------------------------------------------- COCO instances: crowd is COCOeval's iscrowd


@pytest.fixture
def instances(tmp_path: Path) -> Path:
    """Two images: a polygon cat, an RLE dog and an RLE crowd of cats; a polygon cat alone. `area` is the
    decoded pixel count, as COCO's files give it."""
    for name in ("a.png", "b.png"):
        write_image(tmp_path / name)

    def ann(n: int, image: int, category: int, mask: np.ndarray, crowd: int, polygon: bool = False) -> dict:
        rows, cols = np.nonzero(mask)
        y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        return {
            "id": n,
            "image_id": image,
            "category_id": category,
            "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]] if polygon else encode_mask(mask),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": int(mask.sum()),
            "iscrowd": crowd,
        }

    annotations = [
        ann(1, 5, 3, rect(2, 12, 2, 12), 0, polygon=True),
        ann(2, 5, 5, rect(20, 30, 2, 12), 0),
        ann(3, 5, 3, rect(2, 12, 18, 30), 1),
        ann(4, 6, 3, rect(10, 20, 10, 20), 0, polygon=True),
    ]
    images = [
        {"id": 5, "file_name": "a.png", "height": SIZE, "width": SIZE},
        {"id": 6, "file_name": "b.png", "height": SIZE, "width": SIZE},
    ]
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


def coco_file_ap(annotation_file: Path, detections: list[dict], drop_crowd: bool = False) -> list[float]:
    """pycocotools on the file itself: COCO(json) + loadRes + COCOeval('segm'), AP..AP_large."""
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(annotation_file))
        if drop_crowd:
            ground_truth.dataset["annotations"] = [a for a in ground_truth.dataset["annotations"] if not a["iscrowd"]]
            ground_truth.createIndex()
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(copy.deepcopy(detections)), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats[:6]]


def coco_detections(image_ids: tuple[int, ...], logits: torch.Tensor, masks: torch.Tensor) -> list[dict]:
    """The evaluator's instance detections of each image, as a COCO results list in the file's category ids."""
    source_ids = [c["id"] for c in CATEGORIES]
    detections = []
    for b, image_id in enumerate(image_ids):
        pred_masks, scores, labels = instance_topk(logits[b], masks[b], [c["isthing"] for c in CATEGORIES])
        for mask, score, label in zip(pred_masks, scores.tolist(), labels.tolist(), strict=True):
            rle = encode_mask(mask.numpy())
            detections.append(
                {"image_id": image_id, "category_id": source_ids[label], "segmentation": rle, "score": score}
            )
    return detections


AP_NAMES = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")


def test_instance_ap_on_reader_output_treats_crowd_as_cocoeval_does(instances: Path) -> None:
    dataset = CocoInstances(instances, instances.parent)
    batch = collate([dataset[0], dataset[1]])
    assert batch.meta[0]["iscrowd"].tolist() == [False, False, True] and batch.meta[0]["benchmark"] == "instances_val"
    # Image 5: the most confident query is a cat on the crowd; then the cat and the dog. Image 6: a shifted cat
    # (IoU 0.6) and a spurious dog.
    q5 = (mask_logits([rect(2, 12, 18, 30), rect(2, 12, 2, 12), rect(20, 30, 2, 12)]), [0, 0, 1], [7.0, 6.0, 5.0])
    q6 = (mask_logits([rect(10, 20, 12, 22), rect(24, 30, 24, 30), rect(0, 1, 0, 1)]), [0, 1, None], [5.5, 4.5, 3.0])
    logits = torch.stack([query_logits(classes, 3, s) for _, classes, s in (q5, q6)])
    masks = torch.stack([m for m, _, _ in (q5, q6)])
    evaluator = Evaluator()
    evaluator.bind(dataset.categories)
    evaluator.update(batch, Prediction(logits=logits, masks=masks))
    out = evaluator.compute()

    detections = coco_detections((5, 6), logits, masks)
    expected = coco_file_ap(instances, detections)
    for name, value in zip(AP_NAMES, expected, strict=True):
        got = out["panoptic/instances_val"][name]
        assert (math.isnan(got) and value < 0) or got == pytest.approx(value, abs=1e-6), name
    # The crowd decides the numbers here: as a plain object (or mere ignore pixels) the top cat would be a false
    # positive.
    assert coco_file_ap(instances, detections, drop_crowd=True)[0] < expected[0]


def test_crowd_targets_are_left_out_of_the_loss(instances: Path) -> None:
    batch = collate([CocoInstances(instances, instances.parent)[0]])
    masks, labels = batch.trained_targets()
    assert len(masks[0]) == 2 and labels[0].tolist() == [0, 1] and not (masks[0] & batch.masks[0][2]).any()
    module = ZooModule(net=torch.nn.Linear(1, 1), criterion=SetCriterion(num_points=64))
    logits = torch.randn(1, 4, 4)
    pred = ModelOutput(predictions=[Prediction(logits=logits, masks=torch.randn(1, 4, SIZE, SIZE))], lm_loss=None)
    without = Batch(**{**batch.__dict__, "masks": masks, "labels": labels, "meta": [{}]})
    as_object = Batch(**{**batch.__dict__, "meta": [{}]})
    losses = {}
    for name, b in (("crowd", batch), ("without", without), ("as_object", as_object)):
        torch.manual_seed(0)
        losses[name] = {k: v.item() for k, v in module._losses(b, pred).items()}
    assert losses["crowd"] == losses["without"] and losses["crowd"] != losses["as_object"]


def test_val_ap_counts_images_without_annotations_as_cocoeval_does(instances: Path) -> None:
    """COCOeval scores every image of the file: a detection on an image without annotations (7) is a false
    positive, and so is one on an image with only a crowd (8) unless it lies on the crowd. A val file keeps those
    images, so zoo's AP equals COCOeval on the file; the training default (dropping them) would inflate it."""
    data = json.loads(instances.read_text())
    for name, image_id in (("c.png", 7), ("d.png", 8)):
        write_image(instances.parent / name)
        data["images"].append({"id": image_id, "file_name": name, "height": SIZE, "width": SIZE})
    crowd = rect(16, 30, 16, 30)
    data["annotations"].append(
        {"id": 9, "image_id": 8, "category_id": 3, "segmentation": encode_mask(crowd), "iscrowd": 1}
    )
    instances.write_text(json.dumps(data))
    dataset = CocoInstances(instances, instances.parent)
    assert dataset.keep_empty and dataset.image_ids == [5, 6, 7, 8]
    assert CocoInstances(instances, instances.parent, keep_empty=False).image_ids == [5, 6]
    empty, crowd_only = dataset[2], dataset[3]
    assert empty.masks.shape == (0, SIZE, SIZE) and empty.boxes.shape == (0, 4)
    assert crowd_only.meta["iscrowd"].tolist() == [True]

    # Image 5 and 6: the cat, the dog and a shifted cat, found. Image 7: a very confident cat where nothing is.
    # Image 8: a cat on the crowd (ignored) and a confident dog beside it (false positive).
    queries = [
        ([rect(2, 12, 2, 12), rect(20, 30, 2, 12), rect(0, 1, 0, 1)], [0, 1, None], [6.0, 5.0, 3.0]),
        ([rect(10, 20, 12, 22), rect(0, 1, 0, 1), rect(0, 1, 0, 1)], [0, None, None], [5.5, 3.0, 3.0]),
        ([rect(4, 14, 4, 14), rect(0, 1, 0, 1), rect(0, 1, 0, 1)], [0, None, None], [8.0, 3.0, 3.0]),
        ([rect(18, 28, 18, 28), rect(2, 12, 2, 12), rect(0, 1, 0, 1)], [0, 1, None], [7.0, 7.5, 3.0]),
    ]
    logits = torch.stack([query_logits(classes, 3, s) for _, classes, s in queries])
    masks = torch.stack([mask_logits(m) for m, _, _ in queries])
    expected = coco_file_ap(instances, coco_detections((5, 6, 7, 8), logits, masks))
    evaluator = Evaluator()
    evaluator.bind(dataset.categories)
    evaluator.update(collate([dataset[i] for i in range(4)]), Prediction(logits=logits, masks=masks))
    out = evaluator.compute()
    for name, value in zip(AP_NAMES, expected, strict=True):
        got = out["panoptic/instances_val"][name]
        assert (math.isnan(got) and value < 0) or got == pytest.approx(value, abs=1e-6), name
    evaluator.update(collate([dataset[0], dataset[1]]), Prediction(logits=logits[:2], masks=masks[:2]))
    assert evaluator.compute()["panoptic/instances_val"]["ap"] > expected[0] + 0.1


def test_panoptic_val_keeps_images_without_segments(tmp_path: Path) -> None:
    """An annotation with no segments: all void for PQ (panopticapi ignores predictions there), but the thing
    detections on it are false positives for instance AP: a cat ranked above the only true cat halves AP."""
    cat, sky = rect(0, 10, 0, 10), rect(24, 32, 0, 32)
    path = write_panoptic(
        tmp_path,
        "panoptic_val",
        CATEGORIES,
        [("a.png", [(cat, 3), (sky, 7)]), ("b.png", [])],
    )
    dataset = CocoPanoptic(path, tmp_path, tmp_path / "panoptic_val")
    assert len(dataset) == 2 and len(dataset[1].masks) == 0
    assert len(CocoPanoptic(path, tmp_path, tmp_path / "panoptic_val", keep_empty=False)) == 1
    logits = torch.stack([query_logits([0, 2], 3, [5.0, 5.0]), query_logits([0, None], 3, [6.0, 3.0])])
    masks = torch.stack([mask_logits([cat, sky]), mask_logits([cat, np.zeros_like(cat)])])
    evaluator = Evaluator()
    evaluator.bind(dataset.categories)
    evaluator.update(collate([dataset[0], dataset[1]]), Prediction(logits=logits, masks=masks))
    out = evaluator.compute()
    assert out["panoptic/panoptic_val"]["pq"] == 1.0 and out["panoptic/panoptic_val"]["ap"] == pytest.approx(0.5)


def write_panoptic(root: Path, name: str, categories: list[dict], images: list[tuple[str, list]]) -> Path:
    """A COCO-panoptic JSON + PNG folder `root/name`: per image its file name and (mask, category id) segments."""
    annotations, records = [], []
    for image_id, (file_name, segments) in enumerate(images, start=1):
        write_image(root / file_name)
        ids = np.zeros((SIZE, SIZE), dtype=np.int64)
        for segment_id, (mask, _) in enumerate(segments, start=1):
            ids[mask] = segment_id
        write_png(root / name / file_name, id2rgb(ids))
        info = [{"id": k, "category_id": c, "iscrowd": 0} for k, (_, c) in enumerate(segments, start=1)]
        annotations.append({"image_id": image_id, "file_name": file_name, "segments_info": info})
        records.append({"id": image_id, "file_name": file_name, "height": SIZE, "width": SIZE})
    path = root / f"{name}.json"
    path.write_text(json.dumps({"images": records, "annotations": annotations, "categories": categories}))
    return path


# ---------------------------------------------------------------- COCO panoptic: panopticapi's crowd rule


def test_panoptic_pq_on_reader_output_follows_the_crowd_rule(tmp_path: Path) -> None:
    """cat, dog, sky and a crowd of cats. Predictions: the three exactly, a cat on the left half of the crowd (not
    a false positive: it lies on its own category's crowd) and a dog on the right half (a false positive: the
    crowd is of cats). panopticapi: cat PQ 1, dog 1 / (1 + 0.5), sky 1."""
    write_image(tmp_path / "img.png")
    cat, dog, crowd, sky = rect(0, 10, 0, 10), rect(12, 22, 0, 10), rect(0, 10, 16, 32), rect(24, 32, 0, 32)
    ids = np.zeros((SIZE, SIZE), dtype=np.int64)
    for segment_id, mask in enumerate((cat, dog, crowd, sky), start=1):
        ids[mask] = segment_id
    write_png(tmp_path / "pan" / "img.png", id2rgb(ids))
    segments = [
        {"id": 1, "category_id": 3, "iscrowd": 0},
        {"id": 2, "category_id": 5, "iscrowd": 0},
        {"id": 3, "category_id": 3, "iscrowd": 1},
        {"id": 4, "category_id": 7, "iscrowd": 0},
    ]
    annotation = {"image_id": 1, "file_name": "img.png", "segments_info": segments}
    images = [{"id": 1, "file_name": "img.png", "height": SIZE, "width": SIZE}]
    path = tmp_path / "panoptic_val.json"
    path.write_text(json.dumps({"images": images, "annotations": [annotation], "categories": CATEGORIES}))
    dataset = CocoPanoptic(path, tmp_path, tmp_path / "pan")
    sample = dataset[0]
    assert sample.meta["iscrowd"].tolist() == [False, False, True, False] and sample.ignore is None
    queries = [cat, dog, sky, rect(0, 10, 16, 24), rect(0, 10, 24, 32), np.zeros_like(cat)]
    logits = query_logits([0, 1, 2, 0, 1, None], 3, [6.0, 5.8, 5.6, 5.4, 5.2, 5.0])
    evaluator = Evaluator()
    evaluator.bind(dataset.categories)
    evaluator.update(collate([sample]), Prediction(logits=logits[None], masks=mask_logits(queries)[None]))
    out = evaluator.compute()
    assert out["panoptic/panoptic_val"]["pq"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert out["panoptic/panoptic_val"]["pq_things"] == pytest.approx((1 + 2 / 3) / 2)
    assert out["panoptic/panoptic_val"]["pq_stuff"] == pytest.approx(1.0)


# ---------------------------------------------------------------- semantic: ignore label -> Batch.ignore


def test_semantic_ignore_label_is_not_scored(tmp_path: Path) -> None:
    """ADE20K-style label 255 on a column; the prediction is wrong exactly there, so mIoU stays 1."""
    label = np.zeros((SIZE, SIZE), dtype=np.uint8)
    label[16:] = 1
    label[:, 30:] = 255
    write_png(tmp_path / "labels" / "x.png", label)
    write_image(tmp_path / "x.png")
    dataset = SemanticSegmentation(tmp_path, tmp_path / "labels", ["wall", "floor"], image_suffix=".png")
    batch = collate([dataset[0]])
    assert batch.meta[0]["benchmark"] == "labels" and batch.meta[0]["image_id"] == "x"
    wall = rect(0, 16, 0, SIZE) | rect(0, SIZE, 30, SIZE)  # also claims the ignored column's lower half
    logits = query_logits([0, 1], 2, [6.0, 5.0])
    evaluator = Evaluator()
    evaluator.update(batch, Prediction(logits=logits[None], masks=mask_logits([wall, rect(16, 32, 0, 30)])[None]))
    out = evaluator.compute()
    assert out["panoptic/labels"]["miou"] == 1.0 and out["panoptic/labels"]["pacc"] == 1.0


# ---------------------------------------------------------------- a mixed val set: one category table per benchmark


def test_mixed_val_set_scores_each_benchmark_with_its_own_table(tmp_path: Path) -> None:
    """COCO-style (cat, dog, sky) and ADE20K-style (wall, floor, person) panoptic val sets in one mixture: the
    module binds each benchmark's table, so both get PQ and AP, and predictions are named from their own table."""
    ade_categories = [
        {"id": 1, "name": "wall", "isthing": 0},
        {"id": 2, "name": "floor", "isthing": 0},
        {"id": 3, "name": "person", "isthing": 1},
    ]
    top, bottom, person = rect(0, 16, 0, 32), rect(16, 32, 0, 32), rect(4, 12, 4, 12)
    coco = write_panoptic(tmp_path / "coco", "panoptic_val", CATEGORIES, [("a.png", [(top, 3), (bottom, 7)])])
    ade = write_panoptic(tmp_path / "ade", "ade_panoptic_val", ade_categories, [("b.png", [(top, 1), (person, 3)])])
    val = MixtureDataset(
        [
            CocoPanoptic(coco, tmp_path / "coco", tmp_path / "coco" / "panoptic_val"),
            CocoPanoptic(ade, tmp_path / "ade", tmp_path / "ade" / "ade_panoptic_val"),
        ]
    )
    datamodule = ZooDataModule(val=val)
    assert not hasattr(val, "categories")  # the members disagree: no single table
    module = ZooModule(net=torch.nn.Linear(1, 1))
    module.trainer = SimpleNamespace(datamodule=datamodule)
    module.setup("validate")
    assert set(module.evaluator.settings.tables) == {"panoptic_val", "ade_panoptic_val"}

    evaluator = module.evaluator
    top_only, person_mask = mask_logits([top, bottom]), mask_logits([top & ~rect(4, 12, 4, 12), person])
    for b, (queries, classes) in enumerate(((top_only, [0, 2]), (person_mask, [0, 2]))):
        pred = Prediction(logits=query_logits(classes, 3, [5.0, 4.0])[None], masks=queries[None])
        batch = collate([val[b]])
        assert evaluator.postprocess(batch, pred)[0]["labels"] == [["cat", "sky"], ["wall", "person"]][b]
        evaluator.update(batch, pred)
    out = evaluator.compute()
    assert out["panoptic/panoptic_val"]["pq"] == 1.0 and out["panoptic/ade_panoptic_val"]["pq"] == 1.0
    assert out["panoptic/panoptic_val"]["ap"] == pytest.approx(1.0) == out["panoptic/ade_panoptic_val"]["ap"]


# ---------------------------------------------------------------- SEEM serves VGD prompts


def test_seem_serves_vgd_prompts_like_interactive(synth: Path) -> None:
    """VGD samples from the VGD reader take SEEM's visual-prompt path: the same queries and scores as the same
    prompts asked as interactive ones. A prompt with more instances than it has queries (here one query per
    prompt) leaves the extra instances unmatched rather than training a query of another prompt (or padding)."""
    from tests.test_seem import tiny_seem

    dataset = VisualGrounding(synth / "coco_vgdseg_val.json", synth / "images")
    batch = collate([dataset[0], dataset[1]])
    assert [len(p) for p in batch.prompts] == [2, 3]
    torch.manual_seed(0)
    net = tiny_seem(queries_per_prompt=1).eval()
    with torch.no_grad():
        vgd = net(batch).predictions
        interactive = net(dataclasses.replace(batch, task="interactive")).predictions
    for a, b in zip(vgd, interactive, strict=True):
        torch.testing.assert_close(a.logits, b.logits)
        torch.testing.assert_close(a.masks, b.masks)
    assert vgd[-1].logits.shape == (2, 3, 3)
    evaluator = Evaluator()
    evaluator.update(batch, vgd[-1])
    assert 0.0 <= evaluator.compute()["vgd/coco_vgdseg_val"]["ap"] <= 1.0

    # Sample 0: a second instance of prompt 0's category. Its queries: prompt 0's, prompt 1's and a padding one.
    batch.masks[0] = torch.cat([batch.masks[0], batch.masks[0][:1].roll(8, dims=-1)])
    batch.labels[0] = torch.tensor([0, 1, 0])
    out = net.train()(batch).predictions
    criterion = SeemCriterion(num_points=64)
    indices = criterion.match(out[-1].logits, out[-1].masks, batch.masks, batch.labels)
    assert [len(q) for q, _ in indices] == [2, 3]
    for (queries, targets), labels in zip(indices, batch.labels, strict=True):
        assert queries.tolist() == labels[targets].tolist()  # query k is prompt k's own
    losses = criterion(out, batch.masks, batch.labels, "vgd")
    assert all(torch.isfinite(v) and v < 100 for v in losses.values())
    sum(losses.values()).backward()


# ---------------------------------------------------------------- end to end: zoo data synth -> zoo validate

VAL_DATA = """
model:
  net:
    encoder:
      init_args:
        img_size: 64
data:
  val:
    class_path: MixtureDataset
    init_args:
      datasets:
        - class_path: CocoPanoptic
          init_args:
            annotation_file: ROOT/annotations/panoptic_val.json
            image_root: ROOT/images
            panoptic_root: ROOT/panoptic_val
            benchmark: coco_panoptic_val
        - class_path: RefCOCO
          init_args: {refs_file: ROOT/refcoco/refs(unc).p, instances_file: ROOT/refcoco/instances.json,
                      image_root: ROOT/images, split: val}
        - class_path: GRefCOCO
          init_args: {refs_file: ROOT/grefcoco/grefs(unc).json, instances_file: ROOT/refcoco/instances.json,
                      image_root: ROOT/images, split: val}
        - class_path: CocoInteractive
          init_args: {annotation_file: ROOT/coco_interactive_val_psalm.json, image_root: ROOT/images}
        - class_path: VisualGrounding
          init_args: {annotation_file: ROOT/coco_vgdseg_val.json, image_root: ROOT/images}
"""


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    main(["data", "synth", "--out", str(root), "--num-images", "1", "--val-images", "2", "--image-size", "64"])
    return root


def test_xsam_bridge_serves_vgd_prompts_like_interactive(synth: Path) -> None:
    """VGD samples from the VGD reader: one `<p>` condition per prompt, as for interactive prompts."""
    from tests.test_xsam import dual_encoder, seg_add

    dataset = VisualGrounding(synth / "coco_vgdseg_val.json", synth / "images")
    batch = collate([dataset[0], dataset[1]])
    assert batch.task == "vgd" and task_spec(batch.task).scoring == "sigmoid"
    encoder = dual_encoder()
    out = seg_add(encoder).eval()(batch, encoder(batch.images))
    counts = [len(p) for p in batch.prompts]
    assert out.conditions.shape == (2, max(counts), 24) and out.condition_mask.sum(1).tolist() == counts


def test_synth_files_validate_end_to_end_with_a_row_per_benchmark(synth: Path, tmp_path: Path) -> None:
    """The files `zoo data synth` writes, read by the real readers, scored by `zoo validate` with a random tiny
    PSALM: every benchmark its own results row, every headline metric a number."""
    (tmp_path / "data.yaml").write_text(VAL_DATA.replace("ROOT", str(synth)))
    args = ["validate", "--config", str(TINY_RECIPE), "--config", str(tmp_path / "data.yaml")]
    args += [f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false"]
    cli = ZooCLI(args=args)
    results = json.loads((Path(cli.trainer.log_dir) / "results.json").read_text())["metrics"]
    assert set(results) == {
        "panoptic/coco_panoptic_val",
        "referring/refcoco_val",
        "referring/grefcoco_val",
        "interactive/coco_interactive_val_psalm",
        "vgd/coco_vgdseg_val",
    }
    headline = {
        "panoptic/coco_panoptic_val": ("pq", "ap", "miou"),
        "referring/refcoco_val": ("ciou", "giou"),
        "referring/grefcoco_val": ("ciou", "giou", "n_acc", "t_acc"),
        "interactive/coco_interactive_val_psalm": ("miou", "ciou"),
        "vgd/coco_vgdseg_val": ("ap", "ap50"),
    }
    for row, names in headline.items():
        for name in names:
            value = results[row][name]
            assert value is not None and 0.0 <= value <= 1.0, (row, name, value)
