"""Resumable, rank-aware task batching: mid-epoch resume by sampler, by loader state, and through Lightning."""

from __future__ import annotations

from pathlib import Path

import lightning
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from zoo.data import SyntheticSegmentation, TaskBatchSampler, ZooDataModule, collate
from zoo.data.loader import ResumableDataLoader
from zoo.types import Batch

TASKS = ["a"] * 9 + ["b"] * 6 + ["c"] * 3


def test_sampler_resume_continues_the_plan_on_two_ranks() -> None:
    for rank in (0, 1):
        full = list(TaskBatchSampler(TASKS, batch_size=2, seed=4, num_replicas=2, rank=rank))
        for k in (0, 2, len(full) - 1):
            resumed = TaskBatchSampler(TASKS, batch_size=2, seed=4, num_replicas=2, rank=rank)
            resumed.resume(0, k)
            assert list(resumed) == full[k:]
            assert list(resumed) == full, "the skip applies to one iteration only"


def test_resume_at_epoch_end_starts_the_next_epoch() -> None:
    sampler = TaskBatchSampler(TASKS, batch_size=2, seed=4)
    sampler.resume(3, len(sampler))
    assert sampler.epoch == 4 and sampler.skip == 0
    sampler.resume(3, 1)
    sampler.set_epoch(3)
    assert sampler.skip == 1, "Lightning re-announcing the same epoch keeps the resume position"
    sampler.set_epoch(4)
    assert sampler.skip == 0
    with pytest.raises(ValueError, match="resume"):
        sampler.resume(0, -1)


def _loader(rank: int, num_workers: int = 0) -> ResumableDataLoader:
    dataset = SyntheticSegmentation(num_images=6, image_size=32, tasks=["panoptic", "caption", "referring"])
    sampler = TaskBatchSampler(dataset.sample_tasks, batch_size=2, seed=7, num_replicas=2, rank=rank)
    return ResumableDataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)


def _ids(batch: Batch) -> tuple[str, list[int]]:
    return batch.task, [(m["image_id"], m["split"]) for m in batch.meta]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_state_resumes_each_rank_where_it_stopped(num_workers: int) -> None:
    for rank in (0, 1):
        full = [_ids(b) for b in _loader(rank)]
        loader = _loader(rank, num_workers)
        head = []
        for batch in loader:
            head.append(_ids(batch))
            if len(head) == 3:
                break
        state = loader.state_dict()
        assert state == {"epoch": 0, "batches": 3}
        resumed = _loader(rank, num_workers)
        resumed.load_state_dict(state)
        assert head + [_ids(b) for b in resumed] == full
    with pytest.raises(ValueError, match="lacks"):
        _loader(0).load_state_dict({"epoch": 0})


class _Recorder(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, tuple]] = []

    def training_step(self, batch: Batch, index: int) -> torch.Tensor:
        self.seen.append((self.current_epoch, _ids(batch)))
        return self.weight.square().sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(tmp: Path, **kwargs) -> lightning.Trainer:
    return lightning.Trainer(
        accelerator="cpu",
        default_root_dir=tmp,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        **kwargs,
    )


def test_lightning_resumes_mid_epoch_with_the_unseen_batches(tmp_path: Path) -> None:
    def data() -> ZooDataModule:
        train = SyntheticSegmentation(num_images=8, image_size=32, tasks=["panoptic", "caption"])
        return ZooDataModule(train=train, batch_size=3, seed=5)

    # A step-interval checkpoint lands mid-epoch (epoch 1, after its 2nd batch), as a preempted job's would.
    every = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=8, save_top_k=-1, filename="{step}")
    reference = _Recorder()
    _trainer(tmp_path, max_epochs=2, callbacks=[every]).fit(reference, data())
    assert len(reference.seen) == 12
    checkpoint = tmp_path / "step=8.ckpt"
    state = torch.load(checkpoint, weights_only=False)["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert state == [{"epoch": 1, "batches": 2}]

    resumed = _Recorder()
    _trainer(tmp_path, max_epochs=2, enable_checkpointing=False).fit(resumed, data(), ckpt_path=checkpoint)
    assert resumed.seen == reference.seen[8:]
