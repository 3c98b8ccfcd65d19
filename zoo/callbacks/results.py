"""A paper-style results table and a `results.json` from the nested results the module computed at validation or
test: `{group: {metric: value}}`, a group being a task on one benchmark ("referring/refcoco_val")."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from rich.console import Console
from rich.table import Table

Results = Mapping[str, Mapping[str, float]]


class ReportsResults(Protocol):
    """A module whose evaluation epoch end leaves its results in `results` (`zoo.module.ZooModule` does)."""

    results: Results


def flat_results(results: Results, prefix: str = "") -> dict[str, float]:
    """One key per value, `<prefix><group>/<metric>`, for what reads metrics by name (Lightning's progress bar,
    checkpoint monitors and loggers): {"referring/refcoco_val": {"ciou": v}} -> {"val/referring/refcoco_val/ciou": v}
    with prefix "val/"."""
    return {f"{prefix}{group}/{name}": value for group, metrics in results.items() for name, value in metrics.items()}


# The papers' column order; other metrics (per prompt type, baselines) follow alphabetically.
METRIC_ORDER = (
    *("pq", "pq_things", "pq_stuff", "sq", "rq"),
    *("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "miou", "pacc"),
    *("ciou", "giou", "n_acc", "t_acc", "noc85", "noc90", "miou_1click"),
)
RAW = ("noc",)  # metrics printed as they are, not as percentages: click counts


def _ordered(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: (METRIC_ORDER.index(n) if n in METRIC_ORDER else len(METRIC_ORDER), n))


def _cell(name: str, value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.2f}" if name.startswith(RAW) else f"{100 * value:.1f}"


def results_table(results: Results, title: str, width: int = 120) -> Table:
    """Benchmark × metric, as the papers lay it out: per task a header row of metric names, then one row per
    benchmark; percentages to one decimal (losses and NoC click counts as they are), '-' where undefined.

    As many metric columns as fit in `width` characters without folding a name; the rest continue below.
    """
    by_task: dict[str, list[tuple[str, Mapping[str, float]]]] = {}
    for group, metrics in results.items():
        task, _, benchmark = group.partition("/")
        by_task.setdefault(task, []).append((benchmark, metrics))
    labels = [*by_task, *(f"  {b}" for rows in by_task.values() for b, _ in rows)]
    label_width = max(map(len, labels), default=0)
    cell_width = max((len(m) for ms in results.values() for m in ms), default=5)
    columns = max(1, (width - label_width - 4) // (cell_width + 3))  # 3: a cell's padding and border
    table = Table(title=title, show_header=False)
    table.add_column("benchmark", style="bold", no_wrap=True, min_width=label_width)
    for _ in range(columns):
        table.add_column(justify="right", no_wrap=True, min_width=cell_width)
    for n, (task, rows) in enumerate(by_task.items()):
        names = _ordered(list({m for _, metrics in rows for m in metrics}))
        for start in range(0, len(names), columns):
            chunk = names[start : start + columns]
            table.add_row(task if start == 0 else "", *chunk, style="bold cyan", end_section=False)
            for benchmark, metrics in rows:
                cells = [_cell(m, metrics[m]) if m in metrics else "" for m in chunk]
                table.add_row(f"  {benchmark}" if benchmark else "", *cells)
        if n < len(by_task) - 1:
            table.add_section()
    return table


class ResultsTable(L.Callback):
    """Print the latest validation (or test) results as a table and keep them in the run's log folder.

    Validation results go to `filename` after every validation run (so an interrupted fit still has its latest
    numbers) and are printed at the end of `fit` / `validate`; test results go to `test_<filename>` and are
    printed at the end of `test`. The JSON holds `{"metrics": {group: {metric: value}}, "epoch": N, "step": N}`,
    values as raw fractions, NaN as null.

    The results are the module's (`ReportsResults`), read in `on_validation_end`, not `on_validation_epoch_end`:
    Lightning runs callback epoch-end hooks before the module's, where the module computes them.
    """

    def __init__(self, filename: str = "results.json") -> None:
        self.filename = filename
        self.latest: dict[str, dict[str, float]] = {}
        self.epoch = 0
        self.step = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: ReportsResults) -> None:
        if trainer.sanity_checking:
            return
        self._collect(trainer, pl_module)
        directory = self._directory(trainer)  # collective under DDP: every rank must ask
        if trainer.is_global_zero:
            self._write(Path(directory) / self.filename)
            if trainer.state.fn == TrainerFn.VALIDATING:
                self._print("Validation")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.latest:
            self._print("Validation")

    def on_test_end(self, trainer: L.Trainer, pl_module: ReportsResults) -> None:
        self._collect(trainer, pl_module)
        directory = self._directory(trainer)
        if trainer.is_global_zero:
            self._write(Path(directory) / f"test_{self.filename}")
            self._print("Test")

    def _collect(self, trainer: L.Trainer, pl_module: ReportsResults) -> None:
        self.latest = {group: dict(metrics) for group, metrics in pl_module.results.items()}
        self.epoch, self.step = trainer.current_epoch, trainer.global_step

    @staticmethod
    def _directory(trainer: L.Trainer) -> str:
        return trainer.log_dir or trainer.default_root_dir

    def _write(self, path: Path) -> None:
        clean = {g: {m: None if math.isnan(v) else v for m, v in ms.items()} for g, ms in self.latest.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"metrics": clean, "epoch": self.epoch, "step": self.step}, indent=2) + "\n")

    def _print(self, stage: str) -> None:
        title = f"{stage} results, % (NoC in clicks; epoch {self.epoch}, step {self.step})"
        console = Console()
        console.print(results_table(self.latest, title, console.width))
