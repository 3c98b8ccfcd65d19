"""COCO instances (polygons / RLE) and COCO panoptic (PNG + JSON, also ADE20K panoptic) as generic segmentation."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from zoo.data.readers.common import (
    AnnotationFileReader,
    CategoryTable,
    DataError,
    compact_segmentation,
    decode_segmentation,
    images_by_id,
    load_json,
    require,
    stack_masks,
)
from zoo.data.schema import Sample
from zoo.data.synthetic import INSTRUCTIONS
from zoo.data.transforms import Transform
from zoo.registry import register


def xywh_to_xyxy(box: list[float]) -> list[float]:
    x, y, w, h = box
    return [x, y, x + w, y + h]


# A val / test split in a COCO file name: instances_val2017, panoptic_minival2014, image_info_test-dev2017.
_EVAL_SPLIT = re.compile(r"(?:^|[^a-z])(?:mini)?(?:val|test)", re.IGNORECASE)


def keeps_empty(keep_empty: bool | None, annotation_file: Path) -> bool:
    """Whether a reader keeps images without (non-crowd) annotations: as asked, else for val / test files.

    Training leaves them out (Mask2Former's mappers: nothing to learn), but COCOeval and panopticapi score every
    image of the file, each prediction on such an image a false positive; dropping them would inflate AP and PQ.
    """
    return bool(_EVAL_SPLIT.search(annotation_file.stem)) if keep_empty is None else keep_empty


def _image_id(ann: dict, images: dict, at: str) -> int:
    """An annotation's image id, checked against the file's `images` (a record for no image is a data error)."""
    image_id = int(require(ann, "image_id", at))
    if image_id not in images:
        raise DataError(f"{at}: image id {image_id} is not in `images`")
    return image_id


class _CocoReader(AnnotationFileReader):
    """Shared by the COCO readers: the file's category table and images, and the panoptic samples over them."""

    def _read(self, keep_empty: bool | None, default_isthing: bool, defer_polygons: bool = False) -> tuple[dict, dict]:
        """The parsed file and its images by id; sets the category table and the empty-image policy."""
        self.keep_empty = keeps_empty(keep_empty, self.annotation_file)
        where = str(self.annotation_file)
        data = load_json(self.annotation_file, defer_polygons=defer_polygons)
        self.table = CategoryTable(require(data, "categories", where), where, default_isthing=default_isthing)
        self.categories = self.table.table
        return data, images_by_id(data, where)

    def _sample(
        self,
        image: Tensor,
        image_id: int,
        file_name: str,
        masks: list[np.ndarray],
        labels: list[int],
        crowds: list[bool],
        boxes: Tensor | None = None,
    ) -> Sample:
        """A panoptic sample over every category name, with the category, thing and crowd flags evaluation reads."""
        labels_t = torch.tensor(labels, dtype=torch.long)
        return Sample(
            image=image,
            task="panoptic",
            instruction=INSTRUCTIONS["panoptic"],
            conditions=list(self.table.names),
            masks=stack_masks(masks, *image.shape[1:]),
            labels=labels_t,
            boxes=boxes,
            meta={
                "image_id": image_id,
                "file_name": file_name,
                "category_ids": labels_t,
                "isthing": torch.tensor([self.table.isthing[c] for c in labels], dtype=torch.bool),
                "iscrowd": torch.tensor(crowds, dtype=torch.bool),
            },
        )


@register("dataset")
class CocoInstances(_CocoReader):
    """COCO instance annotations (`instances_*.json`) as generic-segmentation samples over all category names.

    Index-only at start-up: per image, its annotations' categories, boxes and segmentations (polygons kept as
    float arrays, RLE as given); masks are decoded per sample with pycocotools. Images without (non-crowd)
    annotations are left out for training, as Mask2Former does, and kept for evaluation, where COCOeval counts them
    (`keep_empty`; None: kept when the file name says val / test, see `keeps_empty`). Crowd annotations are targets
    flagged in `meta["iscrowd"]`: the loss leaves them out and evaluation scores them as COCOeval's iscrowd.
    `benchmark` defaults to the file's stem.
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_root: str | Path,
        transform: Transform | None = None,
        max_bad: float = 0.01,
        seed: int = 0,
        benchmark: str | None = None,
        keep_empty: bool | None = None,
    ) -> None:
        super().__init__(annotation_file, image_root, transform, max_bad, seed, benchmark)
        data, images = self._read(keep_empty, default_isthing=True, defer_polygons=True)
        where = str(self.annotation_file)
        per_image: dict[int, list] = {}
        broken: set = set()  # images with a bad annotation are left out whole, never with a target missing
        for k, ann in enumerate(require(data, "annotations", where)):
            try:  # fast path; a failing record is re-read below by the checking path, which says what is wrong
                image_id = ann["image_id"]
                if image_id not in images:
                    raise KeyError(image_id)
                entry = (
                    self.table.index[ann["category_id"]],
                    compact_segmentation(ann["segmentation"], ""),
                    ann.get("bbox"),
                    bool(ann.get("iscrowd", 0)),
                    ann.get("id"),
                )
            except (KeyError, TypeError, DataError):
                ids = f" (id {ann.get('id')}, image {ann.get('image_id')})" if isinstance(ann, dict) else ""
                at = f"{where}: annotations[{k}]{ids}"
                try:
                    image_id, entry = self._entry(ann, images, at)
                except DataError as error:
                    key = ann.get("image_id") if isinstance(ann, dict) else None
                    if key not in broken:
                        broken.add(key)
                        self.skip_record(at, str(error), len(images))
                    continue
            per_image.setdefault(image_id, []).append(entry)
        del data
        # Training: images with some non-crowd target only (detectron2's filter_images_with_only_crowd_annotations).
        trainable = [i for i in sorted(per_image) if not all(entry[3] for entry in per_image[i])]
        self.image_ids = [i for i in (sorted(images) if self.keep_empty else trainable) if i not in broken]
        self.images = {i: images[i] for i in self.image_ids}
        self.annotations = {i: per_image.get(i, []) for i in self.image_ids}
        self.sample_tasks = ["panoptic"] * len(self.image_ids)

    def _entry(self, ann: dict, images: dict, at: str) -> tuple[int, tuple]:
        """One annotation checked field by field: (image id, (category, segmentation, bbox, crowd, id))."""
        image_id = _image_id(ann, images, at)
        category = self.table.lookup(require(ann, "category_id", at), at)
        segmentation = compact_segmentation(require(ann, "segmentation", at), at)
        return image_id, (category, segmentation, ann.get("bbox"), bool(ann.get("iscrowd", 0)), ann.get("id"))

    def load(self, index: int) -> Sample:
        image_id = self.image_ids[index]
        file_name, height, width = self.images[image_id]
        image, where = self.load_indexed_image(image_id, file_name, height, width)
        masks, labels, boxes, crowds = [], [], [], []
        for category, segmentation, bbox, crowd, ann_id in self.annotations[image_id]:
            mask = decode_segmentation(segmentation, height, width, f"{where}, annotation {ann_id}")
            masks.append(mask)
            labels.append(category)
            boxes.append(xywh_to_xyxy(bbox) if bbox is not None else _mask_box(mask))
            crowds.append(crowd)
        boxes_t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        return self._sample(image, image_id, file_name, masks, labels, crowds, boxes_t)


def _mask_box(mask: np.ndarray) -> list[float]:
    rows, cols = np.nonzero(mask)
    return [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]


def rgb2id(color: np.ndarray) -> np.ndarray:
    """panopticapi's segment id of an RGB PNG: R + 256 G + 256^2 B."""
    color = color.astype(np.int64)
    return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """The inverse of `rgb2id`, for writing panoptic PNGs."""
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


@register("dataset")
class CocoPanoptic(_CocoReader):
    """COCO panoptic (`panoptic_*.json` + PNG folder, segment ids by rgb2id), also ADE20K panoptic in that format.

    Every segment becomes one target labelled by its contiguous category; crowd segments are flagged in
    `meta["iscrowd"]` (left out of the loss, panopticapi's crowd regions in PQ). The JSON is indexed at start-up;
    the PNG is decoded per sample, and a segment absent from its PNG is an error, not an empty target. Images with
    no (non-crowd) segment are kept or left out as `CocoInstances` does (`keep_empty`). `benchmark` defaults to the
    file's stem.
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_root: str | Path,
        panoptic_root: str | Path,
        transform: Transform | None = None,
        max_bad: float = 0.01,
        seed: int = 0,
        benchmark: str | None = None,
        keep_empty: bool | None = None,
    ) -> None:
        super().__init__(annotation_file, image_root, transform, max_bad, seed, benchmark)
        self.panoptic_root = Path(panoptic_root)
        data, images = self._read(keep_empty, default_isthing=False)
        where = str(self.annotation_file)
        self.index_records(
            require(data, "annotations", where),
            "panoptic",
            lambda k, ann: f"{where}: annotations[{k}] (image {ann.get('image_id')})",
            lambda ann, at: self._parse(ann, images, at),
        )

    def _parse(self, ann: dict, images: dict, at: str) -> list[tuple]:
        """An image's record (none when it has only crowd segments and empty images are left out)."""
        image_id = _image_id(ann, images, at)
        segments = [
            (
                int(require(s, "id", at)),
                self.table.lookup(require(s, "category_id", at), f"{at}, segment {s.get('id')}"),
                bool(s.get("iscrowd", 0)),
            )
            for s in require(ann, "segments_info", at)
        ]
        if self.keep_empty or not all(crowd for _, _, crowd in segments):
            return [(image_id, *images[image_id], require(ann, "file_name", at), segments)]
        return []

    def load(self, index: int) -> Sample:
        image_id, file_name, height, width, png_name, segments = self.records[index]
        image, where = self.load_indexed_image(image_id, file_name, height, width)
        png_path = self.panoptic_root / png_name
        try:
            with Image.open(png_path) as png:
                ids = rgb2id(np.asarray(png.convert("RGB")))
        except FileNotFoundError:
            raise DataError(f"{where}: panoptic PNG '{png_path}' does not exist") from None
        except (OSError, ValueError, SyntaxError) as error:
            raise DataError(f"{where}: cannot read panoptic PNG '{png_path}': {error}") from None
        if ids.shape != (height, width):
            raise DataError(
                f"{where}: panoptic PNG '{png_path}' is {ids.shape[1]}x{ids.shape[0]}, not {width}x{height}"
            )
        masks, labels, crowds = [], [], []
        for segment_id, category, crowd in segments:
            mask = ids == segment_id
            if not mask.any():
                raise DataError(f"{where}: segment {segment_id} does not appear in '{png_path}' (empty mask)")
            masks.append(mask)
            labels.append(category)
            crowds.append(crowd)
        return self._sample(image, image_id, file_name, masks, labels, crowds)
