"""`zoo grid`: run an ablation grid (recipes layered with overrides) and collect the runs' results into one table.

A grid file names its runs; each is a list of recipe files layered in order (`zoo fit` puts the recipes a file's
`# base:` header names first) plus optional command-line overrides:

    root: runs/ablations                  # each run fits in <root>/<name>/
    metrics: [referring/ciou, panoptic/pq, interactive/miou]   # table columns (default: every metric seen)
    runs:
      psalm: {configs: [recipes/psalm/tiny.yaml]}
      psalm+dual-encoder: {configs: [recipes/ablations/tiny_psalm_dual_encoder.yaml]}
      psalm-short: {configs: [recipes/psalm/tiny.yaml], args: ["--trainer.max_epochs=3"]}

`zoo grid --config FILE` fits every run without a `done.json` (so a re-run resumes the grid, an interrupted run
from its `last.ckpt`; checkpoints and the resolved config go to `<root>/<name>/checkpoints/`; a finished run whose
definition changed stops the grid unless `--rerun-changed`, see `zoo.runs`), then writes
`<root>/results.md` and `<root>/results.csv`: one row per run, its latest validation `results.json`, values x100
as papers print them. `--collect-only` skips training and only builds the table from what the runs left.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from zoo.cli import resolve
from zoo.runs import run_stage


@dataclass
class Run:
    name: str
    configs: list[str]
    args: list[str] = field(default_factory=list)


@dataclass
class Grid:
    root: str
    runs: list[Run]
    metrics: list[str] | None = None


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file; errors name the file and the run."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict) or not data["runs"]:
        raise ValueError(f"{path}: a grid needs a non-empty `runs` mapping of name -> {{configs, args}}")
    unknown = set(data) - {"root", "runs", "metrics"}
    if unknown:
        raise ValueError(f"{path}: unknown grid keys {sorted(unknown)} (allowed: root, runs, metrics)")
    runs = []
    for name, entry in data["runs"].items():
        if not isinstance(entry, dict) or not entry.get("configs"):
            raise ValueError(f"{path}: run '{name}' needs a non-empty `configs` list")
        extra = set(entry) - {"configs", "args"}
        if extra:
            raise ValueError(f"{path}: run '{name}' has unknown keys {sorted(extra)}")
        configs = [str(resolve(c, path, f"run '{name}' recipe")) for c in entry["configs"]]
        runs.append(Run(str(name), configs, [str(a) for a in entry.get("args", [])]))
    return Grid(str(data.get("root", "runs/grid")), runs, data.get("metrics"))


def latest_results(folder: Path) -> dict | None:
    """The newest validation results.json a run left under its folder (highest Lightning version), if any."""
    found = sorted(folder.glob("lightning_logs/version_*/results.json"), key=lambda p: int(p.parent.name[8:]))
    return json.loads(found[-1].read_text()) if found else None


def flatten(results: Mapping) -> dict[str, float | None]:
    """A results.json's metrics as table columns: {"metrics": {"referring": {"ciou": 0.4}}, "epoch": 3} ->
    {"referring/ciou": 0.4} (a group may name a benchmark too: "referring/refcocog_val")."""
    groups = results["metrics"]
    return {f"{group}/{metric}": value for group, metrics in groups.items() for metric, value in metrics.items()}


def comparison(rows: Mapping[str, Mapping | None], metrics: list[str] | None = None) -> tuple[list[str], list[list]]:
    """Header and rows (run, then each metric x100 to one decimal; '' where a run lacks it or has no results)."""
    flat = {name: flatten(results) if results else {} for name, results in rows.items()}
    columns = metrics or sorted({key for values in flat.values() for key in values})
    table = []
    for name, values in flat.items():
        cells = []
        for column in columns:
            value = values.get(column)
            cells.append("" if value is None or math.isnan(value) else f"{100 * value:.1f}")
        table.append([name, *cells])
    return ["run", *columns], table


def to_markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(header: list[str], rows: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def run_grid(
    path: str | Path,
    root: str | Path | None = None,
    overrides: list[str] | None = None,
    train: bool = True,
    rerun_changed: bool = False,
) -> str:
    """Fit every unfinished run (unless `train` is False; a finished one whose definition changed only with
    `rerun_changed`), then write and return the Markdown comparison."""
    grid = load_grid(path)
    root = Path(root or grid.root)
    for run in grid.runs if train else []:
        run_stage("run", run.name, root / run.name, run.configs, [*run.args, *(overrides or [])], None, rerun_changed)
    header, rows = comparison({run.name: latest_results(root / run.name) for run in grid.runs}, grid.metrics)
    markdown = to_markdown(header, rows)
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.md").write_text(markdown)
    (root / "results.csv").write_text(to_csv(header, rows))
    return markdown


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="zoo grid",
        description="Run an ablation grid and collect its results.json files into results.md / results.csv. "
        "Arguments it does not know are passed to every run's `zoo fit`.",
    )
    parser.add_argument("--config", required=True, help="grid YAML (e.g. recipes/ablations/tiny_grid.yaml)")
    parser.add_argument("--root", help="folder for the runs and the table (default: the file's `root`)")
    parser.add_argument("--collect-only", action="store_true", help="do not train; only build the table")
    parser.add_argument(
        "--rerun-changed", action="store_true", help="rerun finished runs whose definition or checkpoint changed"
    )
    known, overrides = parser.parse_known_args(argv)
    print(run_grid(known.config, known.root, overrides, not known.collect_only, known.rerun_changed), end="")
