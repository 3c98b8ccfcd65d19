"""`zoo data synth` writes the synthetic dataset in every format; the real readers give back the same samples."""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.cli_helpers import small
from tests.conftest import ROOT, TINY_RECIPE
from zoo.__main__ import main
from zoo.cli import ZooCLI
from zoo.data import CATEGORIES, MixtureDataset, Sample, SyntheticSegmentation
from zoo.data.readers import (
    CocoInstances,
    CocoInteractive,
    CocoPanoptic,
    GRefCOCO,
    GroundedCaptions,
    LlavaConversations,
    ReaderDataset,
    ReasonSeg,
    RefCOCO,
    SemanticSegmentation,
    VisualGrounding,
)
from zoo.data.synth_writer import write_synthetic
from zoo.data.synthetic import make_scene

IMAGES, SIZE, EXPRESSIONS = 6, 64, 2


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    main(
        ["data", "synth", "--out", str(out), "--num-images", str(IMAGES), "--val-images", "2"]
        + ["--image-size", str(SIZE), "--max-expressions", str(EXPRESSIONS)]
    )
    return out


@pytest.fixture(scope="module")
def synthetic() -> dict[str, list[Sample]]:
    dataset = SyntheticSegmentation("train", IMAGES, SIZE, max_expressions=EXPRESSIONS)
    by_task: dict[str, list[Sample]] = {}
    for i in range(len(dataset)):
        sample = dataset[i]
        by_task.setdefault(sample.task, []).append(sample)
    return by_task


def assert_same(read: list[Sample], expected: list[Sample]) -> None:
    assert len(read) == len(expected)
    for a, b in zip(read, expected, strict=True):
        assert (a.task, a.instruction, a.conditions, a.answer, a.prompt_types) == (
            b.task,
            b.instruction,
            b.conditions,
            b.answer,
            b.prompt_types,
        )
        for name in ("image", "masks", "labels", "prompts"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_readers_give_back_the_generator_samples(root: Path, synthetic: dict[str, list[Sample]]) -> None:
    images = root / "images"
    panoptic = CocoPanoptic(root / "annotations/panoptic_train.json", images, root / "panoptic_train")
    assert panoptic.categories == CATEGORIES
    assert_same([panoptic[i] for i in range(len(panoptic))], synthetic["panoptic"])
    refcoco = RefCOCO(root / "refcoco/refs(unc).p", root / "refcoco/instances.json", images, split="train")
    referring = [refcoco[i] for i in range(len(refcoco))]
    assert_same(referring, synthetic["referring"])
    for sample in referring:  # RefCOCO also carries the annotation box: the mask's extent
        rows, cols = sample.masks[0].nonzero().T
        assert sample.boxes.tolist() == [[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]]
    interactive = CocoInteractive(root / "coco_interactive_train_psalm.json", images)
    assert_same([interactive[i] for i in range(len(interactive))], synthetic["interactive"])
    llava = LlavaConversations(root / "llava_train.json", images)
    assert_same([llava[i] for i in range(len(llava))], synthetic["caption"])


def test_other_formats_read_consistently_with_the_scenes(root: Path) -> None:
    images = root / "images"
    scenes = [make_scene(0, i, SIZE) for i in range(IMAGES)]
    instances = CocoInstances(root / "annotations/instances_train.json", images)
    for i, scene in enumerate(scenes):
        sample = instances[i]
        assert torch.equal(sample.masks, torch.from_numpy(np.stack([o.mask for o in scene.objects])))
        assert [CATEGORIES[k]["name"] for k in sample.labels] == [o.category for o in scene.objects]
    semantic = SemanticSegmentation(
        images / "train", root / "semantic_train", str(root / "categories.txt"), image_suffix=".png"
    )
    first = semantic[0]
    assert torch.equal(first.masks.sum(0), torch.ones(SIZE, SIZE, dtype=torch.long)) and not first.ignore.any()
    assert sorted(first.labels.tolist()) == sorted({s.category_id for s in scenes[0].segments})

    grefs = GRefCOCO(root / "grefcoco/grefs(unc).json", root / "refcoco/instances.json", images, split="train")
    counts = [len(grefs[i].masks) for i in range(len(grefs))]
    assert counts.count(0) == IMAGES and max(counts) >= 2, "one no-target and one multi-target expression per image"
    assert all(grefs[i].meta["generalized"] for i in range(len(grefs)))

    vgd = VisualGrounding(root / "coco_vgdseg_train.json", images, prompt_type="box")
    sample = vgd[0]
    assert set(sample.prompt_types) == {"box"} and len(sample.prompts) == len(set(sample.meta["category_ids"].tolist()))
    reason = ReasonSeg(root / "reasonseg/train")
    assert len(reason) == 2 * IMAGES and reason[0].conditions[0].startswith("the largest")
    largest = max(scenes[0].objects, key=lambda o: o.area).mask
    assert (reason[0].masks[0].numpy() & largest).sum() == largest.sum(), "the hull polygon covers the object"
    gcg = GroundedCaptions(root / "gcg_train.json", images)
    sample = gcg[0]
    assert sample.answer == json.loads((root / "gcg_train.json").read_text())[0]["caption"]
    assert all(phrase in sample.answer for phrase in sample.conditions) and len(sample.masks) == len(sample.conditions)


def test_tiny_recipe_trains_from_the_files(root: Path, tmp_path: Path) -> None:
    data = (ROOT / "recipes/_base/data/synthetic_files.yaml").read_text().replace("data/synthetic", str(root))
    (tmp_path / "data.yaml").write_text(data)
    args = ["fit", "--config", str(TINY_RECIPE), "--config", str(tmp_path / "data.yaml"), *small(tmp_path)]
    args = [a for a in args if "num_images" not in a]
    cli = ZooCLI(args=args)
    assert cli.trainer.global_step == 3
    assert type(cli.datamodule.train).__name__ == "MixtureDataset"
    assert set(cli.datamodule.train.sample_tasks) == {"panoptic", "referring", "interactive", "caption"}
    results = json.loads((Path(cli.trainer.log_dir) / "results.json").read_text())["metrics"]
    # One row per benchmark, each named by its reader from the files
    assert {"panoptic/panoptic_val", "referring/refcoco_val", "interactive/coco_interactive_val_psalm"} <= set(results)


@functools.cache
def _synth_files() -> Path:
    """One small synthetic dataset on disk, shared by the component checks below."""
    out = Path(tempfile.mkdtemp(prefix="zoo-synth-"))
    write_synthetic(out, num_images=2, val_images=1, image_size=32)
    return out


def _check_reader(build: Callable[[Path], ReaderDataset]) -> None:
    dataset = build(_synth_files())
    sample = dataset[0]
    assert len(dataset.sample_tasks) == len(dataset) > 0 and sample.task == dataset.sample_tasks[0]
    assert sample.image.shape[0] == 3 and sample.masks.shape[1:] == sample.image.shape[1:]


# Registry coverage for tests/test_components.py: every registered dataset builds from files and yields a sample.
DATA_CHECKS: dict[str, Callable[[], None]] = {
    "CocoInstances": lambda: _check_reader(
        lambda r: CocoInstances(r / "annotations/instances_train.json", r / "images")
    ),
    "CocoPanoptic": lambda: _check_reader(
        lambda r: CocoPanoptic(r / "annotations/panoptic_val.json", r / "images", r / "panoptic_val")
    ),
    "SemanticSegmentation": lambda: _check_reader(
        lambda r: SemanticSegmentation(
            r / "images/train", r / "semantic_train", str(r / "categories.txt"), image_suffix=".png"
        )
    ),
    "RefCOCO": lambda: _check_reader(
        lambda r: RefCOCO(r / "refcoco/refs(unc).p", r / "refcoco/instances.json", r / "images")
    ),
    "GRefCOCO": lambda: _check_reader(
        lambda r: GRefCOCO(r / "grefcoco/grefs(unc).json", r / "refcoco/instances.json", r / "images", split="val")
    ),
    "CocoInteractive": lambda: _check_reader(
        lambda r: CocoInteractive(r / "coco_interactive_train_psalm.json", r / "images")
    ),
    "VisualGrounding": lambda: _check_reader(lambda r: VisualGrounding(r / "coco_vgdseg_val.json", r / "images")),
    "ReasonSeg": lambda: _check_reader(lambda r: ReasonSeg(r / "reasonseg/val")),
    "GroundedCaptions": lambda: _check_reader(lambda r: GroundedCaptions(r / "gcg_train.json", r / "images")),
    "LlavaConversations": lambda: _check_reader(lambda r: LlavaConversations(r / "llava_val.json", r / "images")),
    "MixtureDataset": lambda: _check_reader(
        lambda r: MixtureDataset([LlavaConversations(r / "llava_val.json", r / "images")], balance=0.1)
    ),
}
