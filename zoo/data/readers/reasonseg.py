"""LISA's ReasonSeg: an image beside a LabelMe-style JSON with query texts and target / ignore polygons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from zoo.data.readers.common import DataError, ReaderDataset, decode_segmentation, load_image, load_json, require
from zoo.data.schema import Sample
from zoo.data.synthetic import INSTRUCTIONS
from zoo.data.transforms import Transform
from zoo.registry import register

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def polygon_mask(points: list, height: int, width: int, where: str) -> np.ndarray:
    """A LabelMe polygon ([[x, y], ...]) rasterised with pycocotools, as COCO polygons are."""
    flat = np.asarray(points, dtype=np.float64).reshape(-1)
    return decode_segmentation([flat], height, width, where)


@register("dataset")
class ReasonSeg(ReaderDataset):
    """`folder/*.json` (LabelMe-style: `text` queries, `is_sentence`, `shapes[*].{label, points}`) with the image
    of the same stem. Each query text is one referring sample; its target is the union of the shapes not
    labelled "ignore" (those become ignored pixels) or "flag" (skipped), as LISA reads them. `benchmark` defaults
    to "<parent folder>_<folder>" (e.g. "ReasonSeg_val"); `meta["image_id"]` is the JSON file's stem.
    """

    def __init__(
        self,
        folder: str | Path,
        transform: Transform | None = None,
        max_bad: float = 0.01,
        seed: int = 0,
        benchmark: str | None = None,
    ) -> None:
        super().__init__(transform, max_bad, seed)
        self.folder = Path(folder)
        self.benchmark = benchmark or f"{self.folder.resolve().parent.name}_{self.folder.name}"
        if not self.folder.is_dir():
            raise DataError(f"ReasonSeg folder '{self.folder}' does not exist")
        files = sorted(self.folder.glob("*.json"))
        if not files:
            raise DataError(f"ReasonSeg folder '{self.folder}' has no JSON files")
        self.index_records(files, "referring", lambda _, path: str(path), self._parse)

    def _parse(self, path: Path, at: str) -> list[tuple]:
        """One record per query text of the JSON file at `path`."""
        record = load_json(path)
        texts = require(record, "text", at)
        texts = [texts] if isinstance(texts, str) else list(texts)
        shapes = require(record, "shapes", at)
        if not texts:
            raise DataError(f"{path}: no query text")
        return [(path, query, bool(record.get("is_sentence", False)), shapes, record) for query in texts]

    def _image_path(self, json_path: Path) -> Path:
        for suffix in _IMAGE_SUFFIXES:
            candidate = json_path.with_suffix(suffix)
            if candidate.exists():
                return candidate
        raise DataError(f"{json_path}: no image '{json_path.stem}' with suffix {', '.join(_IMAGE_SUFFIXES)}")

    def load(self, index: int) -> Sample:
        path, query, is_sentence, shapes, record = self.records[index]
        image = load_image(self._image_path(path), record.get("imageHeight"), record.get("imageWidth"), str(path))
        height, width = image.shape[1:]
        target = np.zeros((height, width), dtype=bool)
        ignore = np.zeros((height, width), dtype=bool)
        for j, shape in enumerate(shapes):
            label = require(shape, "label", f"{path}: shapes[{j}]")
            if label == "flag":
                continue
            mask = polygon_mask(require(shape, "points", f"{path}: shapes[{j}]"), height, width, f"{path}: shapes[{j}]")
            (ignore if label == "ignore" else target)[...] |= mask
        if not target.any():
            raise DataError(f"{path}: no target shape (only 'ignore'/'flag' labels)")
        ignore &= ~target
        return Sample(
            image=image,
            task="referring",
            instruction=INSTRUCTIONS["referring"],
            conditions=[query],
            masks=torch.from_numpy(target)[None],
            labels=torch.zeros(1, dtype=torch.long),
            ignore=torch.from_numpy(ignore) if ignore.any() else None,
            meta={"image_id": path.stem, "file_name": path.name, "is_sentence": is_sentence},
        )
