"""A callback the multi-process tests add from the command line: what each rank trained on, and its weights."""

from __future__ import annotations

import json
from pathlib import Path

from lightning import Callback, LightningModule, Trainer


class RankProbe(Callback):
    """Writes `rank{r}.json`: the task of every step and per-parameter sums before and after training."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.tasks: list[str] = []
        self.before: dict[str, float] = {}

    @staticmethod
    def _sums(module: LightningModule) -> dict[str, float]:
        return {n: p.detach().double().sum().item() for n, p in module.net.named_parameters()}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.before = self._sums(pl_module)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        self.tasks.append(batch.task)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainable = [n for n, p in pl_module.net.named_parameters() if p.requires_grad]
        record = {
            "world_size": trainer.world_size,
            "tasks": self.tasks,
            "trainable": trainable,
            "before": self.before,
            "after": self._sums(pl_module),
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
