"""Parity: zoo's PQ equals a direct transcription of panopticapi's `pq_compute`, zoo's mask AP equals COCOeval run
on the same predictions written to JSON files, both to 1e-6, on random cases with void, crowd and absent
categories."""

from __future__ import annotations

import json
import math
from collections import defaultdict

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from zoo.metrics import VOID, MaskAP, PanopticMetric

IS_THING = [True, True, False, False]  # categories 0, 1 things; 2, 3 stuff

# ---------------------------------------------------------------- panopticapi, transcribed


def reference_pq(images: list[tuple[np.ndarray, dict, np.ndarray, dict]], is_thing: list[bool]) -> dict[str, float]:
    """panopticapi's pq_compute_single_core + PQStat.pq_average on id maps (0 = void) and segment infos."""
    offset = 256 * 256 * 256
    stat = defaultdict(lambda: {"iou": 0.0, "tp": 0, "fp": 0, "fn": 0})
    for pan_pred, pred_info, pan_gt, gt_info in images:
        gt_segms = {k: dict(v) for k, v in gt_info.items()}
        pred_segms = {k: dict(v) for k, v in pred_info.items()}
        for segms, pan in ((gt_segms, pan_gt), (pred_segms, pan_pred)):
            for label, count in zip(*np.unique(pan, return_counts=True), strict=True):
                if label != 0:
                    segms[int(label)]["area"] = int(count)
        joint = pan_gt.astype(np.uint64) * offset + pan_pred.astype(np.uint64)
        gt_pred_map = {}
        for label, inter in zip(*np.unique(joint, return_counts=True), strict=True):
            gt_pred_map[(int(label // offset), int(label % offset))] = int(inter)
        gt_matched, pred_matched = set(), set()
        for (gt_label, pred_label), inter in gt_pred_map.items():
            if gt_label not in gt_segms or pred_label not in pred_segms:
                continue
            if gt_segms[gt_label]["iscrowd"] == 1:
                continue
            if gt_segms[gt_label]["category_id"] != pred_segms[pred_label]["category_id"]:
                continue
            union = (
                pred_segms[pred_label]["area"]
                + gt_segms[gt_label]["area"]
                - inter
                - gt_pred_map.get((0, pred_label), 0)
            )
            iou = inter / union
            if iou > 0.5:
                stat[gt_segms[gt_label]["category_id"]]["tp"] += 1
                stat[gt_segms[gt_label]["category_id"]]["iou"] += iou
                gt_matched.add(gt_label)
                pred_matched.add(pred_label)
        crowd_labels = {}
        for gt_label, info in gt_segms.items():
            if gt_label in gt_matched:
                continue
            if info["iscrowd"] == 1:
                crowd_labels[info["category_id"]] = gt_label
                continue
            stat[info["category_id"]]["fn"] += 1
        for pred_label, info in pred_segms.items():
            if pred_label in pred_matched:
                continue
            inter = gt_pred_map.get((0, pred_label), 0)
            if info["category_id"] in crowd_labels:
                inter += gt_pred_map.get((crowd_labels[info["category_id"]], pred_label), 0)
            if inter / info["area"] > 0.5:
                continue
            stat[info["category_id"]]["fp"] += 1

    def average(which: bool | None) -> tuple[float, float, float]:
        pq = sq = rq = 0.0
        n = 0
        for category, thing in enumerate(is_thing):
            if which is not None and thing != which:
                continue
            s = stat[category]
            if s["tp"] + s["fp"] + s["fn"] == 0:
                continue
            n += 1
            pq += s["iou"] / (s["tp"] + 0.5 * s["fp"] + 0.5 * s["fn"])
            sq += s["iou"] / s["tp"] if s["tp"] else 0.0
            rq += s["tp"] / (s["tp"] + 0.5 * s["fp"] + 0.5 * s["fn"])
        return (pq / n, sq / n, rq / n) if n else (math.nan, math.nan, math.nan)

    pq, sq, rq = average(None)
    return {"pq": pq, "sq": sq, "rq": rq, "pq_things": average(True)[0], "pq_stuff": average(False)[0]}


# ---------------------------------------------------------------- random panoptic cases


def random_panoptic(rng: np.random.Generator, size: int, crowd: bool) -> tuple[np.ndarray, dict]:
    """An id map (0 = void) of overlapping rectangles; stuff categories at most once, one optional crowd."""
    pan = np.zeros((size, size), dtype=np.int64)
    info: dict[int, dict] = {}
    used_stuff: set[int] = set()
    for segment_id in range(1, rng.integers(3, 8)):
        category = int(rng.integers(len(IS_THING)))
        if not IS_THING[category]:
            if category in used_stuff:
                continue
            used_stuff.add(category)
        y, x = rng.integers(0, size - 4, 2)
        h, w = rng.integers(3, size // 2, 2)
        pan[y : y + h, x : x + w] = segment_id
        info[segment_id] = {"category_id": category, "iscrowd": 0}
    if crowd:
        y, x = rng.integers(0, size - 6, 2)
        pan[y : y + 6, x : x + 6] = 99
        info[99] = {"category_id": int(rng.integers(2)), "iscrowd": 1}
    present = set(np.unique(pan).tolist())
    return pan, {k: v for k, v in info.items() if k in present}


def perturb(rng: np.random.Generator, pan: np.ndarray, info: dict) -> tuple[np.ndarray, dict]:
    """A prediction near the target: segments shifted, some relabelled, some dropped to void, one spurious."""
    pred = np.zeros_like(pan)
    out: dict[int, dict] = {}
    for segment_id, seg in info.items():
        if rng.random() < 0.15:
            continue  # missed: stays void
        shifted = np.roll(pan == segment_id, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
        category = seg["category_id"] if rng.random() < 0.8 else int(rng.integers(2))  # sometimes a wrong thing
        pred[shifted] = segment_id
        out[segment_id] = {"category_id": category}
    y, x = rng.integers(0, pan.shape[0] - 5, 2)
    pred[y : y + 5, x : x + 5] = 77
    out[77] = {"category_id": int(rng.integers(2))}
    # stuff predictions of one category form one segment, as panoptic fusion makes them
    for category in (2, 3):
        ids = [k for k, v in out.items() if v["category_id"] == category]
        for k in ids[1:]:
            pred[pred == k] = ids[0]
    present = set(np.unique(pred).tolist())
    return pred, {k: v for k, v in out.items() if k in present}


def to_pairs(pan: np.ndarray, info: dict) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = torch.zeros((*pan.shape, 2), dtype=torch.long)
    pairs[..., 0] = VOID
    crowd = torch.zeros(pan.shape, dtype=torch.bool)
    for segment_id, seg in info.items():
        region = torch.from_numpy(pan == segment_id)
        thing = IS_THING[seg["category_id"]]
        pairs[region] = torch.tensor([seg["category_id"], segment_id if thing else 0])
        crowd |= region & bool(seg.get("iscrowd", 0))
    return pairs, crowd


@pytest.mark.parametrize("seed", range(6))
def test_pq_matches_panopticapi(seed: int) -> None:
    rng = np.random.default_rng(seed)
    images = []
    metric = PanopticMetric(IS_THING)
    for n in range(4):
        gt, gt_info = random_panoptic(rng, 24, crowd=n % 2 == 0)
        pred, pred_info = perturb(rng, gt, gt_info)
        images.append((pred, pred_info, gt, gt_info))
        pred_pairs, _ = to_pairs(pred, pred_info)
        gt_pairs, crowd = to_pairs(gt, gt_info)
        metric.update(pred_pairs[None], gt_pairs[None], crowd[None])
    expected = reference_pq(images, IS_THING)
    got = metric.compute()
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-6, nan_ok=True), key


def test_pq_crowd_hand_computed() -> None:
    """1x12: a crowd of things (category 0) on px 0-5, a person on px 6-11. A prediction of category 0 on px 0-4
    lies on the crowd: ignored. One of category 1 on px 0-3 is a false positive (crowd is per category). The
    person predicted on px 6-9 with px 10-11 void: IoU 4/6 -> TP."""
    target = torch.tensor([[0, 1]] * 6 + [[0, 2]] * 6).view(1, 1, 12, 2)
    crowd = torch.tensor([True] * 6 + [False] * 6).view(1, 1, 12)
    pred = torch.tensor([[0, 5]] * 5 + [[VOID, 0]] + [[0, 6]] * 4 + [[VOID, 0]] * 2).view(1, 1, 12, 2)
    metric = PanopticMetric([True, True])
    metric.update(pred, target, crowd)
    out = metric.compute()
    assert out["pq"] == pytest.approx(4 / 6)  # category 0: TP only; category 1 unseen
    wrong = pred.clone()
    wrong[0, 0, :4] = torch.tensor([1, 5])
    metric = PanopticMetric([True, True])
    metric.update(wrong, target, crowd)
    assert metric.compute()["pq"] == pytest.approx((4 / 6 + 0.0) / 2)  # category 1: one FP, PQ 0


def test_pq_rejects_unknown_category() -> None:
    pairs = torch.zeros(1, 2, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="category 3"):
        PanopticMetric([True, False]).update(pairs + 3, pairs)


# ---------------------------------------------------------------- mask AP against COCOeval on files


def random_instances(rng: np.random.Generator, size: int) -> list[tuple[np.ndarray, int, bool]]:
    """Instances of categories 0-2 of small, medium and large areas (COCO's 32² and 96² limits)."""
    out = []
    for side in (10, 20, 50, 110):
        y, x = rng.integers(0, size - side, 2)
        mask = np.zeros((size, size), dtype=bool)
        mask[y : y + side, x : x + side] = True
        out.append((mask, int(rng.integers(3)), bool(rng.random() < 0.1)))
    return out


def jitter(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    return np.roll(mask, tuple(rng.integers(-6, 7, 2)), axis=(0, 1))


def rle_json(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def cocoeval_from_files(tmp_path, images) -> list[float]:
    """The standard route: ground truth JSON -> COCO, results JSON -> loadRes, COCOeval('segm')."""
    gt = {"images": [], "annotations": [], "categories": [{"id": c} for c in range(4)]}
    results = []
    for image_id, (height, width, gts, dts) in enumerate(images, start=1):
        gt["images"].append({"id": image_id, "height": height, "width": width})
        for mask, category, crowd in gts:
            rle = rle_json(mask)
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "segmentation": rle,
                    "area": float(mask.sum()),
                    "bbox": mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))).tolist(),
                    "iscrowd": int(crowd),
                }
            )
        for mask, category, score in dts:
            results.append(
                {"image_id": image_id, "category_id": category, "segmentation": rle_json(mask), "score": score}
            )
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "results.json").write_text(json.dumps(results))
    coco = COCO(str(tmp_path / "gt.json"))
    evaluator = COCOeval(coco, coco.loadRes(str(tmp_path / "results.json")), "segm")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return [float(v) for v in evaluator.stats[:6]]


@pytest.mark.parametrize("seed", range(3))
def test_mask_ap_matches_cocoeval(tmp_path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = 128
    images, metric = [], MaskAP()
    for image_id in range(3):
        gts = random_instances(rng, size)
        dts = [(jitter(rng, m), c, float(rng.random())) for m, c, _ in gts if rng.random() < 0.8]
        dts.append((random_instances(rng, size)[0][0], 3, 0.9))  # category 3 exists only in predictions
        images.append((size, size, gts, dts))
        t = lambda xs: torch.from_numpy(np.stack(xs))  # noqa: E731
        metric.update(
            ("bench", image_id),
            t([m for m, _, _ in dts]),
            torch.tensor([s for _, _, s in dts]),
            torch.tensor([c for _, c, _ in dts]),
            t([m for m, _, _ in gts]),
            torch.tensor([c for _, c, _ in gts]),
            torch.tensor([k for _, _, k in gts]),
        )
    expected = cocoeval_from_files(tmp_path, images)
    got = metric.compute()
    assert list(got) == ["ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large"]
    for value, reference in zip(got.values(), expected, strict=True):
        assert value == pytest.approx(reference, abs=1e-6) if reference >= 0 else math.isnan(value)


def test_mask_ap_edge_cases() -> None:
    target = torch.zeros(1, 40, 40, dtype=torch.bool)
    target[0, 5:25, 5:25] = True
    none = torch.zeros(0, 40, 40, dtype=torch.bool)
    empty_pred = MaskAP()  # nothing predicted: AP 0 where there is ground truth
    empty_pred.update(("a",), none, torch.zeros(0), torch.zeros(0, dtype=torch.long), target, torch.tensor([0]))
    assert empty_pred.compute()["ap"] == 0.0
    no_target = MaskAP()  # nothing to find: NaN, not 0 or 1
    no_target.update(("a",), target, torch.ones(1), torch.tensor([0]), none, torch.zeros(0, dtype=torch.long))
    assert math.isnan(no_target.compute()["ap"])
    assert math.isnan(MaskAP().compute()["ap"])
    perfect_and_absent = MaskAP()  # category 1 has ground truth but no prediction: mean of 1.0 and 0.0
    two = torch.stack([target[0], target[0].roll(15, 0)])
    perfect_and_absent.update(("a",), target, torch.ones(1), torch.tensor([0]), two, torch.tensor([0, 1]))
    assert perfect_and_absent.compute()["ap50"] == pytest.approx(0.5)
    crowd_only = MaskAP()  # a detection on a crowd region is neither a hit nor a false positive
    crowd_only.update(("a",), target, torch.ones(1), torch.tensor([0]), two, torch.tensor([0, 0]), torch.tensor([0, 1]))
    assert crowd_only.compute()["ap50"] == pytest.approx(1.0)
