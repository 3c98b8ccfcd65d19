"""Cross-family swaps: each ablation overlay changes only what it names; the grid runner tabulates results."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from tests.cli_helpers import ParseOnly
from tests.conftest import ROOT
from zoo.__main__ import main
from zoo.bridges import LLMQueries, SegAdd
from zoo.cli import ZooCLI, recipe_bases
from zoo.connectors import SamConnector
from zoo.encoders import MultiEncoder, TimmEncoder
from zoo.grid import comparison, latest_results, load_grid, run_grid, to_csv, to_markdown
from zoo.heads import ConditionHead, CosineHead

ABLATIONS = ROOT / "recipes" / "ablations"
# What each tiny overlay must build: encoder, connector, bridge, head classes and the language model's family.
EXPECTED = {
    "tiny_psalm_dual_encoder.yaml": (MultiEncoder, SamConnector, LLMQueries, ConditionHead, "phi"),
    "tiny_xsam_llm_queries.yaml": (MultiEncoder, SamConnector, LLMQueries, ConditionHead, "phi3"),
    "tiny_psalm_qwen2.yaml": (TimmEncoder, type(None), LLMQueries, ConditionHead, "qwen2"),
    "tiny_xsam_qwen2.yaml": (MultiEncoder, SamConnector, SegAdd, CosineHead, "qwen2"),
}


def flat(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: tree}


def test_the_cross_family_ablations_exist() -> None:
    assert set(EXPECTED) <= {p.name for p in ABLATIONS.glob("tiny_*.yaml")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_ablation_builds_the_swapped_parts_and_keeps_the_rest_of_its_base(name: str) -> None:
    overlay = ABLATIONS / name
    bases = recipe_bases(overlay)
    assert bases, f"{name} declares no `# base:`"
    cli = ZooCLI(args=["--config", str(overlay)], run=False)  # the CLI layers the overlay over its bases
    net = cli.model.net
    encoder, connector, bridge, head, lm_family = EXPECTED[name]
    assert type(net.encoder) is encoder and type(net.connector) is connector
    assert type(net.bridge) is bridge and type(net.head) is head
    assert net.bridge.lm.model.config.model_type == lm_family

    # Every setting that differs from the base recipe lies under what the overlay writes: the keys it sets, and
    # everything below a part whose class it replaces.
    original = ParseOnly(args=["--config", str(bases[0])], run=False)
    before = flat(yaml.safe_load(original.parser.dump(original.config)))
    after = flat(yaml.safe_load(cli.parser.dump(cli.config)))
    written = [k.replace(".init_args", "") for k in flat(yaml.safe_load(overlay.read_text()))]
    owners = [k.removesuffix(".class_path") for k in written]
    changed = {k.replace(".init_args", "") for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed and all(any(k == o or k.startswith(o + ".") for o in owners) for k in changed), sorted(changed)


RESULTS = {  # results.json as validation writes it: {"metrics": {"task[/benchmark]": {metric: value}}, epoch, step}
    "a": {"metrics": {"referring": {"ciou": 0.5, "giou": 0.25}, "panoptic": {"pq": 0.123}}, "epoch": 3, "step": 9},
    "b": {"metrics": {"referring": {"ciou": 0.4}, "interactive": {"miou": None}}, "epoch": 0, "step": 2},
    "c": None,
}


def test_comparison_table_rounds_like_papers_and_leaves_gaps_empty() -> None:
    header, rows = comparison(RESULTS, ["referring/ciou", "panoptic/pq", "interactive/miou"])
    assert to_markdown(header, rows) == (
        "| run | referring/ciou | panoptic/pq | interactive/miou |\n"
        "|---|---:|---:|---:|\n"
        "| a | 50.0 | 12.3 |  |\n"
        "| b | 40.0 |  |  |\n"
        "| c |  |  |  |\n"
    )
    assert list(csv.reader(io.StringIO(to_csv(header, rows)))) == [header, *rows]
    header, _ = comparison(RESULTS)  # by default, every metric any run reported
    assert header == ["run", "interactive/miou", "panoptic/pq", "referring/ciou", "referring/giou"]


def test_a_runs_latest_results_are_read_by_task_benchmark_and_metric(tmp_path: Path) -> None:
    """The newest Lightning version's results.json wins (version_10 after version_9), and a task's benchmark
    stays part of its column name."""
    for version, ciou in ((9, 0.1), (10, 0.2)):
        folder = tmp_path / "lightning_logs" / f"version_{version}"
        folder.mkdir(parents=True)
        metrics = {"referring/refcocog_val": {"ciou": ciou}, "panoptic": {"pq": 0.3}}
        (folder / "results.json").write_text(json.dumps({"metrics": metrics, "epoch": version, "step": 4 * version}))
    assert latest_results(tmp_path / "missing") is None
    header, rows = comparison({"run": latest_results(tmp_path)})
    assert header == ["run", "panoptic/pq", "referring/refcocog_val/ciou"] and rows == [["run", "30.0", "20.0"]]


def test_grid_trains_its_runs_once_and_collects_their_results(tmp_path: Path) -> None:
    grid = {
        "metrics": ["panoptic/pq", "panoptic/sq"],
        "runs": {
            "lr-high": {"configs": ["recipes/psalm/tiny_stage1.yaml"]},
            "lr-low": {"configs": ["recipes/psalm/tiny_stage1.yaml"], "args": ["--model.optimizer.init_args.lr=1e-5"]},
        },
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    fast = [
        "--trainer.limit_train_batches=2",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--data.val.init_args.num_images=2",
    ]
    markdown = run_grid(path, tmp_path / "runs", fast)
    lines = markdown.splitlines()
    assert lines[0] == "| run | panoptic/pq | panoptic/sq |" and [line.split(" ")[1] for line in lines[2:]] == [
        "lr-high",
        "lr-low",
    ]
    assert (tmp_path / "runs" / "results.md").read_text() == markdown
    rows = list(csv.DictReader(open(tmp_path / "runs" / "results.csv")))
    assert all(row["panoptic/pq"] != "" for row in rows)
    done = json.loads((tmp_path / "runs" / "lr-low" / "done.json").read_text())
    assert "--model.optimizer.init_args.lr=1e-5" in done["args"]

    # Finished runs are not trained again; --collect-only only tabulates.
    stamp = (tmp_path / "runs" / "lr-low" / "done.json").stat().st_mtime_ns
    main(["grid", "--config", str(path), "--root", str(tmp_path / "runs"), "--collect-only"])
    assert run_grid(path, tmp_path / "runs", fast) == markdown
    assert (tmp_path / "runs" / "lr-low" / "done.json").stat().st_mtime_ns == stamp


def test_the_tiny_grid_names_every_tiny_ablation() -> None:
    grid = load_grid(ABLATIONS / "tiny_grid.yaml")
    named = {Path(c).name for run in grid.runs for c in run.configs}
    assert set(EXPECTED) <= named and {"tiny.yaml"} <= named
