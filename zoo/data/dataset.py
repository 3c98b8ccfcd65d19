"""The embedded default dataset: synthetic scenes served as samples of every task in the unified schema."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from zoo.data.schema import Sample
from zoo.data.synthetic import (
    CATEGORIES,
    CATEGORY_ID,
    INSTRUCTIONS,
    PROMPT_TYPES,
    Scene,
    caption,
    make_scene,
    referring_choices,
    referring_expressions,
    visual_prompt,
)
from zoo.registry import register

_REFERRING_STREAM, _INTERACTIVE_STREAM = 1, 2  # keep choices independent of the scene's own random draws
# The tasks generated in memory; VGD comes from the files `zoo data synth` writes, through the VGD reader.
GENERATED_TASKS = ("panoptic", "referring", "interactive", "caption")


def _masks(masks: list[np.ndarray], size: int) -> Tensor:
    if not masks:
        return torch.zeros(0, size, size, dtype=torch.bool)
    return torch.from_numpy(np.stack(masks))


@register("dataset")
class SyntheticSegmentation(Dataset[Sample]):
    """Procedural shapes on textured stuff for panoptic, referring, interactive and caption samples.

    Each image yields one panoptic sample, `max_expressions` referring samples, one interactive sample and one
    caption sample (those of `tasks`), `rounds` times: each round after the first draws fresh referring
    (object, expression) pairs and visual prompts for the same scenes, where another epoch would repeat them.
    Samples are generated in `__getitem__` from (seed, split, index), so by default nothing is held in memory
    and any order or worker gives the same data; `sample_tasks` tells a sampler each index's task without
    generating anything. `cache_scenes` keeps each scene (and its referring expressions) once generated, for
    its image's other samples and later rounds and epochs (about 150 KB per scene at 96 px: for small images
    and a CPU budget).
    """

    def __init__(
        self,
        split: Literal["train", "val"] = "train",
        num_images: int = 512,
        image_size: int = 64,
        seed: int = 0,
        tasks: Sequence[str] = GENERATED_TASKS,
        max_expressions: int = 2,
        max_prompts: int = 3,
        cache_scenes: bool = False,
        rounds: int = 1,
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"Unknown split '{split}'. Candidates: train, val.")
        for name, value, least in (
            ("num_images", num_images, 1),
            ("image_size", image_size, 32),
            ("max_expressions", max_expressions, 1),
            ("max_prompts", max_prompts, 1),
            ("seed", seed, 0),
            ("rounds", rounds, 1),
        ):
            if value < least:
                raise ValueError(f"SyntheticSegmentation {name} must be at least {least}, got {value}")
        if split == "val" and rounds > 1:
            raise ValueError(f"rounds={rounds} on the val split would evaluate every image {rounds} times; use 1")
        unknown = [t for t in tasks if t not in GENERATED_TASKS]
        if unknown or not tasks:
            raise ValueError(f"Unknown or no tasks {unknown}. Candidates: {', '.join(GENERATED_TASKS)}.")
        self.split = split
        self.num_images = num_images
        self.image_size = image_size
        self.max_expressions = max_expressions
        self.max_prompts = max_prompts
        self._scenes: dict[int, Scene] | None = {} if cache_scenes else None
        self._expressions: dict[int, list[list[str]]] = {}  # filled only alongside `_scenes`
        self.categories = CATEGORIES
        # Train and val streams never share a scene: the split is folded into the generator seed.
        self.scene_seed = 2 * seed + (split == "val")
        counts = {"panoptic": 1, "referring": max_expressions, "interactive": 1, "caption": 1}
        self._slots = [(task, j) for task in GENERATED_TASKS if task in tasks for j in range(counts[task])]
        self.sample_tasks = [task for _ in range(num_images * rounds) for task, _ in self._slots]

    def __len__(self) -> int:
        return len(self.sample_tasks)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"Index {index} out of range for {len(self)} samples")
        round_, rest = divmod(index, self.num_images * len(self._slots))
        image_id, slot = divmod(rest, len(self._slots))
        task, j = self._slots[slot]
        scene = self._scene(image_id)
        # Converted in numpy: on small images it is an order of magnitude faster than torch's CPU kernels.
        image = torch.from_numpy(scene.image.transpose(2, 0, 1).astype(np.float32) / 255)
        meta = {"image_id": image_id, "split": self.split}
        build = {
            "panoptic": self._panoptic,
            "referring": self._referring,
            "interactive": self._interactive,
            "caption": self._caption,
        }[task]
        fields = build(scene, image_id, j, meta, round_)
        return Sample(image=image, task=task, instruction=INSTRUCTIONS[task], meta=meta, **fields)

    def _scene(self, image_id: int) -> Scene:
        """The image's scene, from the cache when there is one (samples only read a scene's arrays)."""
        if self._scenes is None:
            return make_scene(self.scene_seed, image_id, self.image_size)
        if image_id not in self._scenes:
            self._scenes[image_id] = make_scene(self.scene_seed, image_id, self.image_size)
        return self._scenes[image_id]

    def _referring_expressions(self, scene: Scene, image_id: int) -> list[list[str]]:
        """Every object's expressions, kept with a cached scene (its referring samples share them; read only)."""
        if self._scenes is None:
            return referring_expressions(scene.objects, self.image_size)
        if image_id not in self._expressions:
            self._expressions[image_id] = referring_expressions(scene.objects, self.image_size)
        return self._expressions[image_id]

    def _rng(self, image_id: int, stream: int, round_: int) -> np.random.Generator:
        """The draws of one image's task stream; round 0 keeps the key it has always had."""
        return np.random.default_rng([self.scene_seed, image_id, stream, *([round_] if round_ else [])])

    def _panoptic(self, scene: Scene, image_id: int, j: int, meta: dict, round_: int) -> dict:
        labels = torch.tensor([s.category_id for s in scene.segments], dtype=torch.long)
        meta.update(category_ids=labels, isthing=torch.tensor([s.isthing for s in scene.segments]))
        return {
            "conditions": [c["name"] for c in CATEGORIES],
            "masks": _masks([s.mask for s in scene.segments], self.image_size),
            "labels": labels,
        }

    def _referring(self, scene: Scene, image_id: int, j: int, meta: dict, round_: int) -> dict:
        rng = self._rng(image_id, _REFERRING_STREAM, round_)
        expressions = self._referring_expressions(scene, image_id)
        obj, expression = referring_choices(expressions, self.max_expressions, rng)[j]
        target = scene.objects[obj]
        meta.update(
            category_ids=torch.tensor([CATEGORY_ID[target.category]]),
            isthing=torch.tensor([True]),
            colour=target.colour,
            category=target.category,
        )
        return {
            "conditions": [expression],
            "masks": _masks([target.mask], self.image_size),
            "labels": torch.zeros(1, dtype=torch.long),
        }

    def _interactive(self, scene: Scene, image_id: int, j: int, meta: dict, round_: int) -> dict:
        rng = self._rng(image_id, _INTERACTIVE_STREAM, round_)
        count = min(self.max_prompts, len(scene.segments))
        targets = [scene.segments[int(i)] for i in rng.choice(len(scene.segments), count, replace=False)]
        kinds = [PROMPT_TYPES[int(i)] for i in rng.integers(len(PROMPT_TYPES), size=count)]
        meta.update(
            category_ids=torch.tensor([t.category_id for t in targets], dtype=torch.long),
            isthing=torch.tensor([t.isthing for t in targets]),
        )
        return {
            "masks": _masks([t.mask for t in targets], self.image_size),
            "labels": torch.arange(count),
            "prompts": _masks(
                [visual_prompt(t.mask, k, rng) for t, k in zip(targets, kinds, strict=True)], self.image_size
            ),
            "prompt_types": kinds,
        }

    def _caption(self, scene: Scene, image_id: int, j: int, meta: dict, round_: int) -> dict:
        meta.update(category_ids=torch.zeros(0, dtype=torch.long), isthing=torch.zeros(0, dtype=torch.bool))
        return {"answer": caption(scene)}
