"""LLaVA conversation JSON (`llava_v1_5_mix665k.json`, `blip_laion_cc_sbu_558k.json`) as caption samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.data.readers.common import AnnotationFileReader, DataError, load_image, require
from zoo.data.schema import Sample
from zoo.data.transforms import Transform
from zoo.registry import register

IMAGE_TOKEN = "<image>"


@register("dataset")
class LlavaConversations(AnnotationFileReader):
    """Records `{id, image, conversations: [{from: human|gpt, value}]}`; text-only records are left out, as PSALM
    and X-SAM filter them. The conversation is kept whole, as both train on it: `instruction` and `answer` are the
    first round (the question without `<image>`, which the chat texts place), `follow_ups` the later rounds. A
    conversation opening with a gpt turn drops it, as X-SAM's and LLaVA's preprocessing do.
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_root: str | Path,
        transform: Transform | None = None,
        max_bad: float = 0.01,
        seed: int = 0,
        benchmark: str | None = None,
    ) -> None:
        super().__init__(annotation_file, image_root, transform, max_bad, seed, benchmark)
        records = self.json_list("records")
        self.index_records(
            records,
            "caption",
            lambda k, r: f"{self.annotation_file}: record {k} (id {r.get('id') if isinstance(r, dict) else '?'})",
            self._parse,
        )

    def _parse(self, record: Any, at: str) -> list[tuple]:
        if isinstance(record, dict) and "image" not in record:
            return []  # a text-only conversation: not a multimodal sample
        turns = [
            (require(t, "from", f"{at}, turn {j}"), require(t, "value", f"{at}, turn {j}"))
            for j, t in enumerate(require(record, "conversations", at))
        ]
        speakers = [who for who, _ in turns]
        while turns and turns[0][0] == "gpt":
            turns = turns[1:]
        if not turns or len(turns) % 2 or any(who != ("human", "gpt")[j % 2] for j, (who, _) in enumerate(turns)):
            raise DataError(f"{at}: needs alternating human and gpt turns, has {speakers}")
        rounds = [(turns[j][1].replace(IMAGE_TOKEN, "").strip(), turns[j + 1][1]) for j in range(0, len(turns), 2)]
        return [(record.get("id"), require(record, "image", at), rounds)]

    def load(self, index: int) -> Sample:
        record_id, file_name, rounds = self.records[index]
        image = load_image(self.image_root / file_name, None, None, f"{self.annotation_file}: record {record_id}")
        (instruction, answer), *follow_ups = rounds
        return Sample(
            image=image,
            task="caption",
            instruction=instruction,
            answer=answer,
            follow_ups=follow_ups,
            meta={"id": record_id, "file_name": file_name},
        )
