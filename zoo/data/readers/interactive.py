"""COCO-Interactive (PSALM's JSON) and X-SAM's visual-grounded segmentation (VGD) JSON: prompts stored as RLE."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pycocotools import mask as mask_utils

from zoo.data.readers.coco import xywh_to_xyxy
from zoo.data.readers.common import (
    AnnotationFileReader,
    DataError,
    compact_segmentation,
    decode_segmentation,
    require,
    stack_masks,
)
from zoo.data.schema import Sample
from zoo.data.synthetic import INSTRUCTIONS
from zoo.data.transforms import Transform
from zoo.registry import register

PromptKind = Literal["point", "box", "scribble", "mask"]
KINDS: tuple[str, ...] = ("point", "box", "scribble", "mask")


def _rle_area(rle: dict | None) -> int:
    """Foreground pixels of a compressed RLE without decoding it (0 for a missing or empty prompt)."""
    if not rle:
        return 0
    return int(mask_utils.area(rle))


def _prompts(source: dict, suffix: str) -> tuple[dict, list[str]]:
    """Each kind's prompt RLE from `source["<kind><suffix>"]` (None when absent), and the kinds not empty."""
    prompts = {kind: source.get(f"{kind}{suffix}") for kind in KINDS}
    return prompts, [kind for kind in KINDS if _rle_area(prompts[kind]) > 0]


class _PromptReader(AnnotationFileReader):
    """Shared: pick each target's prompt kind (fixed, or seeded among the non-empty ones) and decode it.

    Both formats are a JSON list of image records; each names a record (`_locate`) and indexes it (`_parse`).
    """

    task: str

    def __init__(
        self,
        annotation_file: str | Path,
        image_root: str | Path,
        prompt_type: PromptKind | None = None,
        transform: Transform | None = None,
        max_bad: float = 0.01,
        seed: int = 0,
        benchmark: str | None = None,
    ) -> None:
        super().__init__(annotation_file, image_root, transform, max_bad, seed, benchmark)
        if prompt_type is not None and prompt_type not in KINDS:
            raise ValueError(f"Unknown prompt_type '{prompt_type}'. Candidates: {', '.join(KINDS)}.")
        self.prompt_type = prompt_type
        records = self.json_list("image records")
        self.index_records(records, self.task, self._locate, self._parse)

    def _locate(self, k: int, record: Any) -> str:
        """Record k's name in errors."""
        raise NotImplementedError

    def _parse(self, record: Any, at: str) -> list[tuple]:
        """A record's index entry: (image id, file name, height, width, targets)."""
        raise NotImplementedError

    def _prompt(
        self, prompt_rles: dict, available: list[str], index: int, k: int, height: int, width: int, at: str
    ) -> tuple[str, np.ndarray]:
        """Target k's prompt kind and its decoded mask."""
        if self.prompt_type is not None:
            if self.prompt_type not in available:
                raise DataError(f"{at}: has no non-empty '{self.prompt_type}' prompt")
            kind = self.prompt_type
        elif not available:
            raise DataError(f"{at}: every visual prompt is empty")
        else:
            kind = available[int(np.random.default_rng([self.seed, index, k]).integers(len(available)))]
        return kind, decode_segmentation(prompt_rles[kind], height, width, f"{at}, {kind} prompt")


@register("dataset")
class CocoInteractive(_PromptReader):
    """PSALM's `coco_interactive_{train,val}_psalm.json`: per image, COCO annotations each carrying
    `point_visual_prompt_mask`, `mask_visual_prompt_mask`, `box_visual_prompt_mask`, `scribble_visual_prompt_mask`.

    One interactive sample per image: one prompt per annotation, of `prompt_type` (evaluation, PSALM's
    `--region_mask_type`) or, when None, drawn per annotation among its non-empty prompts (PSALM's training),
    seeded by (seed, index). Target n answers prompt n. `benchmark` defaults to the file's stem.
    """

    task = "interactive"

    def _locate(self, k: int, record: Any) -> str:
        return f"{self.annotation_file}: record {k}"

    def _parse(self, record: Any, at: str) -> list[tuple]:
        info = require(record, "image_info", at)
        anns = []
        for j, ann in enumerate(require(record, "anns", at)):
            at_ann = f"{at}, anns[{j}] (id {ann.get('id')})"
            prompts, available = _prompts(ann, "_visual_prompt_mask")
            segmentation = compact_segmentation(require(ann, "segmentation", at_ann), at_ann)
            anns.append((ann.get("id"), segmentation, ann.get("bbox"), prompts, available))
        if not anns:
            raise DataError(f"{at}: no annotations")
        file_name = require(record, "image", at)
        size = (int(require(info, "height", at)), int(require(info, "width", at)))
        return [(record.get("new_img_id", info.get("id")), file_name, *size, anns)]

    def load(self, index: int) -> Sample:
        image_id, file_name, height, width, anns = self.records[index]
        image, where = self.load_indexed_image(image_id, file_name, height, width)
        masks, prompts, kinds, boxes = [], [], [], []
        for k, (ann_id, segmentation, bbox, prompt_rles, available) in enumerate(anns):
            at = f"{where}, annotation {ann_id}"
            masks.append(decode_segmentation(segmentation, height, width, at))
            kind, prompt = self._prompt(prompt_rles, available, index, k, height, width, at)
            prompts.append(prompt)
            kinds.append(kind)
            boxes.append(xywh_to_xyxy(bbox) if bbox is not None else None)
        return Sample(
            image=image,
            task="interactive",
            instruction=INSTRUCTIONS["interactive"],
            masks=stack_masks(masks, height, width),
            labels=torch.arange(len(masks)),
            prompts=stack_masks(prompts, height, width),
            prompt_types=kinds,
            boxes=torch.tensor(boxes, dtype=torch.float32) if all(b is not None for b in boxes) else None,
            meta={"image_id": image_id, "file_name": file_name},
        )


@register("dataset")
class VisualGrounding(_PromptReader):
    """X-SAM's `coco_vgdseg_{train,val}.json`: annotations with `visual_prompts` {point_visual_prompt,
    scribble_visual_prompt, box_visual_prompt, mask_visual_prompt} as RLE.

    One "vgd" sample per image: per category present, the prompt of one of its instances (chosen by seed)
    stands for the category, and every instance of that category is a target of that prompt (X-SAM's vgdseg:
    "segment all objects like this one"). `meta["category_ids"]` holds each target's category id as the file
    numbers it (the JSON has no category table); VGD AP is averaged over them. `benchmark` defaults to the
    file's stem.
    """

    task = "vgd"

    def _locate(self, k: int, record: Any) -> str:
        return (
            f"{self.annotation_file}: record {k} (image {record.get('image_id') if isinstance(record, dict) else '?'})"
        )

    def _parse(self, record: Any, at: str) -> list[tuple]:
        height, width = (int(v) for v in require(record, "image_size", at))
        by_category: dict[int, list] = {}
        for j, ann in enumerate(require(record, "annotations", at)):
            at_ann = f"{at}, annotations[{j}] (id {ann.get('id')})"
            prompts, available = _prompts(require(ann, "visual_prompts", at_ann), "_visual_prompt")
            segmentation = compact_segmentation(require(ann, "segmentation", at_ann), at_ann)
            category = int(require(ann, "category_id", at_ann))
            by_category.setdefault(category, []).append((ann.get("id"), segmentation, prompts, available))
        if not by_category:
            raise DataError(f"{at}: no annotations")
        return [(record.get("image_id"), require(record, "image_file", at), height, width, by_category)]

    def load(self, index: int) -> Sample:
        image_id, file_name, height, width, by_category = self.records[index]
        image, where = self.load_indexed_image(image_id, file_name, height, width)
        masks, labels, prompts, kinds, categories = [], [], [], [], []
        for k, (category, instances) in enumerate(sorted(by_category.items())):
            rng = np.random.default_rng([self.seed, index, k])
            ann_id, _, prompt_rles, available = instances[int(rng.integers(len(instances)))]
            kind, prompt = self._prompt(
                prompt_rles, available, index, k, height, width, f"{where}, annotation {ann_id}"
            )
            prompts.append(prompt)
            kinds.append(kind)
            for instance_id, segmentation, _, _ in instances:
                masks.append(decode_segmentation(segmentation, height, width, f"{where}, annotation {instance_id}"))
                labels.append(k)
                categories.append(category)
        return Sample(
            image=image,
            task="vgd",
            instruction=INSTRUCTIONS["vgd"],
            masks=stack_masks(masks, height, width),
            labels=torch.tensor(labels, dtype=torch.long),
            prompts=stack_masks(prompts, height, width),
            prompt_types=kinds,
            meta={
                "image_id": image_id,
                "file_name": file_name,
                "category_ids": torch.tensor(categories, dtype=torch.long),
            },
        )
