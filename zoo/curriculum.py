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
results.json under `<root>/<name>/lightning_logs/`. A finished stage leaves `<root>/<name>/done.json` (with the
hashes of its definition and checkpoint) and `definition.yaml`; running the command again skips finished stages,
refuses one whose definition changed unless `--rerun-changed`, and resumes an unfinished one from its `last.ckpt`
(`--ckpt_path`).

A stage's recipe may be an overlay alone: `zoo fit` puts the recipes its `# base:` header names first.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table

from zoo.cli import resolve
from zoo.runs import run_stage


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


def run_curriculum(
    path: str | Path, root: str | Path | None = None, overrides: list[str] | None = None, rerun_changed: bool = False
) -> list[dict]:
    """Run (or resume) every stage in order; returns each stage's record (the content of its done.json). A finished
    stage whose definition changed stops the curriculum unless `rerun_changed` (then it and the stages after it,
    whose starting checkpoint changes, run again)."""
    plan = load_curriculum(path)
    root = Path(root or plan.root)
    records: list[dict] = []
    for stage in plan.stages:
        previous = Path(records[-1]["checkpoint"]) if records else None
        args = [*stage.args, *(overrides or [])]
        records.append(run_stage("stage", stage.name, root / stage.name, stage.configs, args, previous, rerun_changed))
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
    parser.add_argument(
        "--rerun-changed", action="store_true", help="rerun finished stages whose definition or checkpoint changed"
    )
    known, overrides = parser.parse_known_args(argv)
    records = run_curriculum(known.config, known.root, overrides, known.rerun_changed)
    if rank_zero_only.rank == 0:
        Console().print(summary_table(records))
