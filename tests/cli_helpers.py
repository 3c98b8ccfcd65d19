"""Run the real `zoo` command line in-process, shrunk to a few steps in a temporary folder."""

from __future__ import annotations

import csv
from pathlib import Path

from zoo.cli import ZooCLI


class ParseOnly(ZooCLI):
    """Parses and type-checks a recipe (class paths, keys, types) without building anything or loading weights."""

    def instantiate_classes(self) -> None:
        pass


def small(tmp: Path, steps: int = 3) -> list[str]:
    """Overrides that keep a tiny recipe to a few steps, with its outputs under `tmp`."""
    return [
        f"--trainer.default_root_dir={tmp}",
        f"--trainer.limit_train_batches={steps}",
        "--trainer.max_steps=-1",
        "--trainer.max_epochs=1",
        "--trainer.check_val_every_n_epoch=1",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--data.train.init_args.num_images=24",
        "--data.val.init_args.num_images=4",
    ]


def checkpoint_callback(tmp: Path) -> list[str]:
    return [
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={tmp / 'checkpoints'}",
        "--trainer.callbacks.save_last=true",
    ]


def logged_losses(log_dir: Path) -> dict[int, float]:
    """`train/loss` by step from the CSV logger's metrics file."""
    rows = csv.DictReader(open(log_dir / "metrics.csv"))
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}
