"""Semantic segmentation label PNGs (ADE20K / detectron2 style): one target per class present, an ignore label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zoo.data.readers.common import DataError, ReaderDataset, load_image, stack_masks
from zoo.data.schema import Sample
from zoo.data.synthetic import INSTRUCTIONS
from zoo.data.transforms import Transform
from zoo.registry import register


def read_names(categories: list[str] | str | Path) -> list[str]:
    """Class names given inline or as a text file with one name per line (ADE20K's objectInfo150 names)."""
    if isinstance(categories, list):
        return list(categories)
    path = Path(categories)
    if not path.is_file():
        raise DataError(f"Category file '{path}' does not exist")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@register("dataset")
class SemanticSegmentation(ReaderDataset):
    """`label_root/*.png` holding a class index per pixel, with `image_root/<same stem><image_suffix>` images.

    Each class present becomes one target (all stuff-like: semantic labels do not separate instances); pixels
    equal to `ignore_label` become `ignore`. `reduce_zero_label` reads ADE20K's raw annotations (0 = "other" is
    ignored, classes shift down by one); detectron2's converted `annotations_detectron2` need it off. A value
    that is neither a class nor the ignore label is an error naming the file, never a silent background.
    `benchmark` defaults to the label folder's name; `meta["image_id"]` is the label file's stem.
    """

    def __init__(
        self,
        image_root: str | Path,
        label_root: str | Path,
        categories: list[str] | str,
        ignore_label: int = 255,
        reduce_zero_label: bool = False,
        image_suffix: str = ".jpg",
        transform: Transform | None = None,
        max_bad: float = 0.01,
        seed: int = 0,
        benchmark: str | None = None,
    ) -> None:
        super().__init__(transform, max_bad, seed)
        self.image_root = Path(image_root)
        self.label_root = Path(label_root)
        self.benchmark = benchmark or self.label_root.name
        if not self.label_root.is_dir():
            raise DataError(f"Label folder '{self.label_root}' does not exist")
        self.names = read_names(categories)
        self.categories = [{"id": k, "name": n, "isthing": False} for k, n in enumerate(self.names)]
        self.ignore_label = ignore_label
        self.reduce_zero_label = reduce_zero_label
        self.image_suffix = image_suffix
        self.labels = sorted(self.label_root.glob("*.png"))
        if not self.labels:
            raise DataError(f"Label folder '{self.label_root}' has no PNG files")
        self.sample_tasks = ["panoptic"] * len(self.labels)

    def load(self, index: int) -> Sample:
        label_path = self.labels[index]
        where = f"{label_path}"
        try:
            with Image.open(label_path) as png:
                if png.mode not in ("L", "P", "I", "I;16"):
                    raise DataError(f"{where}: label PNG has mode {png.mode}, expected a single-channel index image")
                label = np.asarray(png).astype(np.int64)
        except (OSError, ValueError, SyntaxError) as error:
            raise DataError(f"{where}: cannot read label PNG: {error}") from None
        image = load_image(self.image_root / f"{label_path.stem}{self.image_suffix}", *label.shape, where)
        if self.reduce_zero_label:
            label = np.where((label == 0) | (label == self.ignore_label), self.ignore_label, label - 1)
        ignore = label == self.ignore_label
        present = np.unique(label[~ignore])
        unknown = present[(present < 0) | (present >= len(self.names))]
        if unknown.size:
            raise DataError(f"{where}: unknown class ids {unknown.tolist()} (have {len(self.names)} classes)")
        if present.size == 0:
            raise DataError(f"{where}: every pixel is ignored, no target")
        height, width = label.shape
        labels = torch.from_numpy(present)
        return Sample(
            image=image,
            task="panoptic",
            instruction=INSTRUCTIONS["panoptic"],
            conditions=list(self.names),
            masks=stack_masks([label == c for c in present], height, width),
            labels=labels,
            ignore=torch.from_numpy(ignore),
            meta={
                "image_id": label_path.stem,
                "file_name": label_path.name,
                "category_ids": labels,
                "isthing": torch.zeros(len(labels), dtype=torch.bool),
            },
        )
