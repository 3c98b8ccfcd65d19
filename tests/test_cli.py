"""The `zoo` command: its subcommands, `# base:` overlays, listing components, and one clear error for each kind of
bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cli_helpers import ParseOnly
from tests.conftest import ROOT, TINY_RECIPE
from zoo import registry
from zoo.__main__ import LIGHTNING_COMMANDS, TOOLS, list_components, main
from zoo.cli import ZooCLI, with_bases
from zoo.data import SyntheticSegmentation, read_image

OVERLAY = ROOT / "recipes" / "ablations" / "tiny_psalm_dual_encoder.yaml"  # `# base: recipes/psalm/tiny.yaml`


def test_zoo_help_lists_every_subcommand() -> None:
    assert set(LIGHTNING_COMMANDS) == set(ZooCLI.subcommands())  # the overview misses none of LightningCLI's
    out = subprocess.run([sys.executable, "-m", "zoo", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    listed = [line.split()[0] for line in out.stdout.splitlines() if line.startswith("  ")]
    assert listed == ["fit", "validate", "test", "predict", "list", "data", "curriculum", "grid"]
    assert set(listed) == {*LIGHTNING_COMMANDS, *TOOLS}


def test_an_overlay_alone_prints_its_bases_config_without_warnings() -> None:
    """`zoo fit --config overlay` layers the overlay's `# base:` recipe first, and LightningCLI's warning about
    `args` given beside a command line is not printed (the CLI hands it the arguments with sys.argv cut)."""
    command = [sys.executable, "-m", "zoo", "fit", "--config", str(OVERLAY), "--print_config"]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "args parameter" not in out.stderr
    net = yaml.safe_load(out.stdout)["model"]["net"]["init_args"]
    assert net["encoder"]["class_path"].endswith("MultiEncoder")  # the overlay's
    assert net["mask_decoder"]["class_path"].endswith("Mask2FormerDecoder")  # the base's
    assert net["head"]["class_path"].endswith("ConditionHead")  # the base's


def test_an_overlay_alone_parses_like_its_base_layered_by_hand() -> None:
    def dump(*args: str) -> str:
        cli = ParseOnly(args=list(args), run=False)
        return cli.parser.dump(cli.config)

    alone = dump("--config", str(OVERLAY))
    assert alone == dump("--config", str(TINY_RECIPE), f"--config={OVERLAY}")  # the base given twice counts once
    assert alone != dump("--config", str(TINY_RECIPE))


def test_base_headers_put_each_base_first_once(tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    a, b, c, d = (tmp_path / "recipes" / f"{name}.yaml" for name in "abcd")
    a.write_text("trainer: {max_epochs: 1}\n")
    b.write_text("# B over A\n# base: recipes/a.yaml\ntrainer: {max_epochs: 2}\n")
    c.write_text("# base: recipes/b.yaml\n")
    d.write_text("# base: recipes/a.yaml recipes/c.yaml\n")  # a diamond: a is c's base too

    def configs(args: list[str]) -> list[str]:
        return [Path(arg).name for arg in args if arg.endswith(".yaml")]

    assert configs(with_bases(["fit", "--config", str(c)])) == ["a.yaml", "b.yaml", "c.yaml"]
    assert configs(with_bases(["-c", str(d)])) == ["a.yaml", "b.yaml", "c.yaml", "d.yaml"]
    by_hand = with_bases(["--config", str(a), f"--config={c}", "--trainer.max_epochs=3"])
    assert configs(by_hand) == ["a.yaml", "b.yaml", "c.yaml"] and by_hand.count("--config") == 3
    assert by_hand[-1] == "--trainer.max_epochs=3"
    inline = "trainer: {max_epochs: 4}"  # jsonargparse also takes a config as a YAML string
    assert with_bases(["--config", inline]) == ["--config", inline]


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
