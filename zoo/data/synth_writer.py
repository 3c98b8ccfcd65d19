"""Write the synthetic dataset to disk in every published format, so the real readers are what the default runs.

Layout under `out/` (image file names are relative to `out/images`):
  images/{split}/{id:012d}.png                  lossless, so reading back gives the generator's exact pixels
  annotations/instances_{split}.json            COCO instances (things, compressed RLE)
  annotations/panoptic_{split}.json + panoptic_{split}/*.png    COCO panoptic (segment ids by id2rgb)
  semantic_{split}/*.png + categories.txt       semantic label PNGs (class index, 255 = ignore)
  refcoco/refs(unc).p + refcoco/instances.json  RefCOCO (both splits in one file, as published)
  grefcoco/grefs(unc).json                      gRefCOCO, with a multi-target and a no-target expression per image
  coco_interactive_{split}_psalm.json           COCO-Interactive (only the sample's prompt kind is non-empty)
  coco_vgdseg_{split}.json                      X-SAM VGD (all four prompts, generated from the masks)
  reasonseg/{split}/{id}.png + .json            ReasonSeg (target polygon = convex hull of the object)
  gcg_{split}.json                              GranD-f grounded captions
  llava_{split}.json                            LLaVA conversations (the caption)
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from scipy.spatial import ConvexHull

from zoo.data.dataset import SyntheticSegmentation
from zoo.data.io import write_png
from zoo.data.prompts import PROMPT_KINDS, all_prompts
from zoo.data.readers.coco import id2rgb
from zoo.data.readers.common import encode_mask
from zoo.data.synthetic import CATEGORIES, COLOURS, INSTRUCTIONS, THING_NAMES, caption, make_scene

REFCOCO_VAL_OFFSET = 1_000_000  # RefCOCO keeps both splits in one instances.json, so val image ids are shifted
_ANNS_PER_IMAGE = 100


def _coco_categories() -> list[dict]:
    """COCO-style 1-based ids: the readers map them back to zoo's contiguous 0-based table."""
    return [
        {"id": c["id"] + 1, "name": c["name"], "isthing": int(c["isthing"]), "supercategory": "shape"}
        for c in CATEGORIES
    ]


def _bbox(mask: np.ndarray) -> list[float]:
    rows, cols = np.nonzero(mask)
    return [
        float(cols.min()),
        float(rows.min()),
        float(cols.max() - cols.min() + 1),
        float(rows.max() - rows.min() + 1),
    ]


def _hull(mask: np.ndarray) -> list[list[float]]:
    rows, cols = np.nonzero(mask)
    corners = np.concatenate([np.stack([cols + dx, rows + dy], 1) for dx in (0, 1) for dy in (0, 1)]).astype(float)
    hull = ConvexHull(corners)
    return corners[hull.vertices].tolist()


def _dump(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def write_synthetic(
    out: str | Path,
    num_images: int = 64,
    val_images: int = 16,
    image_size: int = 64,
    seed: int = 0,
    max_expressions: int = 2,
    max_prompts: int = 3,
) -> Path:
    """Write train and val splits of `SyntheticSegmentation(...)` with these arguments in every format."""
    out = Path(out)
    refs: list[dict] = []
    grefs: list[dict] = []
    ref_images: list[dict] = []
    ref_annotations: list[dict] = []
    for split, count in (("train", num_images), ("val", val_images)):
        dataset = SyntheticSegmentation(
            split, count, image_size, seed, max_expressions=max_expressions, max_prompts=max_prompts
        )
        slots = len(dataset.sample_tasks) // count
        images, instances, panoptic, interactive, vgd, gcg, llava = [], [], [], [], [], [], []
        rng = np.random.default_rng([seed, split == "val", 7])
        for i in range(count):
            scene = make_scene(dataset.scene_seed, i, image_size)
            samples = [dataset[i * slots + s] for s in range(slots)]
            by_task: dict[str, list] = {}
            for sample in samples:
                by_task.setdefault(sample.task, []).append(sample)
            file_name = f"{split}/{i:012d}.png"
            write_png(out / "images" / file_name, scene.image)
            info = {"id": i, "file_name": file_name, "height": image_size, "width": image_size}
            images.append(info)
            thing_anns = []
            for k, obj in enumerate(scene.objects):
                thing_anns.append(
                    {
                        "id": i * _ANNS_PER_IMAGE + k,
                        "image_id": i,
                        "category_id": next(c["id"] for c in CATEGORIES if c["name"] == obj.category) + 1,
                        "segmentation": encode_mask(obj.mask),
                        "bbox": _bbox(obj.mask),
                        "area": int(obj.area),
                        "iscrowd": 0,
                    }
                )
            instances.extend(thing_anns)

            ids = np.zeros((image_size, image_size), dtype=np.int64)
            segments_info = []
            for k, segment in enumerate(scene.segments):
                ids[segment.mask] = k + 1
                segments_info.append(
                    {"id": k + 1, "category_id": segment.category_id + 1, "iscrowd": 0, "bbox": _bbox(segment.mask)}
                )
            png_name = f"{i:012d}.png"
            write_png(out / f"panoptic_{split}" / png_name, id2rgb(ids))
            panoptic.append({"image_id": i, "file_name": png_name, "segments_info": segments_info})
            semantic = np.zeros((image_size, image_size), dtype=np.uint8)
            for segment in scene.segments:
                semantic[segment.mask] = segment.category_id
            write_png(out / f"semantic_{split}" / png_name, semantic)

            _refs(scene, by_task.get("referring", []), thing_anns, i, split, refs, grefs)
            offset = REFCOCO_VAL_OFFSET if split == "val" else 0
            ref_images.append({**info, "id": i + offset})
            ref_annotations.extend(
                {**a, "id": a["id"] + offset * _ANNS_PER_IMAGE, "image_id": i + offset} for a in thing_anns
            )

            for sample in by_task.get("interactive", []):
                anns = []
                for k, (mask, prompt, kind) in enumerate(
                    zip(sample.masks, sample.prompts, sample.prompt_types, strict=True)
                ):
                    mask_np, empty = mask.numpy(), np.zeros((image_size, image_size), dtype=bool)
                    prompts = {
                        f"{p}_visual_prompt_mask": encode_mask(prompt.numpy() if p == kind else empty)
                        for p in PROMPT_KINDS
                    }
                    category = int(sample.meta["category_ids"][k]) + 1
                    anns.append(
                        {
                            "id": k,
                            "image_id": i,
                            "category_id": category,
                            "segmentation": encode_mask(mask_np),
                            "bbox": _bbox(mask_np),
                            "iscrowd": 0,
                            **prompts,
                        }
                    )
                interactive.append({"image": file_name, "image_info": info, "new_img_id": i, "anns": anns})

            vgd_anns = []
            for ann, obj in zip(thing_anns, scene.objects, strict=True):
                prompts = all_prompts(obj.mask, rng)
                visual = {k.replace("_mask", ""): encode_mask(v) for k, v in prompts.items()}
                vgd_anns.append({**ann, "bbox_mode": "XYWH_ABS", "visual_prompts": visual})
            vgd.append(
                {
                    "image_file": file_name,
                    "image_id": i,
                    "image_size": [image_size, image_size],
                    "image_info": info,
                    "annotations": vgd_anns,
                }
            )

            text = caption(scene)
            groundings = {}
            for obj in scene.objects:
                phrase = f"{obj.colour} {obj.category}"
                start = text.find(phrase)
                groundings[phrase] = {
                    "token_positives": [start, start + len(phrase)],
                    "rle_masks": [encode_mask(obj.mask)],
                }
            gcg.append({"file_name": file_name, "caption": text, "groundings": groundings})
            llava.append(
                {
                    "id": f"{split}-{i}",
                    "image": file_name,
                    "conversations": [
                        {"from": "human", "value": f"<image>\n{INSTRUCTIONS['caption']}"},
                        {"from": "gpt", "value": text},
                    ],
                }
            )
            _reasonseg(out / "reasonseg" / split, i, scene)

        categories = _coco_categories()
        _dump(
            out / "annotations" / f"instances_{split}.json",
            {"images": images, "annotations": instances, "categories": categories},
        )
        _dump(
            out / "annotations" / f"panoptic_{split}.json",
            {"images": images, "annotations": panoptic, "categories": categories},
        )
        _dump(out / f"coco_interactive_{split}_psalm.json", interactive)
        _dump(out / f"coco_vgdseg_{split}.json", vgd)
        _dump(out / f"gcg_{split}.json", gcg)
        _dump(out / f"llava_{split}.json", llava)
    (out / "categories.txt").write_text("\n".join(c["name"] for c in CATEGORIES) + "\n")
    _dump(
        out / "refcoco" / "instances.json",
        {"images": ref_images, "annotations": ref_annotations, "categories": _coco_categories()},
    )
    (out / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    _dump(out / "grefcoco" / "grefs(unc).json", grefs)
    return out


def _refs(scene, referring: list, thing_anns: list[dict], image: int, split: str, refs: list, grefs: list) -> None:
    """One RefCOCO ref per referring sample (its one expression), in sample order; gRefCOCO adds two more."""
    offset = REFCOCO_VAL_OFFSET if split == "val" else 0
    image_id = image + offset
    ann_ids = [a["id"] + offset * _ANNS_PER_IMAGE for a in thing_anns]
    for sample in referring:
        target = next(k for k, o in enumerate(scene.objects) if np.array_equal(o.mask, sample.masks[0].numpy()))
        ref_id = len(refs)
        sentence = {
            "sent": sample.conditions[0],
            "raw": sample.conditions[0],
            "tokens": sample.conditions[0].split(),
            "sent_id": ref_id,
        }
        refs.append(
            {
                "ref_id": ref_id,
                "ann_id": ann_ids[target],
                "image_id": image_id,
                "split": split,
                "sentences": [sentence],
                "sent_ids": [ref_id],
                "category_id": thing_anns[target]["category_id"],
                "file_name": f"{split}/{image:012d}.png",
            }
        )
        grefs.append({**refs[-1], "ann_id": [ann_ids[target]], "no_target": False})
    present = {(o.colour, o.category) for o in scene.objects}
    absent = next((c, n) for c in COLOURS for n in THING_NAMES if (c, n) not in present)
    for ann, words in ((ann_ids, "the shape"), ([-1], f"the {absent[0]} {absent[1]}")):
        ref_id = len(grefs) + REFCOCO_VAL_OFFSET
        grefs.append(
            {
                "ref_id": ref_id,
                "ann_id": ann,
                "image_id": image_id,
                "split": split,
                "sentences": [{"sent": words, "raw": words, "tokens": words.split(), "sent_id": ref_id}],
                "sent_ids": [ref_id],
                "no_target": ann == [-1],
            }
        )


def _reasonseg(folder: Path, image: int, scene) -> None:
    """The largest object is the answer to a query that names it; the image is written beside the JSON."""
    target = max(scene.objects, key=lambda o: o.area)
    write_png(folder / f"{image:012d}.png", scene.image)
    shapes = [{"label": "target", "points": _hull(target.mask), "shape_type": "polygon"}]
    record = {
        "text": [f"the largest {target.category}", f"the {target.colour} {target.category}"],
        "is_sentence": False,
        "shapes": shapes,
        "imageHeight": scene.image.shape[0],
        "imageWidth": scene.image.shape[1],
    }
    _dump(folder / f"{image:012d}.json", record)
