"""The LightningDataModule every recipe uses: task-homogeneous, rank-aware loaders over any zoo datasets."""

from __future__ import annotations

import lightning
from torch.utils.data import DataLoader, Dataset

from zoo.data.loader import ResumableDataLoader
from zoo.data.mixture import benchmark_categories
from zoo.data.sampler import TaskBatchSampler
from zoo.data.schema import collate


class ZooDataModule(lightning.LightningDataModule):
    """Wraps train/val/test datasets in loaders whose batches hold one task on every rank at every step.

    Datasets must expose `sample_tasks` (the task of every index, known without loading) and, for the model to
    know thing/stuff ids, `categories`. The sampler is rank-aware itself, so recipes set
    `trainer.use_distributed_sampler: false`; Lightning advances its epoch through `set_epoch`.
    """

    def __init__(
        self,
        train: Dataset | None = None,
        val: Dataset | None = None,
        test: Dataset | None = None,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or (val_batch_size is not None and val_batch_size < 1) or num_workers < 0:
            raise ValueError(
                f"batch sizes must be positive and num_workers non-negative, got batch_size={batch_size}, "
                f"val_batch_size={val_batch_size}, num_workers={num_workers}"
            )
        self.train = train
        self.val = val
        self.test = test
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed

    @property
    def categories(self) -> list[dict]:
        """The (id, name, isthing) table of the first dataset that has one: PQ needs thing and stuff ids."""
        for dataset in (self.train, self.val, self.test):
            if dataset is not None and hasattr(dataset, "categories"):
                return dataset.categories
        raise ValueError("None of the datamodule's datasets has a `categories` table")

    @property
    def benchmark_categories(self) -> dict[str, list[dict]]:
        """{benchmark: category table} of the evaluated (val and test) datasets: each benchmark of a mixed set
        is scored against its own table, where `categories` can give only one."""
        tables: dict[str, list[dict]] = {}
        for dataset in (self.val, self.test):
            if dataset is not None:
                tables.update(benchmark_categories(dataset))
        return tables

    def _loader(self, dataset: Dataset | None, stage: str, batch_size: int, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise ValueError(f"ZooDataModule has no `{stage}` dataset; set `data.init_args.{stage}` in the recipe")
        if not hasattr(dataset, "sample_tasks"):
            raise ValueError(
                f"{type(dataset).__name__} has no `sample_tasks`, the task of every index that batching by task needs"
            )
        trainer = self.trainer
        sampler = TaskBatchSampler(
            dataset.sample_tasks,
            batch_size,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )
        # Only training resumes mid-epoch; Lightning re-wraps predict batch samplers, which must stay plain.
        loader = ResumableDataLoader if stage == "train" else DataLoader
        return loader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, "train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """An empty list (which Lightning skips) when there is no val dataset: validation is optional."""
        if self.val is None:
            return []
        return self._loader(self.val, "val", self.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, "test", self.val_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.val, "val", self.val_batch_size, shuffle=False)
