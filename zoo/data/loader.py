"""A DataLoader whose position in the epoch is saved in Lightning checkpoints, so a run resumes mid-epoch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from zoo.data.sampler import TaskBatchSampler


class ResumableDataLoader(DataLoader):
    """Counts the batches handed to the training loop; Lightning 2.6 saves `state_dict()` of any loader that has
    one (fit loop `combined_loader` state) and calls `load_state_dict` before iterating again on resume.

    The count is taken here, not in the sampler, because worker processes prefetch batches the step never saw.
    On resume the batch sampler skips the consumed batches by index, so nothing is loaded twice or left out.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.batch_sampler, TaskBatchSampler):
            raise ValueError("ResumableDataLoader needs a TaskBatchSampler as its batch_sampler")
        self._epoch = 0
        self._consumed = 0

    def __iter__(self) -> Iterator[Any]:
        sampler: TaskBatchSampler = self.batch_sampler  # type: ignore[assignment]
        self._epoch, self._consumed = sampler.epoch, sampler.skip
        for batch in super().__iter__():
            self._consumed += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches": self._consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        missing = {"epoch", "batches"} - set(state)
        if missing:
            raise ValueError(f"Data loader state lacks {sorted(missing)}: got keys {sorted(state)}")
        self._epoch, self._consumed = state["epoch"], state["batches"]
        self.batch_sampler.resume(state["epoch"], state["batches"])  # type: ignore[union-attr]
