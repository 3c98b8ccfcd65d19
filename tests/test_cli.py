"""The `zoo` command: listing components, and one clear error for each kind of bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import ParseOnly
from tests.conftest import TINY_RECIPE
from zoo import registry
from zoo.cli import list_components, main
from zoo.data import SyntheticSegmentation, read_image


def test_zoo_list_prints_every_component_with_a_description() -> None:
    text = list_components()
    for kind, table in registry.components().items():
        assert f"{kind}:" in text
        for name, cls in table.items():
            assert registry.describe(cls), f"{name} needs a one-line docstring"
            assert f"{name}" in text and registry.describe(cls) in text
    assert list_components("encoder").splitlines()[0] == "encoder:"


def test_zoo_list_runs_as_a_command() -> None:
    out = subprocess.run([sys.executable, "-m", "zoo", "list", "mask_decoder"], capture_output=True, text=True)
    assert out.returncode == 0 and "Mask2FormerDecoder" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "zoo", "list", "mask_decodr"], capture_output=True, text=True)
    assert bad.returncode != 0 and "Did you mean 'mask_decoder'?" in bad.stderr


def test_unknown_component_name_suggests_the_right_one(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                "--config",
                str(TINY_RECIPE),
                "--model.net.mask_decoder.class_path=Mask2FormerDecodr",
                "--print_config",
            ]
        )
    err = capsys.readouterr().err
    assert "Mask2FormerDecodr" in err and "Did you mean 'Mask2FormerDecoder'?" in err


def test_registry_lookup_lists_candidates() -> None:
    with pytest.raises(KeyError, match="Did you mean .TimmEncoder.*Candidates: .*TimmEncoder"):
        registry.get("encoder", "TimEncoder")


def test_misspelled_recipe_key_fails_loudly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_RECIPE.read_text().replace("num_queries: 8", "num_querys: 8"))
    with pytest.raises(SystemExit):
        ParseOnly(args=["--config", str(bad)], run=False)
    assert "num_querys" in capsys.readouterr().err


def test_missing_weights_path_in_a_recipe_names_the_file(tmp_path: Path) -> None:
    from zoo.weights import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="init_from: checkpoint '.*stage1.ckpt' not found"):
        main(["fit", "--config", str(TINY_RECIPE), f"--model.init_from={tmp_path / 'stage1.ckpt'}"])


def test_unreadable_image_names_its_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="broken.png"):
        read_image(broken)


def test_bad_dataset_arguments_are_explained() -> None:
    with pytest.raises(ValueError, match="segmentation_of_cats"):
        SyntheticSegmentation(tasks=["segmentation_of_cats"])
