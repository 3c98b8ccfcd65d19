"""Every recipe parses; every tiny recipe trains a few steps and evaluates through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import ParseOnly, small
from tests.conftest import ROOT
from zoo.cli import ZooCLI, recipe_layers
from zoo.runs import is_plan

# Curriculum and ablation-grid files are plans over recipes (tests/test_curriculum.py, tests/test_ablations.py).
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if "_base" not in p.parts and not is_plan(p))
TINY = [p for p in RECIPES if p.name.startswith("tiny")]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_recipe_parses(recipe: Path) -> None:
    cli = ParseOnly(args=["--config", str(recipe)], run=False)  # an ablation overlay brings its `# base:` recipes
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
    # The training set's size does not matter for 3 steps, and a mixture has no `num_images` to shrink.
    args = ["fit", "--config", str(recipe), *(a for a in small(tmp_path) if not a.startswith("--data.train."))]
    texts = [path.read_text() for path in recipe_layers([recipe])]  # what the CLI layers
    if any("init_from" in text for text in texts):
        args.append("--model.init_from=null")
    if any("ModelCheckpoint" in text for text in texts):  # keep the stage's checkpoints out of the repository
        args.append(f"--trainer.callbacks.dirpath={tmp_path / 'checkpoints'}")
    cli = ZooCLI(args=args)
    assert cli.trainer.global_step == 3
    results = json.loads((Path(cli.trainer.log_dir) / "results.json").read_text())
    tasks = set(cli.datamodule.train.sample_tasks) - {"caption"}
    reported = {group.partition("/")[0] for group in results["metrics"]}  # "task[/benchmark]"
    assert tasks <= reported, f"results.json lacks {tasks - reported}"
