"""The one LightningModule: trains and evaluates every family from the parts a recipe assembles."""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info

from zoo import performance
from zoo.callbacks.last import LastAtFitEnd
from zoo.callbacks.overlays import Overlays
from zoo.callbacks.results import ResultsTable, flat_results
from zoo.evaluation import Evaluator
from zoo.interaction import MultiRoundTraining
from zoo.losses import Criterion, SetCriterion
from zoo.model import ModelOutput, SegmentationModel
from zoo.randomness import sample_generators
from zoo.stages import check_init, load_weights, param_groups, set_trainable
from zoo.types import Batch


class ZooModule(LightningModule):
    """Stages are configuration: what trains (`trainable` globs), learning rates, and where weights come from."""

    def __init__(
        self,
        net: SegmentationModel,
        criterion: Criterion | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        trainable: list[str] | None = None,
        lr_multipliers: dict[str, float] | None = None,
        init_from: str | None = None,
        init_missing_ok: list[str] | None = None,
        gradient_checkpointing: bool | list[str] = False,
        compile_parts: list[str] | None = None,
        compile_options: dict[str, Any] | None = None,
        lm_loss_weight: float = 1.0,
        evaluator: Evaluator | None = None,
        interaction: MultiRoundTraining | None = None,
    ) -> None:
        """`init_from` loads the weights only (a new stage: fresh optimizer); `--ckpt_path` resumes a stage.

        A load that leaves a frozen part or most of the model at random init stops, unless the missing keys match
        `init_missing_ok` globs (a part this stage adds, or one that loads its own pretrained file). `init_from` is
        not saved with the checkpoint's hyper-parameters: a checkpoint holds its weights and stands alone.

        `trainable` globs name parameters of `net` (e.g. 'pixel_decoder.*'); everything else is frozen. None keeps
        what the parts chose (a LoRA-wrapped LM freezes its base weights). `lr_multipliers` maps globs to factors
        on the optimizer's learning rate; the first matching glob wins. `interaction` runs earlier click rounds
        without gradients before each interactive training step (SEEM's multi-round training).

        Speed switches, off by default: `gradient_checkpointing` true checkpoints the language model's layers, a list
        checkpoints the named parts (`[encoder.sam.body, pixel_decoder]`, see `zoo.performance`); `compile_parts`
        runs `torch.compile(**compile_options)` on the named parts (e.g. `[pixel_decoder, mask_decoder]`).
        """
        super().__init__()
        self.save_hyperparameters(ignore=["net", "criterion", "evaluator", "interaction", "init_from"])
        self.net = net
        self.criterion = criterion if criterion is not None else SetCriterion()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.lr_multipliers = dict(lr_multipliers or {})
        self.lm_loss_weight = lm_loss_weight
        self.evaluator = evaluator if evaluator is not None else Evaluator()
        self.interaction = interaction
        if init_from is not None:
            missing, _ = load_weights(self.net, init_from, prefix="net.")
        trained, total = set_trainable(self.net, trainable)
        if init_from is not None:
            check_init(self.net, init_from, missing, init_missing_ok or [])
        rank_zero_info(f"trainable parameters: {trained:,} of {total:,}")
        if gradient_checkpointing is True:
            self.net.set_gradient_checkpointing(True)
        elif gradient_checkpointing:
            performance.checkpoint_parts(self.net, gradient_checkpointing)
        performance.compile_parts(self.net, compile_parts or [], compile_options)

    def configure_callbacks(self) -> list:
        return [ResultsTable(), Overlays(self.evaluator.num_overlays), LastAtFitEnd()]

    def setup(self, stage: str) -> None:
        self.results: dict[str, dict[str, float]] = {}  # the latest evaluation, {group: {metric: value}}
        try:
            categories = self.trainer.datamodule.categories
        except (AttributeError, ValueError):  # no datamodule, or datasets without a category table: no PQ
            categories = None
        # Each evaluated benchmark's own table (a mixed val set, e.g. COCO + ADE20K), the shared one for the rest.
        tables = dict(getattr(getattr(self.trainer, "datamodule", None), "benchmark_categories", None) or {})
        if tables and categories:
            tables[None] = categories
        self.evaluator.bind(tables or categories)

    def forward(self, batch: Batch) -> ModelOutput:
        return self.net(batch)

    def _losses(self, batch: Batch, out: ModelOutput) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        if out.predictions is not None:
            masks, labels = batch.trained_targets()
            losses.update(self.criterion(out.predictions, masks, labels, batch.task, generators=batch.generators))
        if out.lm_loss is not None:
            losses["loss_lm"] = out.lm_loss * self.lm_loss_weight
        if not losses:
            raise ValueError(f"batch of task '{batch.task}' produced no loss term")
        return losses

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        if self.interaction is not None:
            batch = self.interaction(self.net, batch)
        losses = self._losses(batch, self(batch))
        total = sum(losses.values())
        size = len(batch)
        # Averaged over ranks: the losses are normalised so that this mean is the global batch's loss.
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=size, sync_dist=True)
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=size, sync_dist=True)
        return total

    def _eval_step(self, batch: Batch, batch_idx: int, prefix: str) -> list[dict]:
        """The per-sample results the evaluator scored, for callbacks (`Overlays`)."""
        out = self(batch)
        losses = self._losses(batch, out)
        self.log(f"{prefix}_loss/{batch.task}", sum(losses.values()), batch_size=len(batch))
        results = self.evaluator.update(batch, out.predictions[-1] if out.predictions else None, out.texts)
        if out.predictions is not None:
            self.evaluator.rerun(batch, lambda clicked: self(clicked).predictions[-1])
        return results

    def validation_step(self, batch: Batch, batch_idx: int) -> list[dict]:
        return self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> list[dict]:
        return self._eval_step(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        self.results = self.evaluator.compute()
        self.log_dict(flat_results(self.results, "val/"))

    def on_test_epoch_end(self) -> None:
        self.results = self.evaluator.compute()
        self.log_dict(flat_results(self.results, "test/"))

    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict]:
        """Per sample: the post-processed masks, and `text` where the bridge generates an answer."""
        out = self(batch)
        return self.evaluator.postprocess(batch, out.predictions[-1] if out.predictions else None, out.texts)

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer_factory(param_groups(self.net, self.lr_multipliers))
        for group in optimizer.param_groups:
            group["lr"] *= group.get("lr_mult", 1.0)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer)
        if hasattr(scheduler, "set_total_steps"):
            scheduler.set_total_steps(self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        """Seed each step from (run seed, step, rank), as fairseq does: the points, shuffles and prompts a step
        draws then depend on nothing before it, so a run resumed with `--ckpt_path` repeats an unbroken one.

        Each sample also gets its own stream, keyed by the training batch's index and the sample's position in the
        global batch (every rank holds the same number of samples): what the criterion and the bridge draw is
        then the same on any number of processes (`zoo.randomness`).
        """
        torch.manual_seed((_run_seed() * 1_000_003 + self.global_step) * 1_009 + self.global_rank)
        index, size = self.trainer.fit_loop.epoch_loop.total_batch_idx, len(batch)
        batch.generators = sample_generators(_run_seed(), index, self.global_rank * size, size, self.device)


def _run_seed() -> int:
    """The run's `seed_everything` seed (0 when none was set)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))
