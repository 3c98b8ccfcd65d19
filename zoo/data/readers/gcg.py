"""GranD-f grounded captions (GLaMM's GCG format): a caption whose phrases are grounded by RLE masks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from zoo.data.readers.common import (
    AnnotationFileReader,
    DataError,
    compact_segmentation,
    decode_segmentation,
    load_image,
    require,
    stack_masks,
)
from zoo.data.schema import Sample
from zoo.data.transforms import Transform
from zoo.registry import register

GCG_INSTRUCTION = "describe the image briefly and segment the phrases of the description"


@register("dataset")
class GroundedCaptions(AnnotationFileReader):
    """`GranDf_HA_GCG_train.json`: records `{file_name, caption, groundings: {phrase: {token_positives, rle_masks}}}`.

    One caption sample per record: `answer` is the caption, `conditions` the grounded phrases in caption order
    (by `token_positives` start, the character span of the phrase), and every RLE mask of phrase k is a target
    labelled k. `meta["phrase_spans"]` keeps the spans so a model can insert `<p>...</p>` markers.
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_root: str | Path,
        instruction: str = GCG_INSTRUCTION,
        transform: Transform | None = None,
        max_bad: float = 0.01,
        seed: int = 0,
        benchmark: str | None = None,
    ) -> None:
        super().__init__(annotation_file, image_root, transform, max_bad, seed, benchmark)
        self.instruction = instruction
        records = self.json_list("records")
        self.index_records(
            records,
            "caption",
            lambda k, r: f"{self.annotation_file}: record {k} ('{r.get('file_name') if isinstance(r, dict) else '?'}')",
            self._parse,
        )

    def _parse(self, record: Any, at: str) -> list[tuple]:
        caption = require(record, "caption", at)
        phrases = []
        for phrase, grounding in require(record, "groundings", at).items():
            at_phrase = f"{at}, phrase '{phrase}'"
            start, end = (int(v) for v in require(grounding, "token_positives", at_phrase))
            if not 0 <= start < end <= len(caption):
                raise DataError(f"{at_phrase}: span [{start}, {end}) lies outside the caption")
            rles = [compact_segmentation(r, at_phrase) for r in require(grounding, "rle_masks", at_phrase)]
            if not rles:
                raise DataError(f"{at_phrase}: no masks")
            phrases.append((start, end, phrase, rles))
        return [(require(record, "file_name", at), caption, sorted(phrases, key=lambda p: p[0]))]

    def load(self, index: int) -> Sample:
        file_name, caption, phrases = self.records[index]
        where = f"{self.annotation_file}: record for '{file_name}'"
        image = load_image(self.image_root / file_name, None, None, where)
        height, width = image.shape[1:]
        masks, labels = [], []
        for k, (_, _, phrase, rles) in enumerate(phrases):
            for rle in rles:
                masks.append(decode_segmentation(rle, height, width, f"{where}, phrase '{phrase}'"))
                labels.append(k)
        return Sample(
            image=image,
            task="caption",
            instruction=self.instruction,
            conditions=[p[2] for p in phrases],
            masks=stack_masks(masks, height, width),
            labels=torch.tensor(labels, dtype=torch.long),
            answer=caption,
            meta={"image_id": file_name, "file_name": file_name, "phrase_spans": [(p[0], p[1]) for p in phrases]},
        )
