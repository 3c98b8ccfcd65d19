"""A `last.ckpt` at the end of every fit, whatever the validation cadence."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class LastAtFitEnd(L.Callback):
    """ModelCheckpoint(save_last=True) writes `last.ckpt` after a validation (or at an epoch's end when it validates
    every epoch), so a fit that stops before its next validation (`max_steps`, `check_val_every_n_epoch: 4`) kept
    no checkpoint of its final weights: the next stage had nothing to start from and a rerun had nothing to resume.
    This writes it when training ends, unless it was already written at the final step."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for saver in trainer.checkpoint_callbacks:
            # Lightning's own last-checkpoint path (file name, versioning, removal of the previous one).
            if (
                isinstance(saver, ModelCheckpoint)
                and saver.save_last
                and not saver._should_skip_saving_checkpoint(trainer)
            ):
                saver._save_last_checkpoint(trainer, saver._monitor_candidates(trainer))
