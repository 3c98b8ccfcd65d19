"""Callbacks the multi-process tests add from the command line: what each rank trained on, its logged losses and
its weights; and BatchNorm held on running statistics where SyncBatchNorm cannot run."""

from __future__ import annotations

import json
from pathlib import Path

from lightning import Callback, LightningModule, Trainer
from torch import nn


class RankProbe(Callback):
    """Writes `rank{r}.json`: the task, logged `train/*` values and (rank-averaged) gradient norms of every step, and
    per-parameter sums before and after training."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.tasks: list[str] = []
        self.losses: list[dict[str, float]] = []
        self.grads: list[dict[str, float]] = []
        self.before: dict[str, float] = {}

    @staticmethod
    def _sums(module: LightningModule) -> dict[str, float]:
        return {n: p.detach().double().sum().item() for n, p in module.net.named_parameters()}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.before = self._sums(pl_module)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        self.tasks.append(batch.task)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        named = pl_module.net.named_parameters()
        self.grads.append({n: p.grad.double().norm().item() for n, p in named if p.grad is not None})

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        metrics = trainer.callback_metrics
        self.losses.append({k: v.item() for k, v in metrics.items() if k.startswith("train/")})

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainable = [n for n, p in pl_module.net.named_parameters() if p.requires_grad]
        record = {
            "world_size": trainer.world_size,
            "tasks": self.tasks,
            "losses": self.losses,
            "grads": self.grads,
            "trainable": trainable,
            "before": self.before,
            "after": self._sums(pl_module),
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class BatchNormOnRunningStats(Callback):
    """Puts BatchNorm layers in eval mode for every training step, so they normalise with running statistics.

    In train mode a BatchNorm normalises with its rank's batch statistics, which differ between B samples per rank
    and 2B in one process by design; `sync_batchnorm` (set by recipes/_base/trainer_gpu.yaml) makes them the
    global batch's, but torch's SyncBatchNorm runs on GPUs only. CPU tests comparing world sizes hold BatchNorm
    fixed instead.
    """

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        for module in pl_module.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
