"""Every recipe parses; every tiny recipe trains a few steps and evaluates through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import ParseOnly, small
from tests.conftest import ROOT
from zoo.cli import ZooCLI

RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if "_base" not in p.parts)
TINY = [p for p in RECIPES if p.name.startswith("tiny")]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_recipe_parses(recipe: Path) -> None:
    cli = ParseOnly(args=["--config", str(recipe)], run=False)
    assert cli.config.model.net.init_args.encoder.class_path.endswith("Encoder")


def test_base_layers_over_a_recipe() -> None:
    cli = ParseOnly(
        args=[
            "--config",
            str(ROOT / "recipes/_base/trainer_gpu.yaml"),
            "--config",
            str(ROOT / "recipes/psalm/stage3.yaml"),
        ],
        run=False,
    )
    assert cli.config.trainer.precision == "bf16-mixed"


def test_every_family_has_a_tiny_recipe() -> None:
    families = {p.parent.name for p in RECIPES}
    assert families <= {p.parent.name for p in TINY}


@pytest.mark.parametrize("recipe", TINY, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_tiny_recipe_trains_and_evaluates(recipe: Path, tmp_path: Path) -> None:
    args = ["fit", "--config", str(recipe), *small(tmp_path)]
    if "init_from" in recipe.read_text():
        args.append("--model.init_from=null")
    cli = ZooCLI(args=args)
    assert cli.trainer.global_step == 3
    results = json.loads((Path(cli.trainer.log_dir) / "results.json").read_text())
    tasks = set(cli.datamodule.train.sample_tasks) - {"caption"}
    assert tasks <= set(results), f"results.json lacks {tasks - set(results)}"
