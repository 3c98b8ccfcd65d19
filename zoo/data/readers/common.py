"""What every format reader shares: clear errors, lazy mask decoding, category tables, and bad-sample policy.

Readers build a small index at start-up (ids, file names, compact annotation data) and decode images and masks
only in `__getitem__`, so a COCO-sized file indexes in seconds and workers share nothing heavy.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor
from torch.utils.data import Dataset

from zoo.data.io import read_image
from zoo.data.schema import Sample
from zoo.data.transforms import Transform


class DataError(ValueError):
    """A file or record that cannot become a correct sample; the message names the file and the record."""


# A polygon list `"segmentation": [[x, y, ...], ...]` (no nesting deeper, no quotes inside).
_POLYGONS = re.compile(rb'"segmentation"\s*:\s*(\[\s*\[[^\]"]*\](?:\s*,\s*\[[^\]"]*\])*\s*\])')


def load_json(path: str | Path, defer_polygons: bool = False) -> Any:
    """Parse a JSON file, naming the file (and the line) in the error instead of a bare decoder message.

    `defer_polygons` keeps each `"segmentation"` polygon list as its JSON text (a str) instead of parsing it: COCO's
    polygons are most of an instances file, and parsing ~40M floats into Python objects is most of the time and
    memory of indexing it. They are parsed per sample, in `decode_segmentation`.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
        if defer_polygons:
            data = _POLYGONS.sub(rb'"segmentation":"\1"', data)
        return json.loads(data)
    except FileNotFoundError:
        raise DataError(f"Annotation file '{path}' does not exist") from None
    except json.JSONDecodeError as error:
        raise DataError(f"Annotation file '{path}' is not valid JSON: {error}") from None


def expect_list(data: Any, what: str, where: str | Path) -> list:
    """`data` when the file holds the list a reader expects, else an error naming the file and its wrong type."""
    if not isinstance(data, list):
        raise DataError(f"{where}: expected a list of {what}, got {type(data).__name__}")
    return data


def require(record: dict, key: str, where: str) -> Any:
    """`record[key]`, or an error naming the record and the key it lacks."""
    try:
        return record[key]
    except (KeyError, TypeError):
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise DataError(f"{where}: missing key '{key}' (has {keys})") from None


def images_by_id(data: dict, where: str) -> dict[int, tuple[str, int, int]]:
    """A COCO file's `images` as id -> (file name, height, width), each field checked."""
    images = {}
    for k, image in enumerate(require(data, "images", where)):
        at = f"{where}: images[{k}]"
        images[int(require(image, "id", at))] = (
            require(image, "file_name", at),
            int(require(image, "height", at)),
            int(require(image, "width", at)),
        )
    return images


def compact_segmentation(segmentation: Any, where: str) -> Any:
    """Polygons as float arrays (or deferred JSON text) and RLE as-is: a fraction of the memory of parsed lists."""
    if isinstance(segmentation, str) and segmentation.startswith("["):
        return segmentation
    if isinstance(segmentation, list):
        if not segmentation or not all(isinstance(p, list | np.ndarray) for p in segmentation):
            raise DataError(f"{where}: segmentation is an empty or malformed polygon list")
        return [np.asarray(p, dtype=np.float64) for p in segmentation]
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        return segmentation
    raise DataError(f"{where}: segmentation is neither polygons nor RLE ({type(segmentation).__name__})")


def decode_segmentation(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """COCO polygons, uncompressed RLE or compressed RLE to a bool [H, W] mask (pycocotools), never empty."""
    try:
        if isinstance(segmentation, str):  # polygons deferred by `load_json`
            segmentation = json.loads(segmentation)
        if isinstance(segmentation, list):
            if any(len(p) < 6 or len(p) % 2 for p in segmentation):
                raise DataError(f"{where}: a polygon has fewer than 3 points or an odd coordinate count")
            rle = mask_utils.merge(
                mask_utils.frPyObjects([np.asarray(p, np.float64) for p in segmentation], height, width)
            )
        else:
            size = list(segmentation["size"])
            if size != [height, width]:
                raise DataError(f"{where}: RLE size {size} disagrees with the image size {[height, width]}")
            counts = segmentation["counts"]
            rle = mask_utils.frPyObjects(segmentation, height, width) if isinstance(counts, list) else segmentation
        mask = mask_utils.decode(rle).astype(bool)
    except DataError:
        raise
    except Exception as error:  # pycocotools raises bare exceptions on corrupt counts
        raise DataError(f"{where}: cannot decode segmentation: {error}") from None
    if not mask.any():
        raise DataError(f"{where}: the mask is empty (zero area)")
    return mask


def encode_mask(mask: np.ndarray) -> dict:
    """A bool [H, W] mask as COCO compressed RLE with a str `counts`, as the published JSONs store it."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def stack_masks(masks: Sequence[np.ndarray], height: int, width: int) -> Tensor:
    if not masks:
        return torch.zeros(0, height, width, dtype=torch.bool)
    return torch.from_numpy(np.stack(masks))


class CategoryTable:
    """COCO categories (sparse ids) as the contiguous table zoo uses: labels index `names`, PQ reads `isthing`."""

    def __init__(self, categories: list[dict], where: str, default_isthing: bool = True) -> None:
        if not categories:
            raise DataError(f"{where}: no categories")
        self.table: list[dict] = []
        self.index: dict[int, int] = {}
        for k, c in enumerate(sorted(categories, key=lambda c: require(c, "id", f"{where}: category"))):
            source_id = int(c["id"])
            if source_id in self.index:
                raise DataError(f"{where}: category id {source_id} appears twice")
            self.index[source_id] = k
            name = require(c, "name", f"{where}: category {source_id}")
            self.table.append({"id": k, "name": name, "isthing": bool(c.get("isthing", default_isthing))})
        self.names = [c["name"] for c in self.table]
        self.isthing = [c["isthing"] for c in self.table]

    def lookup(self, category_id: int, where: str) -> int:
        try:
            return self.index[int(category_id)]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: unknown category id {category_id!r}") from None


class ReaderDataset(Dataset[Sample]):
    """Base of the format readers: lazy samples, optional transform, and a bounded tolerance for bad samples.

    A sample that fails to load (missing or corrupt image, size mismatch, empty mask) is replaced by the next
    loadable sample of the same task, with a warning naming the file and record; once more than `max_bad` (a
    fraction of the dataset, rounded up) have failed in this process the run stops with an error, so
    a broken dataset cannot train silently on its remainder. Records already invalid in the index count the
    same way. Subclasses set `self.sample_tasks` (`index_records` does) and implement `load(index)`.

    Every sample's `meta["benchmark"]` is `self.benchmark`: the reader's `benchmark` argument, else a name each
    reader derives from its files (e.g. "refcoco_val"), so evaluation reports one row per dataset and split.
    """

    sample_tasks: list[str]
    benchmark: str

    def __init__(self, transform: Transform | None = None, max_bad: float = 0.01, seed: int = 0) -> None:
        if not 0 <= max_bad < 1:
            raise ValueError(f"max_bad must be a fraction in [0, 1), got {max_bad}")
        self.transform = transform
        self.max_bad = max_bad
        self.seed = seed
        self.bad: dict[str, str] = {}  # record -> reason, for the samples and records skipped so far

    def load(self, index: int) -> Sample:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.sample_tasks)

    def skip_record(self, where: str, reason: str, total: int, stacklevel: int = 3) -> None:
        """Count a record or sample left out (at indexing or loading), warn, and fail if too many are bad.

        `stacklevel` points the warning at the code that built or indexed the dataset, not at the reader.
        """
        self.bad[where] = reason
        allowed = math.ceil(self.max_bad * total - 1e-9)
        if len(self.bad) > allowed:
            first = "; ".join(list(self.bad.values())[:3])
            raise DataError(
                f"{type(self).__name__}: {len(self.bad)} bad samples of {total}, more than the {allowed} allowed "
                f"(max_bad={self.max_bad}). First: {first}"
            )
        warnings.warn(f"Skipping bad sample ({len(self.bad)} so far): {reason}", stacklevel=stacklevel)

    def index_records(
        self,
        records: Sequence[Any],
        task: str,
        locate: Callable[[int, Any], str],
        parse: Callable[[Any, str], Iterable[tuple]],
    ) -> None:
        """Index `records` into `self.records` (and their tasks), leaving out each bad one under `max_bad`.

        `locate(k, record)` names record k in errors; `parse(record, at)` gives its index entries or raises
        DataError, and a record is kept or left out whole, so a sample never silently misses a target.
        """
        self.records: list[tuple] = []
        for k, record in enumerate(records):
            at = locate(k, record)
            try:
                self.records.extend(parse(record, at))
            except DataError as error:
                self.skip_record(at, str(error), len(records), stacklevel=4)
        self.sample_tasks = [task] * len(self.records)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"Index {index} out of range for {len(self)} samples")
        task = self.sample_tasks[index]
        for step in range(len(self)):
            candidate = (index + step) % len(self)
            if self.sample_tasks[candidate] != task:
                continue
            try:
                sample = self.load(candidate)
                sample.meta["benchmark"] = self.benchmark
                if self.transform is not None:
                    try:
                        sample = self.transform(sample, np.random.default_rng([self.seed, candidate]))
                    except ValueError as error:  # e.g. no crop keeps the referred object
                        name = sample.meta.get("file_name")
                        raise DataError(f"{type(self).__name__}[{candidate}] ({name}): {error}") from None
            except DataError as error:
                self.skip_record(f"{type(self).__name__}[{candidate}]", str(error), len(self))
                continue
            return sample
        raise DataError(
            f"{type(self).__name__}: no loadable sample of task '{task}'; last: {list(self.bad.values())[-1]}"
        )


class AnnotationFileReader(ReaderDataset):
    """A reader of one annotation file over an image folder; `benchmark` defaults to the file's stem."""

    def __init__(
        self,
        annotation_file: str | Path,
        image_root: str | Path,
        transform: Transform | None,
        max_bad: float,
        seed: int,
        benchmark: str | None,
    ) -> None:
        super().__init__(transform, max_bad, seed)
        self.annotation_file, self.image_root = Path(annotation_file), Path(image_root)
        self.benchmark = benchmark or self.annotation_file.stem

    def json_list(self, what: str) -> list:
        """The annotation file's records, which these formats store as one JSON list of `what`."""
        return expect_list(load_json(self.annotation_file), what, self.annotation_file)

    def load_indexed_image(self, image_id: Any, file_name: str, height: int, width: int) -> tuple[Tensor, str]:
        """An indexed image, checked against its recorded size, and the name of its record for later errors."""
        where = f"{self.annotation_file}: image {image_id} ('{file_name}')"
        return load_image(self.image_root / file_name, height, width, where), where


def load_image(path: Path, height: int | None, width: int | None, where: str) -> Tensor:
    """Read an image and check it against the annotation's size, naming the record on any failure."""
    try:
        image = read_image(path)
    except ValueError as error:
        raise DataError(f"{where}: {error}") from None
    if height is not None and width is not None and tuple(image.shape[1:]) != (int(height), int(width)):
        raise DataError(
            f"{where}: image '{path}' is {image.shape[2]}x{image.shape[1]} but the annotation says {width}x{height}"
        )
    return image
