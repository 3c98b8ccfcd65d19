"""RefCOCO / RefCOCO+ (refs(unc).p), RefCOCOg (refs(umd).p) and gRefCOCO (grefs(unc).json) over instances.json.

The .p files are Python pickles. They are read with an unpickler that resolves no class or function at all
beyond a few plain builtin types, so a crafted file cannot run code: it fails with an error naming the file.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from zoo.data.readers.coco import xywh_to_xyxy
from zoo.data.readers.common import (
    DataError,
    ReaderDataset,
    compact_segmentation,
    decode_segmentation,
    expect_list,
    images_by_id,
    load_image,
    load_json,
    require,
    stack_masks,
)
from zoo.data.schema import Sample
from zoo.data.synthetic import INSTRUCTIONS
from zoo.data.transforms import Transform
from zoo.registry import register

_PLAIN_TYPES = {"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "int", "float", "bool", "complex"}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a class or function that is not plain data."""


class PlainDataUnpickler(pickle.Unpickler):
    """Accepts only plain builtin data types; any other global (os.system, eval, a class) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _PLAIN_TYPES:
            return getattr(__import__("builtins"), name)
        raise RefusedGlobal(f"refusing to load '{module}.{name}': only plain data types are allowed")


def load_plain_pickle(path: str | Path) -> Any:
    """Load a pickle of plain data (RefCOCO's refs files were written by Python 2, hence latin-1 strings)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"Refs file '{path}' does not exist") from None
    try:
        return PlainDataUnpickler(io.BytesIO(data), encoding="latin1").load()
    except RefusedGlobal as error:
        raise DataError(f"Refs file '{path}' is not a plain-data pickle: {error}") from None
    except Exception as error:  # truncated or garbage bytes raise EOFError, ValueError, KeyError, ...
        raise DataError(f"Refs file '{path}' is not a readable pickle: {type(error).__name__}: {error}") from None


class _Referring(ReaderDataset):
    """Shared by RefCOCO and gRefCOCO: instances.json indexed once, one sample per expression (or per ref).

    The formats differ only in how the refs file is read (`_read_refs`) and what a ref's targets are (`_wanted`,
    `_targets`).
    """

    _extra: dict = {}  # meta every sample of the format carries

    def __init__(
        self,
        refs_file: str | Path,
        instances_file: str | Path,
        image_root: str | Path,
        split: str = "train",
        per: Literal["expression", "ref"] = "expression",
        transform: Transform | None = None,
        max_bad: float = 0.01,
        seed: int = 0,
        benchmark: str | None = None,
    ) -> None:
        super().__init__(transform, max_bad, seed)
        self.refs_file, self.image_root, self.per = Path(refs_file), Path(image_root), per
        self.benchmark = benchmark or f"{self.refs_file.resolve().parent.name}_{split}"
        chosen = self._choose(self._read_refs(), split)
        self._index_instances(Path(instances_file), self._wanted(chosen))
        extra = {"split": split, **self._extra}

        def parse(ref: dict, at: str) -> list[tuple]:
            image_id, ann_ids = self._targets(ref, at, instances_file)
            return self._expand(int(ref["ref_id"]), image_id, ann_ids, require(ref, "sentences", at), at, extra)

        self.index_records(chosen, "referring", lambda _, ref: f"{self.refs_file}: ref {ref['ref_id']}", parse)

    def _read_refs(self) -> Any:
        """The refs file's data, before any check."""
        raise NotImplementedError

    def _wanted(self, chosen: list[dict]) -> set:
        """The annotation ids the chosen refs name: only those of instances.json are indexed."""
        raise NotImplementedError

    def _targets(self, ref: dict, at: str, instances_file: str | Path) -> tuple[int, list[int]]:
        """A ref's image id and target annotation ids, checked against instances.json."""
        raise NotImplementedError

    def _index_instances(self, instances_file: Path, wanted: set[int]) -> None:
        where = str(instances_file)
        data = load_json(instances_file)
        self.images = images_by_id(data, where)
        self.anns: dict[int, tuple] = {}
        for k, ann in enumerate(require(data, "annotations", where)):
            ann_id = ann.get("id")
            if ann_id in wanted:  # only annotations some expression refers to are kept
                at = f"{where}: annotations[{k}] (id {ann_id})"
                self.anns[int(ann_id)] = (
                    int(require(ann, "image_id", at)),
                    compact_segmentation(require(ann, "segmentation", at), at),
                    require(ann, "bbox", at),
                    int(require(ann, "category_id", at)),
                )

    def load(self, index: int) -> Sample:
        ref_id, image_id, ann_ids, texts, extra = self.records[index]
        file_name, height, width = self.images[image_id]
        where = f"{self.refs_file}: ref {ref_id} (image {image_id}, '{file_name}')"
        image = load_image(self.image_root / file_name, height, width, where)
        masks, boxes, categories = [], [], []
        for ann_id in ann_ids:
            _, segmentation, bbox, category = self.anns[ann_id]
            masks.append(decode_segmentation(segmentation, height, width, f"{where}, annotation {ann_id}"))
            boxes.append(xywh_to_xyxy(bbox))
            categories.append(category)
        return Sample(
            image=image,
            task="referring",
            instruction=INSTRUCTIONS["referring"],
            conditions=[" ".join(texts) if self.per == "ref" else texts[0]],
            masks=stack_masks(masks, height, width),
            labels=torch.zeros(len(masks), dtype=torch.long),
            boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            meta={
                "image_id": image_id,
                "file_name": file_name,
                "ref_id": ref_id,
                "source_category_ids": torch.tensor(categories, dtype=torch.long),
                "isthing": torch.ones(len(masks), dtype=torch.bool),
                **extra,
            },
        )

    def _choose(self, refs: Any, split: str) -> list[dict]:
        """The refs of `split`, a ref without `ref_id` numbered by its place; a file without any names its splits."""
        refs = expect_list(refs, "refs", self.refs_file)
        chosen = [r for r in refs if isinstance(r, dict) and r.get("split") == split]
        if not chosen:
            splits = sorted({str(r.get("split")) for r in refs if isinstance(r, dict)})
            raise DataError(f"{self.refs_file}: no refs in split '{split}'. Splits present: {', '.join(splits)}")
        return [{"ref_id": k, **r} for k, r in enumerate(chosen)]

    def _expand(
        self, ref_id: int, image_id: int, ann_ids: list[int], sentences: list, at: str, extra: dict
    ) -> list[tuple]:
        """One record per sentence (X-SAM's per-expression evaluation) or per ref (PSALM joins its sentences)."""
        texts, sent_ids = [], []
        for j, sentence in enumerate(sentences):
            texts.append(require(sentence, "sent", f"{at}, sentences[{j}]"))
            sent_ids.append(sentence.get("sent_id"))
        if not texts:
            raise DataError(f"{at}: no sentences")
        if self.per == "ref":
            return [(ref_id, image_id, ann_ids, texts, {**extra, "sent_ids": sent_ids})]
        return [
            (ref_id, image_id, ann_ids, [text], {**extra, "sent_id": sent_id})
            for text, sent_id in zip(texts, sent_ids, strict=True)
        ]


@register("dataset")
class RefCOCO(_Referring):
    """RefCOCO, RefCOCO+ (`refs(unc).p`) and RefCOCOg (`refs(umd).p`) with the COCO `instances.json` beside them.

    Refs are filtered to `split` (train / val / testA / testB / test); each sentence is one referring sample
    (`per="expression"`), or each ref one sample with its sentences joined (`per="ref"`, PSALM's training).
    `benchmark` defaults to "<refs folder>_<split>", e.g. "refcoco+_testA" for `refcoco+/refs(unc).p`.
    """

    def _read_refs(self) -> Any:
        return load_plain_pickle(self.refs_file)

    def _wanted(self, chosen: list[dict]) -> set:
        return {r.get("ann_id") for r in chosen}

    def _targets(self, ref: dict, at: str, instances_file: str | Path) -> tuple[int, list[int]]:
        ann_id = int(require(ref, "ann_id", at))
        image_id = int(require(ref, "image_id", at))
        if ann_id not in self.anns:
            raise DataError(f"{at}: annotation {ann_id} is not in {instances_file}")
        if self.anns[ann_id][0] != image_id or image_id not in self.images:
            raise DataError(f"{at}: annotation {ann_id} does not belong to image {image_id}")
        return image_id, [ann_id]


@register("dataset")
class GRefCOCO(_Referring):
    """gRefCOCO (`grefs(unc).json`): an expression may have several targets, or none (`ann_id` [-1], `no_target`).

    A no-target expression is a sample with zero masks. Every sample carries `meta["generalized"] = True`, so
    evaluation post-processes it as gRefCOCO does (threshold union) and reports N-acc / T-acc: a property of the
    benchmark, not of the answer, which the model must not be told. `benchmark` defaults to "<refs folder>_<split>".
    """

    _extra = {"generalized": True}

    def _read_refs(self) -> Any:
        return load_json(self.refs_file)

    def _wanted(self, chosen: list[dict]) -> set:
        return {a for r in chosen for a in np.atleast_1d(r.get("ann_id", [])).tolist()}

    def _targets(self, ref: dict, at: str, instances_file: str | Path) -> tuple[int, list[int]]:
        image_id = int(require(ref, "image_id", at))
        ann_ids = [int(a) for a in np.atleast_1d(require(ref, "ann_id", at)).tolist()]
        no_target = bool(ref.get("no_target", False)) or ann_ids == [-1]
        if no_target:
            if any(a != -1 for a in ann_ids):
                raise DataError(f"{at}: marked no_target but lists annotations {ann_ids}")
            ann_ids = []
        elif not ann_ids or -1 in ann_ids:
            raise DataError(f"{at}: ann_id {ann_ids} is neither targets nor the no-target marker [-1]")
        for ann_id in ann_ids:
            if ann_id not in self.anns or self.anns[ann_id][0] != image_id:
                raise DataError(f"{at}: annotation {ann_id} is not an annotation of image {image_id}")
        if image_id not in self.images:
            raise DataError(f"{at}: image {image_id} is not in {instances_file}")
        return image_id, ann_ids
