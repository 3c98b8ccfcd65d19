"""Each format reader on small files written here in the published layout, and its answers to bad input."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.data import write_png
from zoo.data.readers import (
    CocoInstances,
    CocoInteractive,
    CocoPanoptic,
    DataError,
    GRefCOCO,
    GroundedCaptions,
    LlavaConversations,
    ReasonSeg,
    RefCOCO,
    SemanticSegmentation,
    VisualGrounding,
    load_plain_pickle,
)
from zoo.data.readers.coco import id2rgb
from zoo.data.readers.common import encode_mask

H, W = 20, 30


def square(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def write_image(path: Path, height: int = H, width: int = W) -> None:
    write_png(path, np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))


def dump(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


CATEGORIES = [{"id": 3, "name": "cat", "isthing": 1}, {"id": 7, "name": "sky", "isthing": 0}]


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    """instances.json with a polygon, an RLE and a crowd annotation over one image; an image with no annotation."""
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    annotations = [
        {
            "id": 1,
            "image_id": 5,
            "category_id": 3,
            "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]],
            "bbox": [2, 2, 10, 8],
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 5,
            "category_id": 7,
            "segmentation": encode_mask(square(12, 0, 20, 30)),
            "bbox": [0, 12, 30, 8],
            "iscrowd": 0,
        },
        {
            "id": 3,
            "image_id": 5,
            "category_id": 3,
            "segmentation": encode_mask(square(0, 20, 5, 30)),
            "bbox": [20, 0, 10, 5],
            "iscrowd": 1,
        },
    ]
    images = [
        {"id": 5, "file_name": "a.png", "height": H, "width": W},
        {"id": 6, "file_name": "b.png", "height": H, "width": W},
    ]
    dump(tmp_path / "instances.json", {"images": images, "annotations": annotations, "categories": CATEGORIES})
    return tmp_path


def test_coco_instances_decode_polygons_and_rle_lazily(coco: Path) -> None:
    dataset = CocoInstances(coco / "instances.json", coco)
    assert len(dataset) == 1 and dataset.sample_tasks == ["panoptic"], "the image without annotations is left out"
    assert dataset.categories == [{"id": 0, "name": "cat", "isthing": True}, {"id": 1, "name": "sky", "isthing": False}]
    sample = dataset[0]
    assert sample.conditions == ["cat", "sky"] and sample.labels.tolist() == [0, 1, 0]
    # pycocotools rasterises the polygon (2,2)-(12,10) to rows 2..9 and columns 2..11: pixel-corner coordinates.
    assert torch.equal(sample.masks[0], torch.from_numpy(square(2, 2, 10, 12)))
    assert torch.equal(sample.masks[1], torch.from_numpy(square(12, 0, 20, 30)))
    assert sample.boxes.tolist() == [[2, 2, 12, 10], [0, 12, 30, 20], [20, 0, 30, 5]]
    # The crowd annotation is a target flagged in meta (COCOeval's iscrowd, left out of the loss), not ignore pixels.
    assert torch.equal(sample.masks[2], torch.from_numpy(square(0, 20, 5, 30))) and sample.labels[2] == 0
    assert sample.meta["iscrowd"].tolist() == [False, False, True] and sample.ignore is None
    assert sample.meta["benchmark"] == "instances" and sample.meta["image_id"] == 5


def test_coco_panoptic_reads_segments_by_rgb2id(tmp_path: Path) -> None:
    write_image(tmp_path / "img.png")
    ids = np.zeros((H, W), dtype=np.int64)
    ids[:10] = 1000
    ids[10:] = 70000  # an id above 65535 exercises the blue channel
    write_png(tmp_path / "pan" / "img.png", id2rgb(ids))
    segments = [{"id": 1000, "category_id": 7, "iscrowd": 0}, {"id": 70000, "category_id": 3, "iscrowd": 0}]
    ann = {"image_id": 1, "file_name": "img.png", "segments_info": segments}
    images = [{"id": 1, "file_name": "img.png", "height": H, "width": W}]
    dump(tmp_path / "panoptic.json", {"images": images, "annotations": [ann], "categories": CATEGORIES})
    sample = CocoPanoptic(tmp_path / "panoptic.json", tmp_path, tmp_path / "pan")[0]
    assert sample.labels.tolist() == [1, 0] and sample.meta["isthing"].tolist() == [False, True]
    assert torch.equal(sample.masks[0], torch.from_numpy(ids == 1000)) and torch.equal(
        sample.masks[1], torch.from_numpy(ids == 70000)
    )


def test_semantic_png_with_ignore_label_and_ade_zero_reduction(tmp_path: Path) -> None:
    label = np.zeros((H, W), dtype=np.uint8)
    label[:, 10:] = 2
    label[:5] = 255
    (tmp_path / "labels").mkdir()
    write_png(tmp_path / "labels" / "x.png", label)
    write_image(tmp_path / "x.jpg.png")
    (tmp_path / "x.jpg.png").rename(tmp_path / "x.jpg")
    sample = SemanticSegmentation(tmp_path, tmp_path / "labels", ["wall", "floor", "tree"])[0]
    assert sample.labels.tolist() == [0, 2] and torch.equal(sample.ignore, torch.from_numpy(label == 255))
    assert torch.equal(sample.masks[1], torch.from_numpy(label == 2))
    reduced = SemanticSegmentation(tmp_path, tmp_path / "labels", ["wall", "floor", "tree"], reduce_zero_label=True)[0]
    assert reduced.labels.tolist() == [1] and reduced.ignore.sum() == (label != 2).sum()
    with pytest.raises(DataError, match="x.png: unknown class ids \\[2\\] \\(have 1 classes\\)"):
        SemanticSegmentation(tmp_path, tmp_path / "labels", ["wall"], max_bad=0.0)[0]


def _refcoco_files(tmp_path: Path) -> Path:
    write_image(tmp_path / "COCO_train2014_000000000009.jpg.png")
    os.rename(tmp_path / "COCO_train2014_000000000009.jpg.png", tmp_path / "COCO_train2014_000000000009.jpg")
    images = [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "height": H, "width": W}]
    anns = [
        {"id": 21, "image_id": 9, "category_id": 3, "segmentation": [[0, 0, 9, 0, 9, 9, 0, 9]], "bbox": [0, 0, 9, 9]},
        {
            "id": 22,
            "image_id": 9,
            "category_id": 3,
            "segmentation": [[15, 5, 25, 5, 25, 15, 15, 15]],
            "bbox": [15, 5, 10, 10],
        },
    ]
    dump(tmp_path / "instances.json", {"images": images, "annotations": anns, "categories": CATEGORIES})
    return tmp_path


def test_refcoco_pickle_per_expression_and_per_ref(tmp_path: Path) -> None:
    root = _refcoco_files(tmp_path)
    sentences = [
        {"sent": "left cat", "raw": "Left cat", "tokens": ["left", "cat"], "sent_id": 100},
        {"sent": "the cat on the left", "sent_id": 101},
    ]
    refs = [
        {
            "ref_id": 0,
            "ann_id": 21,
            "image_id": 9,
            "split": "train",
            "sentences": sentences,
            "sent_ids": [100, 101],
            "category_id": 3,
        },
        {
            "ref_id": 1,
            "ann_id": 22,
            "image_id": 9,
            "split": "testA",
            "sentences": [{"sent": "right cat", "sent_id": 102}],
        },
    ]
    (root / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    train = RefCOCO(root / "refs(unc).p", root / "instances.json", root, split="train")
    assert len(train) == 2 and [train[i].conditions for i in range(2)] == [["left cat"], ["the cat on the left"]]
    assert train[1].meta["sent_id"] == 101 and train[0].masks.sum() == 81 and train[0].labels.tolist() == [0]
    per_ref = RefCOCO(root / "refs(unc).p", root / "instances.json", root, split="train", per="ref")
    assert len(per_ref) == 1 and per_ref[0].conditions == ["left cat the cat on the left"]
    test_a = RefCOCO(root / "refs(unc).p", root / "instances.json", root, split="testA")
    assert test_a[0].boxes.tolist() == [[15, 5, 25, 15]]
    with pytest.raises(DataError, match="no refs in split 'val'. Splits present: testA, train"):
        RefCOCO(root / "refs(unc).p", root / "instances.json", root, split="val")


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_refs_pickle_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for payload in (_Exploit(marker), [{"ref_id": 0, "sentences": _Exploit(marker)}]):
        (tmp_path / "refs(unc).p").write_bytes(pickle.dumps(payload, protocol=2))
        with pytest.raises(
            DataError, match=r"refs\(unc\).p' is not a plain-data pickle: refusing to load '(posix|nt).system'"
        ):
            load_plain_pickle(tmp_path / "refs(unc).p")
        assert not marker.exists()
    (tmp_path / "eval.p").write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")  # builtins that are not data are refused too
    with pytest.raises(DataError, match="builtins.eval"):
        load_plain_pickle(tmp_path / "eval.p")
    (tmp_path / "sets.p").write_bytes(pickle.dumps({"ids": {1, 2}, "t": (1, 2.5)}, protocol=2))
    assert load_plain_pickle(tmp_path / "sets.p") == {"ids": {1, 2}, "t": (1, 2.5)}
    (tmp_path / "cut.p").write_bytes(pickle.dumps([1, 2, 3])[:-3])
    with pytest.raises(DataError, match="cut.p' is not a readable pickle"):
        load_plain_pickle(tmp_path / "cut.p")


def test_grefcoco_multi_and_no_target(tmp_path: Path) -> None:
    root = _refcoco_files(tmp_path)
    grefs = [
        {
            "ref_id": 0,
            "ann_id": [21, 22],
            "image_id": 9,
            "split": "val",
            "sentences": [{"sent": "both cats", "sent_id": 1}],
            "no_target": False,
        },
        {
            "ref_id": 1,
            "ann_id": [-1],
            "image_id": 9,
            "split": "val",
            "sentences": [{"sent": "the dog", "sent_id": 2}],
            "no_target": True,
        },
        {"ref_id": 2, "ann_id": 21, "image_id": 9, "split": "val", "sentences": [{"sent": "one cat", "sent_id": 3}]},
    ]
    dataset = GRefCOCO(dump(root / "grefs(unc).json", grefs), root / "instances.json", root, split="val")
    both, none, one = (dataset[i] for i in range(3))
    assert both.masks.shape == (2, H, W) and both.labels.tolist() == [0, 0]
    assert none.masks.shape == (0, H, W) and none.conditions == ["the dog"]
    assert one.masks.shape == (1, H, W)
    # Every expression is scored the gRefCOCO way, whatever its answer: the flag must not leak the target count.
    assert all(s.meta["generalized"] and "no_target" not in s.meta for s in (both, none, one))
    assert {s.meta["benchmark"] for s in (both, none, one)} == {f"{root.name}_val"}
    renamed = GRefCOCO(root / "grefs(unc).json", root / "instances.json", root, split="val", benchmark="grefcoco_val")
    assert renamed[0].meta["benchmark"] == "grefcoco_val"


def _prompt_anns() -> list[dict]:
    target = square(2, 2, 12, 12)
    point = square(6, 6, 7, 7)
    empty = np.zeros((H, W), dtype=bool)
    return [
        {
            "id": 4,
            "category_id": 3,
            "segmentation": encode_mask(target),
            "bbox": [2, 2, 10, 10],
            "point_visual_prompt_mask": encode_mask(point),
            "mask_visual_prompt_mask": encode_mask(target),
            "box_visual_prompt_mask": encode_mask(square(1, 1, 13, 13)),
            "scribble_visual_prompt_mask": encode_mask(empty),
        }
    ]


def test_coco_interactive_prompt_choice(tmp_path: Path) -> None:
    write_image(tmp_path / "i.png")
    record = {
        "image": "i.png",
        "image_info": {"file_name": "i.png", "height": H, "width": W, "id": 3},
        "new_img_id": 3,
        "anns": _prompt_anns(),
    }
    path = dump(tmp_path / "coco_interactive_val_psalm.json", [record])
    sample = CocoInteractive(path, tmp_path, prompt_type="point")[0]
    assert sample.prompt_types == ["point"] and sample.prompts[0].sum() == 1 and sample.masks[0].sum() == 100
    kinds = {CocoInteractive(path, tmp_path, seed=s)[0].prompt_types[0] for s in range(20)}
    assert kinds == {"point", "mask", "box"}, "random choice only among non-empty prompts"
    assert (
        CocoInteractive(path, tmp_path, seed=3)[0].prompt_types
        == CocoInteractive(path, tmp_path, seed=3)[0].prompt_types
    )
    with pytest.raises(DataError, match="annotation 4: has no non-empty 'scribble' prompt"):
        CocoInteractive(path, tmp_path, prompt_type="scribble", max_bad=0.0)[0]


def test_vgd_targets_every_instance_of_the_prompted_category(tmp_path: Path) -> None:
    write_image(tmp_path / "v.png")
    anns = _prompt_anns()
    second = {**anns[0], "id": 5, "segmentation": encode_mask(square(14, 20, 18, 28))}
    other = {**anns[0], "id": 6, "category_id": 7, "segmentation": encode_mask(square(14, 0, 18, 8))}
    for ann in (anns[0], second, other):
        ann["visual_prompts"] = {
            f"{k}_visual_prompt": ann.pop(f"{k}_visual_prompt_mask") for k in ("point", "mask", "box", "scribble")
        }
    record = {"image_file": "v.png", "image_id": 1, "image_size": [H, W], "annotations": [anns[0], second, other]}
    sample = VisualGrounding(dump(tmp_path / "coco_vgdseg_val.json", [record]), tmp_path, prompt_type="mask")[0]
    assert sample.task == "vgd" and sample.prompt_types == ["mask", "mask"] and sample.labels.tolist() == [0, 0, 1]
    assert sample.meta["category_ids"].tolist() == [3, 3, 7], "each target's category, as the file numbers it"
    assert sample.meta["benchmark"] == "coco_vgdseg_val" and sample.meta["image_id"] == 1


def test_reasonseg_labelme_polygons_with_ignore(tmp_path: Path) -> None:
    write_image(tmp_path / "q.jpg.png")
    os.rename(tmp_path / "q.jpg.png", tmp_path / "q.jpg")
    shapes = [
        {"label": "target", "points": [[0, 0], [10, 0], [10, 10], [0, 10]], "shape_type": "polygon"},
        {"label": "ignore", "points": [[20, 0], [30, 0], [30, 10], [20, 10]], "shape_type": "polygon"},
        {"label": "flag", "points": [[0, 0], [1, 0], [1, 1]], "shape_type": "polygon"},
    ]
    record = {"text": ["what keeps the food cold?", "the fridge"], "is_sentence": True, "shapes": shapes}
    dump(tmp_path / "q.json", record)
    dataset = ReasonSeg(tmp_path)
    assert len(dataset) == 2 and dataset[1].conditions == ["the fridge"] and dataset[0].meta["is_sentence"]
    assert dataset[0].masks[0, :10, :10].all() and dataset[0].masks[0].sum() == 100
    assert (
        dataset[0].ignore[:10, 20:].all()
        and dataset[0].ignore.sum() == 100
        and not (dataset[0].ignore & dataset[0].masks[0]).any()
    )


def test_grounded_captions_and_llava(tmp_path: Path) -> None:
    write_image(tmp_path / "g.png")
    caption = "a cat sits under the sky"
    groundings = {
        "the sky": {"token_positives": [17, 24], "rle_masks": [encode_mask(square(0, 0, 5, 30))]},
        "a cat": {
            "token_positives": [0, 5],
            "rle_masks": [encode_mask(square(10, 0, 15, 5)), encode_mask(square(10, 20, 15, 25))],
        },
    }
    gcg = GroundedCaptions(
        dump(
            tmp_path / "GranDf_HA_GCG_train.json",
            [{"file_name": "g.png", "caption": caption, "groundings": groundings}],
        ),
        tmp_path,
    )
    sample = gcg[0]
    assert sample.task == "caption" and sample.answer == caption and sample.conditions == ["a cat", "the sky"]
    assert sample.labels.tolist() == [0, 0, 1] and sample.meta["phrase_spans"] == [(0, 5), (17, 24)]
    turns = [("gpt", "Hi."), ("human", "<image>\nWhat is it?"), ("gpt", "A cat."), ("human", "Its colour?"),
             ("gpt", "Grey.")]  # fmt: skip
    records = [
        {"id": "t", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
        {"id": "m", "image": "g.png", "conversations": [{"from": w, "value": v} for w, v in turns]},
    ]
    llava = LlavaConversations(dump(tmp_path / "llava_v1_5_mix665k.json", records), tmp_path)
    assert len(llava) == 1 and (llava[0].instruction, llava[0].answer) == ("What is it?", "A cat.")
    assert llava[0].follow_ups == [("Its colour?", "Grey.")]  # the whole conversation, the opening gpt turn left out
    records[1]["conversations"] = [{"from": "human", "value": "<image>\nWhat?"}] * 2
    with pytest.warns(UserWarning, match="needs alternating human and gpt turns"):
        assert len(LlavaConversations(dump(tmp_path / "broken.json", records), tmp_path)) == 0


# --- bad input ---------------------------------------------------------------------------------------------


def test_missing_and_invalid_annotation_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"'{tmp_path / 'nope.json'}' does not exist"):
        CocoInstances(tmp_path / "nope.json", tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match=r"bad.json' is not valid JSON: .*line 1"):
        CocoInstances(tmp_path / "bad.json", tmp_path)
    dump(tmp_path / "nokey.json", {"images": [], "categories": CATEGORIES})
    with pytest.raises(DataError, match=r"nokey.json: missing key 'annotations'"):
        CocoInstances(tmp_path / "nokey.json", tmp_path)


def _many_images(root: Path, count: int) -> dict:
    images, anns = [], []
    for i in range(count):
        write_image(root / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "height": H, "width": W})
        anns.append(
            {
                "id": i,
                "image_id": i,
                "category_id": 3,
                "segmentation": encode_mask(square(0, 0, 5, 5)),
                "bbox": [0, 0, 5, 5],
            }
        )
    return {"images": images, "annotations": anns, "categories": CATEGORIES}


@pytest.mark.parametrize(
    "break_it, message",
    [
        (
            lambda root, data: (root / "3.png").unlink(),
            r"image 3 \('3.png'\): Cannot read image '.*3.png': no such file",
        ),
        (lambda root, data: (root / "3.png").write_bytes(b"garbage"), r"image 3 \('3.png'\): Cannot read image"),
        (
            lambda root, data: write_image(root / "3.png", 21, 30),
            r"image 3 \('3.png'\): image '.*3.png' is 30x21 but the annotation says 30x20",
        ),
        (
            lambda root, data: data["annotations"][3].update(segmentation=encode_mask(np.zeros((H, W), bool))),
            r"image 3 .*annotation 3: the mask is empty",
        ),
        (
            lambda root, data: data["annotations"][3].update(segmentation=[[1, 1, 1, 1, 1, 1]]),
            r"image 3 .*annotation 3: the mask is empty",
        ),
    ],
    ids=["missing-image", "corrupt-image", "size-mismatch", "empty-rle", "zero-area-polygon"],
)
def test_a_rare_bad_sample_is_skipped_with_a_counted_warning(tmp_path: Path, break_it, message: str) -> None:
    data = _many_images(tmp_path, 10)
    break_it(tmp_path, data)
    dataset = CocoInstances(dump(tmp_path / "instances.json", data), tmp_path, max_bad=0.1)
    with pytest.warns(UserWarning, match=rf"Skipping bad sample \(1 so far\): .*instances.json: {message}"):
        sample = dataset[3]
    assert sample.meta["image_id"] == 4 and sample.masks.any(), "the next good sample of the same task stands in"
    assert len(dataset.bad) == 1


def test_too_many_bad_samples_fail_clearly(tmp_path: Path) -> None:
    data = _many_images(tmp_path, 10)
    for i in (2, 5):
        (tmp_path / f"{i}.png").unlink()
    dataset = CocoInstances(dump(tmp_path / "instances.json", data), tmp_path, max_bad=0.1)
    with (
        pytest.warns(UserWarning),
        pytest.raises(DataError, match=r"CocoInstances: 2 bad samples of 10, more than the 1 allowed.*2.png"),
    ):
        [dataset[i] for i in range(len(dataset))]


def test_unknown_category_leaves_the_image_out_counted(tmp_path: Path) -> None:
    data = _many_images(tmp_path, 10)
    data["annotations"][4]["category_id"] = 99
    with pytest.warns(UserWarning, match=r"annotations\[4\].*unknown category id 99"):
        dataset = CocoInstances(dump(tmp_path / "instances.json", data), tmp_path, max_bad=0.1)
    assert len(dataset) == 9 and 4 not in dataset.image_ids
    data["annotations"][6]["category_id"] = 98
    with pytest.warns(UserWarning), pytest.raises(DataError, match="2 bad samples of 10"):
        CocoInstances(dump(tmp_path / "instances.json", data), tmp_path, max_bad=0.1)


def test_panoptic_segment_missing_from_png_is_an_error(tmp_path: Path) -> None:
    write_image(tmp_path / "img.png")
    write_png(tmp_path / "pan" / "img.png", id2rgb(np.full((H, W), 5)))
    ann = {
        "image_id": 1,
        "file_name": "img.png",
        "segments_info": [{"id": 5, "category_id": 7}, {"id": 6, "category_id": 3}],
    }
    data = {
        "images": [{"id": 1, "file_name": "img.png", "height": H, "width": W}],
        "annotations": [ann],
        "categories": CATEGORIES,
    }
    dataset = CocoPanoptic(dump(tmp_path / "p.json", data), tmp_path, tmp_path / "pan", max_bad=0.0)
    with pytest.raises(DataError, match=r"0 allowed.*segment 6 does not appear in '.*img.png' \(empty mask\)"):
        dataset[0]
