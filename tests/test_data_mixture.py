"""Mixtures: per-dataset counts (plain, weighted, X-SAM balanced), task bookkeeping, and use in the datamodule."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from zoo.data import CATEGORIES, MixtureDataset, SyntheticSegmentation, ZooDataModule
from zoo.data.mixture import balanced_repeats
from zoo.registry import get


@pytest.fixture(scope="module")
def parts() -> tuple[SyntheticSegmentation, SyntheticSegmentation]:
    panoptic = SyntheticSegmentation(num_images=40, image_size=32, tasks=["panoptic"])
    referring = SyntheticSegmentation(num_images=2, image_size=32, tasks=["referring"], max_expressions=2, seed=3)
    return panoptic, referring


def test_balanced_repeats_follow_xsam_formula() -> None:
    # f = 0.01 -> sqrt(0.1 / 0.01) = 3.16; f = 0.001 -> 10; f >= 0.1 -> 1 (the worked examples of the digest).
    repeats = balanced_repeats([10, 1, 989], ratio=0.1)
    assert repeats[0] == pytest.approx(math.sqrt(10)) and repeats[1] == pytest.approx(10.0) and repeats[2] == 1.0


def test_plain_mixture_concatenates(parts) -> None:
    panoptic, referring = parts
    mix = MixtureDataset([panoptic, referring], names=["coco", "refcoco"])
    assert len(mix) == 44 and mix.counts == [40, 4]
    assert Counter(mix.sample_tasks) == {"panoptic": 40, "referring": 4}
    assert torch.equal(mix[40].masks, referring[0].masks) and mix[40].meta["source"] == "refcoco"
    assert torch.equal(mix[3].image, panoptic[3].image) and mix[3].meta["source"] == "coco"
    assert [mix[i].task for i in range(len(mix))] == mix.sample_tasks
    assert get("dataset", "MixtureDataset") is MixtureDataset


def test_balanced_mixture_oversamples_the_small_dataset(parts) -> None:
    panoptic, referring = parts
    mix = MixtureDataset([panoptic, referring], balance=0.1)
    # f = 4/44 -> r = sqrt(0.1 * 44 / 4) = 1.049 -> int(4 * 1.049) = 4; f = 40/44 -> r = 1.
    assert mix.counts == [40, 4]
    mix = MixtureDataset([panoptic, referring], balance=0.5)
    r = math.sqrt(0.5 * 44 / 4)
    assert mix.counts == [40, int(4 * r)] == [40, 9]
    # Wrapped indices repeat the small dataset's samples in order: index % n_d.
    tail = [mix[40 + k] for k in range(9)]
    for k, sample in enumerate(tail):
        assert torch.equal(sample.masks, referring[k % 4].masks)


def test_weighted_mixture_draws_by_weight_deterministically(parts) -> None:
    panoptic, referring = parts
    mix = MixtureDataset([panoptic, referring], weights=[1, 1], num_samples=20, seed=1)
    assert mix.counts == [10, 10] and Counter(mix.sample_tasks) == {"panoptic": 10, "referring": 10}
    # The under-drawn dataset gives a seeded subset without repeats; the over-drawn one wraps.
    picked = [int(i) for i in mix._local[:10]]
    assert len(set(picked)) == 10 and picked != list(range(10))
    again = MixtureDataset([panoptic, referring], weights=[1, 1], num_samples=20, seed=1)
    assert torch.equal(again._local, mix._local)
    assert not torch.equal(
        MixtureDataset([panoptic, referring], weights=[1, 1], num_samples=20, seed=2)._local, mix._local
    )
    assert torch.equal(mix[10].masks, referring[0].masks) and torch.equal(mix[14].masks, referring[0].masks)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weights": [1, 1], "balance": 0.1}, "either"),
        ({"weights": [1]}, "weights"),
        ({"weights": [1, -1]}, "weights"),
        ({"balance": 0.0}, "balance"),
        ({"num_samples": 10}, "num_samples"),
        ({"weights": [0, 0]}, "weights"),
        ({"names": ["a"]}, "names"),
    ],
)
def test_bad_mixture_arguments_raise(parts, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MixtureDataset(list(parts), **kwargs)


def test_categories_are_shared_or_absent(parts) -> None:
    panoptic, referring = parts
    assert MixtureDataset([panoptic, referring]).categories == CATEGORIES

    other = SyntheticSegmentation(num_images=2, image_size=32, tasks=["panoptic"])
    other.categories = [{"id": 0, "name": "cat", "isthing": True}]
    mix = MixtureDataset([panoptic, other], names=["a", "b"])
    assert not hasattr(mix, "categories")
    with pytest.raises(AttributeError, match="'a' and 'b'"):
        mix.categories  # noqa: B018


def test_datamodule_takes_a_mixture_unchanged(parts) -> None:
    mix = MixtureDataset(list(parts), balance=0.5)
    module = ZooDataModule(train=mix, batch_size=4, seed=0)
    batches = list(module.train_dataloader())
    assert module.categories == CATEGORIES
    assert sum(len(b) for b in batches) >= len(mix)
    assert Counter(b.task for b in batches) == {"panoptic": 10, "referring": 3}
    assert all({m["source"] for m in b.meta} <= {"SyntheticSegmentation"} for b in batches)
