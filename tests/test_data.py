"""Behaviour of the data layer: the synthetic scenes, the samples built from them, batching and loading."""

from __future__ import annotations

from collections import Counter

import lightning
import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data import (
    CATEGORIES,
    VOCABULARY,
    Sample,
    SyntheticSegmentation,
    TaskBatchSampler,
    ZooDataModule,
    collate,
    read_image,
    write_png,
)
from zoo.data.synthetic import INSTRUCTIONS, PROMPT_TYPES, SceneObject, make_scene
from zoo.registry import get
from zoo.types import Batch

SIZE = 64


@pytest.fixture(scope="module")
def train() -> SyntheticSegmentation:
    return SyntheticSegmentation(num_images=24, image_size=SIZE, max_expressions=3)


@pytest.fixture(scope="module")
def samples(train: SyntheticSegmentation) -> list[Sample]:
    return [train[i] for i in range(len(train))]


def of_task(samples: list[Sample], task: str) -> list[Sample]:
    return [s for s in samples if s.task == task]


def assert_samples_equal(a: Sample, b: Sample) -> None:
    assert a.task == b.task and a.conditions == b.conditions and a.answer == b.answer
    assert a.prompt_types == b.prompt_types
    for name in ("image", "masks", "labels", "prompts"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


# --- scenes and samples -------------------------------------------------------------------------------------


def test_categories_are_things_then_stuff_with_contiguous_ids() -> None:
    assert [c["id"] for c in CATEGORIES] == list(range(len(CATEGORIES)))
    isthing = [c["isthing"] for c in CATEGORIES]
    assert isthing == sorted(isthing, reverse=True) and any(isthing) and not all(isthing)


def test_scenes_are_deterministic_and_independent_of_call_order() -> None:
    later_first = make_scene(0, 7)
    make_scene(0, 3)
    again = make_scene(0, 7)
    assert np.array_equal(later_first.image, again.image)
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(later_first.segments, again.segments, strict=True))
    assert not np.array_equal(make_scene(0, 8).image, again.image)
    assert not np.array_equal(make_scene(1, 7).image, again.image)


def test_samples_are_deterministic_in_any_order(train: SyntheticSegmentation, samples: list[Sample]) -> None:
    fresh = SyntheticSegmentation(num_images=24, image_size=SIZE, max_expressions=3)
    for i in reversed(range(len(fresh))):
        assert_samples_equal(fresh[i], samples[i])
    assert fresh.sample_tasks == [s.task for s in samples]


def test_later_rounds_redraw_referring_and_prompts_on_the_same_scenes(
    train: SyntheticSegmentation, samples: list[Sample]
) -> None:
    rounds = SyntheticSegmentation(num_images=24, image_size=SIZE, max_expressions=3, rounds=3)
    n = len(train)
    assert len(rounds) == 3 * n and rounds.sample_tasks == train.sample_tasks * 3
    changed: Counter[str] = Counter()
    for i in range(n):
        assert_samples_equal(rounds[i], samples[i])  # round 0 is the dataset without rounds
        later = [rounds[r * n + i] for r in (1, 2)]
        for sample in later:
            assert torch.equal(sample.image, samples[i].image)
            assert sample.meta["image_id"] == samples[i].meta["image_id"]
            if sample.task in ("panoptic", "caption"):
                assert_samples_equal(sample, samples[i])
            elif sample.task == "referring":
                changed["referring"] += sample.conditions != samples[i].conditions
            else:
                changed["interactive"] += not torch.equal(sample.prompts, samples[i].prompts)
        assert_samples_equal(rounds[n + i], later[0])  # still a pure function of the index
    # Fresh draws, not copies: over the two later rounds, most referring and interactive samples differ.
    referring, interactive = (sum(t == task for t in train.sample_tasks) for task in ("referring", "interactive"))
    assert changed["referring"] > referring and changed["interactive"] > interactive
    with pytest.raises(ValueError, match="val split would evaluate every image 2 times"):
        SyntheticSegmentation(split="val", num_images=2, rounds=2)


def test_train_and_val_use_different_scenes(train: SyntheticSegmentation) -> None:
    val = SyntheticSegmentation(split="val", num_images=24, image_size=SIZE, max_expressions=3)
    train_images = {train[i].image.numpy().tobytes() for i in range(0, len(train), 6)}
    val_images = {val[i].image.numpy().tobytes() for i in range(0, len(val), 6)}
    assert len(train_images) == len(val_images) == 24 and not train_images & val_images


def test_every_image_gives_each_task(train: SyntheticSegmentation) -> None:
    assert Counter(train.sample_tasks) == {"panoptic": 24, "referring": 72, "interactive": 24, "caption": 24}
    only = SyntheticSegmentation(num_images=3, tasks=["caption", "panoptic"])
    assert only.sample_tasks == ["panoptic", "caption"] * 3
    assert [only[i].task for i in range(len(only))] == only.sample_tasks
    assert get("dataset", "SyntheticSegmentation") is SyntheticSegmentation


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tasks": ["panoptic", "segmentation"]},
        {"tasks": []},
        {"num_images": 0},
        {"image_size": 0},
        {"split": "x"},
    ],
)
def test_invalid_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SyntheticSegmentation(**kwargs)


def test_panoptic_masks_partition_the_image(samples: list[Sample]) -> None:
    names = [c["name"] for c in CATEGORIES]
    for s in of_task(samples, "panoptic"):
        assert s.conditions == names
        assert torch.equal(s.masks.sum(0), torch.ones(SIZE, SIZE, dtype=torch.long))
        assert torch.equal(s.labels, s.meta["category_ids"])
        isthing = s.meta["isthing"]
        assert torch.equal(isthing, torch.tensor([CATEGORIES[i]["isthing"] for i in s.labels]))
        assert 1 <= int(isthing.sum()) <= 4 and 1 <= int((~isthing).sum()) <= 3
        stuff = s.labels[~isthing].tolist()
        assert len(stuff) == len(set(stuff)), "each stuff category is one segment"
        assert (s.masks[isthing].flatten(1).sum(1) >= 0.02 * SIZE * SIZE).all()


def _phrase(phrase: str, objects: list[SceneObject]) -> list[int]:
    *colour, noun = phrase.split()
    return [i for i, o in enumerate(objects) if noun in ("shape", o.category) and (not colour or colour[0] == o.colour)]


def _resolve(expression: str, objects: list[SceneObject]) -> list[int]:
    """An independent reading of an expression: the objects it denotes (more than one means ambiguous)."""
    words = expression.removeprefix("the ")
    for relation, axis, sign in (
        ("above", 1, -1),
        ("below", 1, 1),
        ("to the left of", 0, -1),
        ("to the right of", 0, 1),
    ):
        if f" {relation} the " in words:
            head, reference = words.split(f" {relation} the ")
            (r,) = _phrase(reference, objects)
            base = objects[r].centroid[axis]
            return [i for i in _phrase(head, objects) if i != r and sign * (objects[i].centroid[axis] - base) > 0]
    for position, axis, sign in (
        ("on the left", 0, -1),
        ("on the right", 0, 1),
        ("at the top", 1, -1),
        ("at the bottom", 1, 1),
    ):
        if words.endswith(f" {position}"):
            ranked = sorted(
                _phrase(words.removesuffix(f" {position}"), objects),
                key=lambda i: -sign * objects[i].centroid[axis],
            )
            first, second = (sign * objects[i].centroid[axis] for i in ranked[:2])
            assert first - second >= 0.05 * SIZE, f"'{expression}' names a position without a clear margin"
            return ranked[:1]
    for superlative, sign in (("largest", 1), ("smallest", -1)):
        if words.startswith(f"{superlative} "):
            ranked = sorted(
                _phrase(words.removeprefix(f"{superlative} "), objects), key=lambda i: -sign * objects[i].area
            )
            assert objects[ranked[0]].area != objects[ranked[1]].area
            return ranked[:1]
    return _phrase(words, objects)


def test_referring_expressions_denote_exactly_their_target(train: SyntheticSegmentation, samples: list[Sample]) -> None:
    vocabulary = set(VOCABULARY)
    relation_words = {"left", "right", "top", "bottom", "above", "below", "largest", "smallest"}
    expressions = set()
    for s in of_task(samples, "referring"):
        (expression,) = s.conditions
        expressions.add(expression)
        assert s.masks.shape == (1, SIZE, SIZE) and s.masks.any() and s.labels.tolist() == [0]
        words = set(expression.split())
        assert words <= vocabulary
        assert s.meta["colour"] in words or s.meta["category"] in words or words & relation_words
        objects = make_scene(train.scene_seed, s.meta["image_id"], SIZE).objects
        (target,) = [i for i, o in enumerate(objects) if np.array_equal(o.mask, s.masks[0].numpy())]
        assert _resolve(expression, objects) == [target], expression
    assert len(expressions) > 30, "expressions should vary"


def test_cached_scenes_give_the_same_samples_and_never_share_their_arrays(train: SyntheticSegmentation) -> None:
    cached = SyntheticSegmentation(num_images=24, image_size=SIZE, max_expressions=3, cache_scenes=True)
    order = torch.randperm(len(cached), generator=torch.Generator().manual_seed(0)).tolist()
    for index in order + order:  # first visits fill the cache, the second pass reads it
        sample = cached[index]
        assert_samples_equal(sample, train[index])
        sample.image.zero_()  # a consumer writing into its sample must not alter the cached scene
        sample.masks.zero_()
    assert len(cached._scenes) == 24
    for index in order:
        assert_samples_equal(cached[index], train[index])


def test_all_texts_use_the_vocabulary(samples: list[Sample]) -> None:
    texts = [s.instruction for s in samples] + [s.answer for s in samples]
    texts += [c for s in samples for c in s.conditions]
    assert {w for t in texts for w in t.split()} <= set(VOCABULARY)
    assert all(w == w.lower() and " " not in w for w in VOCABULARY)


def test_visual_prompts_lie_on_their_targets(samples: list[Sample]) -> None:
    seen = Counter()
    for s in of_task(samples, "interactive"):
        assert s.conditions == [] and s.labels.tolist() == list(range(len(s.prompts)))
        assert 1 <= len(s.prompts) <= 3 and s.prompts.shape == s.masks.shape
        assert s.masks.flatten(1).any(1).all()
        for prompt, target, kind in zip(s.prompts, s.masks, s.prompt_types, strict=True):
            seen[kind] += 1
            assert prompt.any(), kind
            if kind == "box":
                rows, cols = prompt.any(1).nonzero(), prompt.any(0).nonzero()
                assert prompt.sum() == len(rows) * len(cols), "a box prompt is a filled rectangle"
                assert (prompt & target).sum() >= 0.5 * target.sum()
            else:
                assert not (prompt & ~target).any(), f"{kind} prompt leaves its target"
            if kind == "point":
                assert prompt.sum() <= 5
    assert set(seen) == set(PROMPT_TYPES)


def test_captions_name_every_object(train: SyntheticSegmentation, samples: list[Sample]) -> None:
    for s in of_task(samples, "caption"):
        assert s.masks.shape == (0, SIZE, SIZE) and s.labels.numel() == 0
        scene = make_scene(train.scene_seed, s.meta["image_id"], SIZE)
        for o in scene.objects:
            assert f"{o.colour} {o.category}" in s.answer
        assert all(name in s.answer for name in scene.stuff_names)


# --- schema -------------------------------------------------------------------------------------------------


def test_collate_builds_a_batch_and_refuses_mixed_tasks(samples: list[Sample]) -> None:
    panoptic = of_task(samples, "panoptic")[:3]
    batch = collate(panoptic)
    assert isinstance(batch, Batch) and batch.task == "panoptic" and len(batch) == 3
    assert batch.images.shape == (3, 3, SIZE, SIZE) and [m.shape[0] for m in batch.masks] == [
        len(s.labels) for s in panoptic
    ]
    with pytest.raises(ValueError, match="caption.*panoptic"):
        collate(panoptic + of_task(samples, "caption")[:1])


def test_sample_rejects_inconsistent_targets() -> None:
    image = torch.zeros(3, 8, 8)
    with pytest.raises(ValueError, match="labels"):
        Sample(image, "referring", "x", masks=torch.zeros(2, 8, 8, dtype=torch.bool), labels=torch.zeros(1))
    with pytest.raises(ValueError, match="Unknown task"):
        Sample(image, "detection", "x")
    assert Sample(image, "caption", "x").masks.shape == (0, 8, 8)


# --- sampler ------------------------------------------------------------------------------------------------

TASKS = ["a"] * 7 + ["b"] * 5 + ["c"] * 1


def test_sampler_batches_hold_one_task_and_cover_everything() -> None:
    sampler = TaskBatchSampler(TASKS, batch_size=3, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 + 2 + 1
    assert all(len({TASKS[i] for i in b}) == 1 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(len(TASKS)))
    full = list(TaskBatchSampler(TASKS, batch_size=3, seed=1, drop_last=True))
    assert len(full) == len(TaskBatchSampler(TASKS, batch_size=3, drop_last=True)) == 3
    assert all(len(b) == 3 for b in full)


def test_sampler_is_deterministic_and_reshuffles_per_epoch() -> None:
    sampler = TaskBatchSampler(TASKS, batch_size=2, seed=3)
    first = list(sampler)
    assert list(TaskBatchSampler(TASKS, batch_size=2, seed=3)) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    ordered = list(TaskBatchSampler(TASKS, batch_size=2, shuffle=False))
    assert [i for b in ordered for i in b] == list(range(len(TASKS)))


def test_sampler_ranks_run_the_same_task_at_every_step() -> None:
    ranks = [list(TaskBatchSampler(TASKS, batch_size=2, seed=5, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(TaskBatchSampler(TASKS, batch_size=2, num_replicas=2))
    for b0, b1 in zip(*ranks, strict=True):
        assert len(b0) == len(b1) and {TASKS[i] for i in b0 + b1} == {TASKS[b0[0]]}
    every = [i for batches in ranks for b in batches for i in b]
    assert set(every) == set(range(len(TASKS)))
    assert len(every) - len(TASKS) <= 3, "only the short final batch of each task is padded"


# --- io -----------------------------------------------------------------------------------------------------


def test_read_image_round_trip_and_clear_errors(tmp_path) -> None:
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    write_png(tmp_path / "sub" / "ok.png", array)
    image = read_image(tmp_path / "sub" / "ok.png")
    assert image.shape == (3, 5, 7) and torch.equal((image * 255).round().byte().permute(1, 2, 0), torch.tensor(array))
    Image.fromarray(array[..., 0]).save(tmp_path / "grey.png")
    assert read_image(tmp_path / "grey.png").shape == (3, 5, 7)

    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"definitely not an image")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((tmp_path / "sub" / "ok.png").read_bytes()[:60])
    for path in (garbage, truncated, tmp_path / "missing.png"):
        with pytest.raises(ValueError, match=f"Cannot read image '{path}': ") as error:
            read_image(path)
        assert "\n" not in str(error.value)


# --- datamodule ---------------------------------------------------------------------------------------------


def test_datamodule_yields_task_homogeneous_batches() -> None:
    train = SyntheticSegmentation(num_images=6)
    module = ZooDataModule(train=train, val=SyntheticSegmentation("val", num_images=4), batch_size=4, seed=2)
    assert module.categories == CATEGORIES
    batches = list(module.train_dataloader())
    assert sum(len(b) for b in batches) == len(train)
    for batch in batches:
        assert isinstance(batch, Batch) and set(batch.instructions) == {INSTRUCTIONS[batch.task]}
        assert batch.images.shape[1:] == (3, SIZE, SIZE)
        assert len(batch.instructions) == len(batch.masks) == len(batch.meta) == len(batch)
    assert Counter(b.task for b in batches) == {"panoptic": 2, "referring": 3, "interactive": 2, "caption": 2}
    val_tasks = [b.task for b in module.val_dataloader()]
    assert val_tasks == sorted(val_tasks, key=["panoptic", "referring", "interactive", "caption"].index)
    with pytest.raises(ValueError, match="test"):
        module.test_dataloader()


def test_worker_processes_give_the_same_batches() -> None:
    train = SyntheticSegmentation(num_images=4)
    inline = list(ZooDataModule(train=train, batch_size=4).train_dataloader())
    workers = list(ZooDataModule(train=train, batch_size=4, num_workers=2).train_dataloader())
    for a, b in zip(inline, workers, strict=True):
        assert a.task == b.task and torch.equal(a.images, b.images)


class _Recorder(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[int, list[list[int]]] = {}

    def training_step(self, batch: Batch, index: int) -> torch.Tensor:
        assert isinstance(batch, Batch)
        ids = [m["image_id"] for m in batch.meta]
        self.seen.setdefault(self.current_epoch, []).append((batch.task, ids))
        return self.weight.square().sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_advances_the_sampler_epoch() -> None:
    train = SyntheticSegmentation(num_images=6, tasks=["panoptic", "caption"])
    module, model = ZooDataModule(train=train, batch_size=4, seed=9), _Recorder()
    trainer = lightning.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer.fit(model, module)
    plan = TaskBatchSampler(train.sample_tasks, batch_size=4, seed=9)
    for epoch in (0, 1):
        plan.set_epoch(epoch)
        expected = [(train.sample_tasks[b[0]], [i // 2 for i in b]) for b in plan]
        assert model.seen[epoch] == expected
    assert model.seen[0] != model.seen[1]
