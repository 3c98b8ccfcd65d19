"""Task-homogeneous, rank-aware batching: every step, every rank runs a batch of the same task."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class TaskBatchSampler(Sampler[list[int]]):
    """Yields batches of indices that share one task, identically planned on every rank.

    Global batches of `batch_size * num_replicas` indices are cut per task (shuffled by `seed + epoch`), their
    order is shuffled, and each rank takes its slice. Ranks therefore agree on the task at every step (models
    with task-specific branches stay in lockstep under DDP), and the plan depends only on seed and epoch.
    With `drop_last=False` a short final global batch is kept and padded by repeating its own indices, so
    every rank yields the same number of batches of the same task. `resume(epoch, batches)` makes the next
    iteration start after the first `batches` batches of that epoch's plan, which is how a checkpoint taken
    mid-epoch continues with exactly the batches it had not seen (see `ResumableDataLoader`).
    """

    def __init__(
        self,
        sample_tasks: Sequence[str],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1 or num_replicas < 1:
            raise ValueError(f"batch_size and num_replicas must be positive, got {batch_size} and {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        by_task: dict[str, list[int]] = {}
        for index, task in enumerate(sample_tasks):
            by_task.setdefault(task, []).append(index)
        self._by_task = {task: torch.tensor(indices) for task, indices in by_task.items()}
        # Private names: Lightning rebuilds batch samplers exposing `batch_size` and `drop_last` as if they
        # were torch BatchSamplers, which this one is not.
        self._batch_size = batch_size
        self._shuffle = shuffle
        self._seed = seed
        self._drop_last = drop_last
        self._num_replicas = num_replicas
        self._rank = rank
        self.epoch = 0
        self._skip = 0

    @property
    def sampler(self) -> TaskBatchSampler:
        """Lightning calls `set_epoch` on `dataloader.batch_sampler.sampler`; this lets that call reach us."""
        return self

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:  # a pending resume position belongs to the epoch it was saved in
            self._skip = 0
        self.epoch = epoch

    def resume(self, epoch: int, batches: int) -> None:
        """Continue epoch `epoch` after its first `batches` batches; a finished epoch resumes at the next one."""
        if batches < 0 or epoch < 0:
            raise ValueError(f"Cannot resume at epoch {epoch}, batch {batches}")
        if batches >= len(self):
            epoch, batches = epoch + 1, 0
        self.epoch = epoch
        self._skip = batches

    @property
    def skip(self) -> int:
        """Batches of the current epoch the next iteration leaves out (non-zero only after `resume`)."""
        return self._skip

    def _global_batches(self) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(self._seed + self.epoch)
        size = self._batch_size * self._num_replicas
        batches = []
        for indices in self._by_task.values():
            if self._shuffle:
                indices = indices[torch.randperm(len(indices), generator=generator)]
            for start in range(0, len(indices), size):
                chunk = indices[start : start + size]
                if len(chunk) < size:
                    if self._drop_last:
                        break
                    per_rank = math.ceil(len(chunk) / self._num_replicas)
                    chunk = chunk.repeat(math.ceil(per_rank * self._num_replicas / len(chunk)))
                    chunk = chunk[: per_rank * self._num_replicas]
                batches.append(chunk)
        if self._shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        for batch in self._global_batches()[skip:]:
            per_rank = len(batch) // self._num_replicas
            yield batch[self._rank * per_rank : (self._rank + 1) * per_rank].tolist()

    def __len__(self) -> int:
        size = self._batch_size * self._num_replicas
        if self._drop_last:
            return sum(len(indices) // size for indices in self._by_task.values())
        return sum(-(-len(indices) // size) for indices in self._by_task.values())
