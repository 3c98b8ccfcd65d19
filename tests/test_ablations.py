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
from zoo.bridges import LLMQueries, SegAdd
from zoo.cli import ZooCLI, main
from zoo.connectors import SamConnector
from zoo.curriculum import recipe_layers
from zoo.encoders import MultiEncoder, TimmEncoder
from zoo.grid import comparison, load_grid, run_grid, to_csv, to_markdown
from zoo.heads import ConditionHead, CosineHead

ABLATIONS = ROOT / "recipes" / "ablations"
# What each tiny overlay must build: encoder, connector, bridge, head classes and the language model's family.
EXPECTED = {
    "tiny_psalm_dual_encoder.yaml": (MultiEncoder, SamConnector, LLMQueries, ConditionHead, "phi"),
    "tiny_xsam_llm_queries.yaml": (MultiEncoder, SamConnector, LLMQueries, ConditionHead, "phi3"),
    "tiny_psalm_qwen2.yaml": (TimmEncoder, type(None), LLMQueries, ConditionHead, "qwen2"),
    "tiny_xsam_qwen2.yaml": (MultiEncoder, SamConnector, SegAdd, CosineHead, "qwen2"),
}


def config_args(paths: list[Path]) -> list[str]:
    return [arg for path in recipe_layers(paths) for arg in ("--config", str(path))]


def flat(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: tree}


def test_the_cross_family_ablations_exist() -> None:
    assert set(EXPECTED) <= {p.name for p in ABLATIONS.glob("tiny_*.yaml")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_ablation_builds_the_swapped_parts_and_keeps_the_rest_of_its_base(name: str) -> None:
    overlay = ABLATIONS / name
    bases = recipe_layers([overlay])[:-1]
    assert bases, f"{name} declares no `# base:`"
    cli = ZooCLI(args=config_args([overlay]), run=False)
    net = cli.model.net
    encoder, connector, bridge, head, lm_family = EXPECTED[name]
    assert type(net.encoder) is encoder and type(net.connector) is connector
    assert type(net.bridge) is bridge and type(net.head) is head
    assert net.bridge.lm.model.config.model_type == lm_family

    # Every setting that differs from the base recipe lies under what the overlay writes: the keys it sets, and
    # everything below a part whose class it replaces.
    original = ParseOnly(args=config_args(bases[:1]), run=False)
    before = flat(yaml.safe_load(original.parser.dump(original.config)))
    after = flat(yaml.safe_load(cli.parser.dump(cli.config)))
    written = [k.replace(".init_args", "") for k in flat(yaml.safe_load(overlay.read_text()))]
    owners = [k.removesuffix(".class_path") for k in written]
    changed = {k.replace(".init_args", "") for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed and all(any(k == o or k.startswith(o + ".") for o in owners) for k in changed), sorted(changed)


RESULTS = {
    "a": {"referring": {"ciou": 0.5, "giou": 0.25}, "panoptic": {"pq": 0.123}, "epoch": 3, "step": 9},
    "b": {"referring": {"ciou": 0.4}, "interactive": {"miou": None}},
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
