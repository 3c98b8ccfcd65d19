"""Task mixtures: several datasets served as one, with per-dataset weights or X-SAM's balanced resampling."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from zoo.data.schema import Sample
from zoo.registry import register


def balanced_repeats(sizes: Sequence[int], ratio: float) -> list[float]:
    """X-SAM's repeat factor r_d = max(1, sqrt(t / f_d)), f_d = n_d / sum(n): small datasets are oversampled."""
    total = sum(sizes)
    return [max(1.0, math.sqrt(ratio / (n / total))) for n in sizes]


@register("dataset")
class MixtureDataset(Dataset[Sample]):
    """Concatenates datasets, each drawn `count_d` times per epoch, so a recipe sets the task mix in config.

    `count_d` is `n_d` by default; with `weights`, `round(num_samples * w_d / sum(w))` (MGLMM-style sample
    rates); with `balance=t`, `int(n_d * r_d)` with X-SAM's r_d = max(1, sqrt(t / f_d)). A dataset drawn more
    often than its size wraps around (index % n_d, as X-SAM does); one drawn less often takes a fixed seeded
    subset. The index map is fixed at construction, so `sample_tasks` is known up front and the
    task-homogeneous batch sampler shuffles it like any other dataset. Each sample's `meta["source"]` names
    the dataset it came from.
    """

    def __init__(
        self,
        datasets: list[Dataset],
        weights: list[float] | None = None,
        balance: float | None = None,
        num_samples: int | None = None,
        names: list[str] | None = None,
        seed: int = 0,
    ) -> None:
        if not datasets:
            raise ValueError("MixtureDataset needs at least one dataset")
        if weights is not None and balance is not None:
            raise ValueError("MixtureDataset takes either `weights` or `balance`, not both")
        self.names = list(names) if names is not None else [type(d).__name__ for d in datasets]
        if len(self.names) != len(datasets):
            raise ValueError(f"MixtureDataset got {len(self.names)} names for {len(datasets)} datasets")
        for name, dataset in zip(self.names, datasets, strict=True):
            if not hasattr(dataset, "sample_tasks"):
                raise ValueError(f"Mixture member '{name}' ({type(dataset).__name__}) has no `sample_tasks`")
            if len(dataset) == 0:
                raise ValueError(f"Mixture member '{name}' is empty")
        sizes = [len(d) for d in datasets]
        self.counts = self._counts(sizes, weights, balance, num_samples)
        if sum(self.counts) == 0:
            raise ValueError(f"MixtureDataset draws no samples: counts {self.counts} for sizes {sizes}")
        self.datasets = list(datasets)
        generator = torch.Generator().manual_seed(seed)
        sources, locals_ = [], []
        for d, (size, count) in enumerate(zip(sizes, self.counts, strict=True)):
            order = torch.randperm(size, generator=generator) if count < size else torch.arange(size)
            local = order[torch.arange(count) % size]
            sources.append(torch.full((count,), d, dtype=torch.int32))
            locals_.append(local.to(torch.int64))
        self._source = torch.cat(sources)
        self._local = torch.cat(locals_)
        self.sample_tasks = [
            self.datasets[int(d)].sample_tasks[int(i)] for d, i in zip(self._source, self._local, strict=True)
        ]

    @staticmethod
    def _counts(
        sizes: list[int], weights: list[float] | None, balance: float | None, num_samples: int | None
    ) -> list[int]:
        if weights is not None:
            if len(weights) != len(sizes) or any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(f"MixtureDataset weights must be {len(sizes)} non-negative numbers, got {weights}")
            total = num_samples if num_samples is not None else sum(sizes)
            return [round(total * w / sum(weights)) for w in weights]
        if num_samples is not None:
            raise ValueError("MixtureDataset `num_samples` only applies with `weights`")
        if balance is not None:
            if balance <= 0:
                raise ValueError(f"MixtureDataset balance ratio must be positive, got {balance}")
            return [int(n * r) for n, r in zip(sizes, balanced_repeats(sizes, balance), strict=True)]
        return list(sizes)

    @property
    def categories(self) -> list[dict]:
        """The members' shared category table (PQ needs one); AttributeError when they differ or have none."""
        members = zip(self.names, self.datasets, strict=True)
        tables = [(name, d.categories) for name, d in members if hasattr(d, "categories")]
        if not tables:
            raise AttributeError("no member of the mixture has a `categories` table")
        first_name, first = tables[0]
        for name, table in tables[1:]:
            if table != first:
                raise AttributeError(f"mixture members '{first_name}' and '{name}' have different category tables")
        return first

    @property
    def benchmark_categories(self) -> dict[str, list[dict]]:
        """{benchmark: category table} of the members that have both (nested mixtures included), so a mixed
        evaluation set (e.g. COCO panoptic + ADE20K panoptic) scores each benchmark against its own table."""
        tables: dict[str, list[dict]] = {}
        for name, dataset in zip(self.names, self.datasets, strict=True):
            for benchmark, table in benchmark_categories(dataset).items():
                if tables.setdefault(benchmark, table) != table:
                    raise ValueError(f"mixture member '{name}' gives benchmark '{benchmark}' a second category table")
        return tables

    def __len__(self) -> int:
        return len(self.sample_tasks)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"Index {index} out of range for {len(self)} samples")
        d = int(self._source[index])
        sample = self.datasets[d][int(self._local[index])]
        sample.meta["source"] = self.names[d]
        return sample


def benchmark_categories(dataset: Dataset) -> dict[str, list[dict]]:
    """A dataset's {benchmark: category table}: a mixture's per-member tables, a reader's own (its `benchmark`
    names its samples' `meta["benchmark"]`), or nothing when it lacks either."""
    if isinstance(dataset, MixtureDataset):
        return dataset.benchmark_categories
    table, benchmark = getattr(dataset, "categories", None), getattr(dataset, "benchmark", None)
    return {benchmark: table} if table and benchmark else {}
