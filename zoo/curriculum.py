"""`zoo curriculum`: run a recipe's stages in order, each its own fit from the previous stage's weights only.

A curriculum file names, per stage, the recipe files to layer (and optional command-line overrides):

    root: runs/xsam                      # each stage runs in <root>/<name>/
    stages:
      - name: stage1
        configs: [recipes/xsam/stage1.yaml]
      - name: stage2
        configs: [recipes/xsam/stage2.yaml]
        args: ["--trainer.max_epochs=2"]

Stage k > 1 gets `--model.init_from=<root>/<stage k-1>/checkpoints/last.ckpt` (weights only: fresh optimizer and
schedule). Each stage's checkpoints and resolved `config.yaml` sit in `<root>/<name>/checkpoints/`, its logs and
results.json under `<root>/<name>/lightning_logs/`. A finished stage leaves `<root>/<name>/done.json`; running the
command again skips finished stages and resumes an unfinished one from its `last.ckpt` (`--ckpt_path`).

A recipe file may declare the recipes it layers over in a header comment line `# base: a.yaml [b.yaml ...]`
(paths from the repository root, as recipes name each other); every tool here puts those first.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from lightning.pytorch.trainer.states import TrainerStatus
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from rich.console import Console
from rich.table import Table

from zoo.cli import ZooCLI

CHECKPOINT = "lightning.pytorch.callbacks.ModelCheckpoint"
BASE_LINE = re.compile(r"^#\s*base:\s*(.+)$")
DONE = "done.json"


def resolve(name: str, referrer: str | Path, what: str) -> Path:
    """A recipe path as files name each other (from the repository root): tried from the working directory,
    then from each folder above the file that names it, so commands work from any directory."""
    if Path(name).is_file():
        return Path(name)
    for folder in Path(referrer).resolve().parents:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{referrer}: {what} '{name}' does not exist")


def recipe_bases(path: str | Path) -> list[Path]:
    """The recipes `path` declares it layers over (its `# base:` header line), recursively, in layering order."""
    bases: list[Path] = []
    for line in Path(path).read_text().splitlines():
        if not line.startswith("#"):
            break
        match = BASE_LINE.match(line)
        if match:
            for name in match.group(1).split():
                base = resolve(name, path, "`# base:` recipe")
                bases += [*recipe_bases(base), base]
    return bases


def recipe_layers(paths: list[str | Path]) -> list[Path]:
    """Config files in layering order: each recipe preceded by its declared bases (each file once)."""
    ordered: list[Path] = []
    for path in paths:
        for p in [*recipe_bases(path), Path(path)]:
            if p not in ordered:
                ordered.append(p)
    return ordered


def is_plan(path: str | Path) -> bool:
    """Whether a YAML file under recipes/ is a plan (a curriculum's `stages` or a grid's `runs`), not a recipe."""
    data = yaml.safe_load(Path(path).read_text())
    return isinstance(data, dict) and ("stages" in data or "runs" in data) and "model" not in data


@dataclass
class Stage:
    """One fit of a curriculum: the recipe files layered, plus command-line overrides."""

    name: str
    configs: list[str]
    args: list[str] = field(default_factory=list)


@dataclass
class Curriculum:
    root: str
    stages: list[Stage]


def load_curriculum(path: str | Path) -> Curriculum:
    """Read and check a curriculum file; errors name the file and the stage."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list) or not data["stages"]:
        raise ValueError(f"{path}: a curriculum needs a non-empty `stages` list")
    unknown = set(data) - {"root", "stages"}
    if unknown:
        raise ValueError(f"{path}: unknown curriculum keys {sorted(unknown)} (allowed: root, stages)")
    stages = []
    for i, entry in enumerate(data["stages"]):
        if not isinstance(entry, dict) or "name" not in entry or not entry.get("configs"):
            raise ValueError(f"{path}: stage {i} needs a `name` and a non-empty `configs` list")
        extra = set(entry) - {"name", "configs", "args"}
        if extra:
            raise ValueError(f"{path}: stage '{entry['name']}' has unknown keys {sorted(extra)}")
        configs = [str(resolve(c, path, f"stage '{entry['name']}' recipe")) for c in entry["configs"]]
        stages.append(Stage(str(entry["name"]), configs, [str(a) for a in entry.get("args", [])]))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: stage names must be unique, got {names}")
    return Curriculum(root=str(data.get("root", "runs/curriculum")), stages=stages)


class StageCLI(ZooCLI):
    """A fit whose checkpoints go to the stage folder and whose resolved config is saved beside them."""

    def __init__(self, folder: Path, args: list[str]) -> None:
        self.folder = folder
        with warnings.catch_warnings():
            # The stage folder is the curriculum's own: its config (and, when resuming, its checkpoints) are there.
            warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
            super().__init__(args=args)

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    def before_instantiate_classes(self) -> None:
        """Point every ModelCheckpoint of the recipe at the stage folder (adding one if it has none), so the
        curriculum knows where the stage's `last.ckpt` is."""
        trainer = self.config[self.subcommand].trainer
        callbacks = list(trainer.callbacks or [])
        savers = [c for c in callbacks if getattr(c, "class_path", "") == CHECKPOINT]
        if not savers:
            from jsonargparse import Namespace

            saver = Namespace(class_path=CHECKPOINT, init_args=Namespace(save_last=True))
            callbacks.append(saver)
            savers = [saver]
        for saver in savers:
            saver.init_args.dirpath = str(self.checkpoints)
        savers[0].init_args.save_last = True
        trainer.callbacks = callbacks

    def before_fit(self) -> None:
        if rank_zero_only.rank == 0:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            parser = self._parser(self.subcommand)
            parser.save(self.config[self.subcommand], self.checkpoints / "config.yaml", skip_none=False, overwrite=True)


def stage_args(stage: Stage, folder: Path, previous: Path | None, overrides: list[str]) -> list[str]:
    """The `zoo fit` arguments of one stage: layered recipes, its overrides, the hand-off and the resume point."""
    args = ["fit"]
    for config in recipe_layers(stage.configs):
        args += ["--config", str(config)]
    args += [*stage.args, *overrides, f"--trainer.default_root_dir={folder}"]
    if previous is not None:
        args.append(f"--model.init_from={previous}")
    last = folder / "checkpoints" / "last.ckpt"
    if last.is_file():
        args.append(f"--ckpt_path={last}")
    return args


def run_curriculum(path: str | Path, root: str | Path | None = None, overrides: list[str] | None = None) -> list[dict]:
    """Run (or resume) every stage in order; returns each stage's record (the content of its done.json)."""
    plan = load_curriculum(path)
    root = Path(root or plan.root)
    records, previous = [], None
    for stage in plan.stages:
        folder = root / stage.name
        done = folder / DONE
        if done.is_file():
            record = json.loads(done.read_text())
            rank_zero_info(f"curriculum: stage '{stage.name}' already finished, skipping ({done})")
        else:
            resuming = (folder / "checkpoints" / "last.ckpt").is_file()
            rank_zero_info(f"curriculum: {'resuming' if resuming else 'starting'} stage '{stage.name}' in {folder}")
            start = time.perf_counter()
            cli = StageCLI(folder, stage_args(stage, folder, previous, list(overrides or [])))
            trainer = cli.trainer
            if trainer.state.status != TrainerStatus.FINISHED or trainer.interrupted:
                raise RuntimeError(f"curriculum: stage '{stage.name}' did not finish ({trainer.state.status})")
            results = Path(trainer.log_dir or folder) / "results.json"
            record = {
                "stage": stage.name,
                "checkpoint": str(cli.checkpoints / "last.ckpt"),
                "config": str(cli.checkpoints / "config.yaml"),
                "log_dir": str(trainer.log_dir),
                "global_step": trainer.global_step,
                "seconds": round(time.perf_counter() - start, 1),
                "resumed": resuming,
                "results": json.loads(results.read_text()) if results.is_file() else {},
            }
            if trainer.is_global_zero:
                done.write_text(json.dumps(record, indent=2) + "\n")
            del cli, trainer
            gc.collect()
        records.append(record)
        previous = Path(record["checkpoint"])
    return records


def summary_table(records: list[dict]) -> Table:
    table = Table(title="Curriculum")
    for column in ("stage", "steps", "seconds (this run)", "checkpoint"):
        table.add_column(column)
    for r in records:
        table.add_row(r["stage"], str(r["global_step"]), str(r["seconds"]), r["checkpoint"])
    return table


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="zoo curriculum",
        description="Run a curriculum's stages in order (each a fit from the previous stage's weights); "
        "re-run to resume. Arguments it does not know are passed to every stage's `zoo fit`.",
    )
    parser.add_argument("--config", required=True, help="curriculum YAML (e.g. recipes/xsam/curriculum.yaml)")
    parser.add_argument("--root", help="folder for the stages (default: the file's `root`)")
    known, overrides = parser.parse_known_args(argv)
    # Each stage hands LightningCLI its own arguments on purpose; its warning about ignoring sys.argv is noise here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    records = run_curriculum(known.config, known.root, overrides)
    if rank_zero_only.rank == 0:
        Console().print(summary_table(records))
