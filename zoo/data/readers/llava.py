"""LLaVA conversation JSON (`llava_v1_5_mix665k.json`, `blip_laion_cc_sbu_558k.json`) as caption samples."""

from __future__ import annotations

from pathlib import Path

from zoo.data.readers.common import DataError, ReaderDataset, load_image, load_json, require
from zoo.data.schema import Sample
from zoo.data.transforms import Transform
from zoo.registry import register

IMAGE_TOKEN = "<image>"


@register("dataset")
class LlavaConversations(ReaderDataset):
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
        super().__init__(transform, max_bad, seed)
        self.annotation_file, self.image_root = Path(annotation_file), Path(image_root)
        self.benchmark = benchmark or self.annotation_file.stem
        where = str(self.annotation_file)
        records = load_json(self.annotation_file)
        if not isinstance(records, list):
            raise DataError(f"{where}: expected a list of records, got {type(records).__name__}")
        self.records: list[tuple] = []
        for k, record in enumerate(records):
            at = f"{where}: record {k} (id {record.get('id') if isinstance(record, dict) else '?'})"
            if isinstance(record, dict) and "image" not in record:
                continue  # a text-only conversation: not a multimodal sample
            try:
                turns = [
                    (require(t, "from", f"{at}, turn {j}"), require(t, "value", f"{at}, turn {j}"))
                    for j, t in enumerate(require(record, "conversations", at))
                ]
                human = next((v for who, v in turns if who == "human"), None)
                gpt = next((v for who, v in turns if who == "gpt"), None)
                if human is None or gpt is None:
                    raise DataError(f"{at}: needs a human and a gpt turn, has {[who for who, _ in turns]}")
                self.records.append((record.get("id"), require(record, "image", at), human, gpt, turns))
            except DataError as error:
                self.skip_record(at, str(error), len(records))
        self.sample_tasks = ["caption"] * len(self.records)

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
