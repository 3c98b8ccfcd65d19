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
    and X-SAM filter them. `instruction` is the first human turn without `<image>`, `answer` the first gpt turn,
    and `meta["conversations"]` keeps every turn for multi-turn training.
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
        human = next((v for who, v in turns if who == "human"), None)
        gpt = next((v for who, v in turns if who == "gpt"), None)
        if human is None or gpt is None:
            raise DataError(f"{at}: needs a human and a gpt turn, has {[who for who, _ in turns]}")
        return [(record.get("id"), require(record, "image", at), human, gpt, turns)]

    def load(self, index: int) -> Sample:
        record_id, file_name, human, gpt, turns = self.records[index]
        image = load_image(self.image_root / file_name, None, None, f"{self.annotation_file}: record {record_id}")
        return Sample(
            image=image,
            task="caption",
            instruction=human.replace(IMAGE_TOKEN, "").strip(),
            answer=gpt,
            meta={
                "id": record_id,
                "file_name": file_name,
                "conversations": [{"from": w, "value": v} for w, v in turns],
            },
        )
