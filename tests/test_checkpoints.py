"""Checkpoints you can trust: they stand alone, `init_from` never loads nothing silently, damaged files are named,
every fit keeps a `last.ckpt`, and a curriculum notices a stage whose definition or checkpoint changed."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from tests.cli_helpers import checkpoint_callback, small
from tests.conftest import ROOT, TINY_RECIPE
from zoo.cli import ZooCLI
from zoo.curriculum import run_curriculum
from zoo.runs import StageChangedError, sha256
from zoo.stages import InitFromError
from zoo.weights import UnreadableFileError

PSALM = ROOT / "recipes" / "psalm"
FAST = [
    "--trainer.limit_train_batches=2",
    "--trainer.max_epochs=1",
    "--trainer.check_val_every_n_epoch=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.val.init_args.num_images=2",
]


def fit(recipe: Path, tmp: Path, *extra: str) -> ZooCLI:
    """A two-step fit whose `last.ckpt` lands in `tmp/checkpoints`."""
    ckpt = [f"--trainer.callbacks.dirpath={tmp / 'checkpoints'}"] if "ModelCheckpoint" in recipe.read_text() else []
    ckpt = ckpt or checkpoint_callback(tmp)
    return ZooCLI(args=["fit", "--config", str(recipe), *small(tmp, 2), *ckpt, *extra])


@pytest.fixture(scope="module")
def stage1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last.ckpt of a two-step tiny PSALM stage 1."""
    tmp = tmp_path_factory.mktemp("stage1")
    fit(PSALM / "tiny_stage1.yaml", tmp)
    return tmp / "checkpoints" / "last.ckpt"


def build(recipe: Path, *extra: str) -> ZooCLI:
    return ZooCLI(args=["--config", str(recipe), *extra], run=False)


def test_a_checkpoint_stands_alone_once_the_stage_it_started_from_is_gone(tmp_path: Path, stage1: Path) -> None:
    previous = tmp_path / "previous.ckpt"
    previous.write_bytes(stage1.read_bytes())
    fit(PSALM / "tiny_stage2.yaml", tmp_path / "s2", f"--model.init_from={previous}")
    checkpoint = tmp_path / "s2" / "checkpoints" / "last.ckpt"
    assert "init_from" not in torch.load(checkpoint, weights_only=True)["hyper_parameters"]
    previous.unlink()
    # Neither the recipe's nor the command line's init_from is read when a checkpoint is restored.
    cli = ZooCLI(
        args=[
            "validate",
            "--config",
            str(PSALM / "tiny_stage2.yaml"),
            *small(tmp_path / "validate"),
            f"--model.init_from={previous}",
            f"--ckpt_path={checkpoint}",
        ]
    )
    assert "val_loss/caption" in cli.trainer.callback_metrics
    restored = torch.load(checkpoint, weights_only=True)["state_dict"]
    for k, v in cli.model.net.state_dict().items():
        assert torch.equal(v, restored[f"net.{k}"]), k
    predict = ZooCLI(
        args=[
            "predict",
            "--config",
            str(PSALM / "tiny_stage2.yaml"),
            "--trainer.limit_predict_batches=1",
            f"--trainer.default_root_dir={tmp_path / 'predict'}",
            "--trainer.enable_progress_bar=false",
            "--data.val.init_args.num_images=2",
            f"--ckpt_path={checkpoint}",
        ]
    )
    assert predict.trainer.state.finished


def test_init_from_a_bare_state_dict_loads_it(tmp_path: Path, stage1: Path) -> None:
    state = torch.load(stage1, weights_only=True)["state_dict"]
    bare = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    torch.save(bare, tmp_path / "bare.pt")
    net = build(PSALM / "tiny_stage2.yaml", f"--model.init_from={tmp_path / 'bare.pt'}").model.net.state_dict()
    shared = [k for k in bare if k in net and not k.startswith("head.")]
    assert any(k.startswith("encoder.") for k in shared)
    for k in shared:
        assert torch.equal(net[k], bare[k]), k


def test_init_from_that_loads_nothing_stops(tmp_path: Path) -> None:
    torch.save({"state_dict": {"model.layer.weight": torch.zeros(2)}}, tmp_path / "other.ckpt")
    with pytest.raises(InitFromError, match="loaded nothing"):
        build(TINY_RECIPE, f"--model.init_from={tmp_path / 'other.ckpt'}")


def test_init_from_that_leaves_a_frozen_part_at_random_init_stops_unless_expected(stage1: Path) -> None:
    """Stage 2 freezes all but the projector: without `init_missing_ok` the LM bridge it adds would be reported."""
    with pytest.raises(InitFromError, match="frozen parameters") as err:
        build(PSALM / "tiny_stage2.yaml", f"--model.init_from={stage1}", "--model.init_missing_ok=[]")
    assert "bridge.lm" in str(err.value) and "init_missing_ok" in str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "text"])
def test_a_damaged_file_is_named_in_one_line(tmp_path: Path, stage1: Path, damage: str) -> None:
    bad = tmp_path / "bad.ckpt"
    data = stage1.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"hello, not a checkpoint\n")
    with pytest.raises(UnreadableFileError) as err:
        build(TINY_RECIPE, f"--model.init_from={bad}")
    assert str(bad) in str(err.value) and "init_from" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UnreadableFileError, match="--ckpt_path") as err:
        ZooCLI(args=["validate", "--config", str(TINY_RECIPE), *small(tmp_path), f"--ckpt_path={bad}"])
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_a_fit_that_ends_between_validations_keeps_its_final_weights_in_last_ckpt(tmp_path: Path) -> None:
    """Validation after epoch 1 of 3 writes last.ckpt at step 4; the fit's final step 6 must replace it."""
    cli = fit(TINY_RECIPE, tmp_path, "--trainer.check_val_every_n_epoch=2", "--trainer.max_epochs=3")
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == cli.trainer.global_step == 6
    for k, v in cli.model.state_dict().items():
        assert torch.equal(last["state_dict"][k], v), k


def one_stage(tmp: Path) -> Path:
    plan = {"stages": [{"name": "only", "configs": [str(PSALM / "tiny_stage1.yaml")]}]}
    (tmp / "one.yaml").write_text(yaml.safe_dump(plan))
    return tmp / "one.yaml"


def test_a_finished_stage_records_its_definition_and_refuses_a_changed_or_damaged_rerun(tmp_path: Path) -> None:
    plan, root = one_stage(tmp_path), tmp_path / "runs"
    (record,) = run_curriculum(plan, root, FAST)
    folder, checkpoint = root / "only", Path(record["checkpoint"])
    assert record["checkpoint_sha256"] == sha256(checkpoint) and record["definition_sha256"]
    definition = yaml.safe_load((folder / "definition.yaml").read_text())
    assert definition["config"]["trainer"]["limit_train_batches"] == 2

    # A different definition is refused, naming what changed; the record is untouched.
    with pytest.raises(StageChangedError, match=r"definition changed.*trainer\.limit_train_batches.*--rerun-changed"):
        run_curriculum(plan, root, [*FAST, "--trainer.limit_train_batches=3"])
    assert json.loads((folder / "done.json").read_text()) == record

    # A damaged checkpoint of the finished stage is reported by its path.
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(StageChangedError, match=f"{checkpoint} is damaged"):
        run_curriculum(plan, root, FAST)

    # The flag reruns it from scratch, its old checkpoints set aside.
    (rerun,) = run_curriculum(plan, root, [*FAST, "--trainer.limit_train_batches=3"], rerun_changed=True)
    assert not rerun["resumed"] and rerun["global_step"] == 3 and (folder / "checkpoints.superseded").is_dir()
    assert rerun["definition_sha256"] != record["definition_sha256"]


def test_a_damaged_done_json_or_resume_checkpoint_reruns_the_stage_with_a_warning(tmp_path: Path) -> None:
    plan, root = one_stage(tmp_path), tmp_path / "runs"
    (record,) = run_curriculum(plan, root, FAST)
    done, checkpoint = root / "only" / "done.json", Path(record["checkpoint"])
    done.write_text("")
    with pytest.warns(UserWarning, match="done.json is unreadable"):
        (again,) = run_curriculum(plan, root, FAST)
    assert again["resumed"] and again["global_step"] == 2 and json.loads(done.read_text()) == again

    done.unlink()  # an interrupted stage whose last checkpoint was cut short starts over
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="last.ckpt is damaged"):
        (fresh,) = run_curriculum(plan, root, FAST)
    assert not fresh["resumed"] and fresh["global_step"] == 2 and (checkpoint.parent / "last.ckpt.damaged").is_file()


class PreemptAtStep(L.Callback):
    """Sends this process SIGTERM after training step 2, as a cluster preempting the job would."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == 2:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_preempted_stage_saves_and_the_rerun_resumes_it(tmp_path: Path) -> None:
    plan, root = one_stage(tmp_path), tmp_path / "runs"
    steps = [*FAST, "--trainer.limit_train_batches=4"]
    with pytest.raises(SystemExit):  # Lightning's SIGTERMException, after saving
        run_curriculum(plan, root, [*steps, f"--trainer.callbacks+={__name__}.PreemptAtStep"])
    last = root / "only" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 2 and not (root / "only" / "done.json").exists()
    (record,) = run_curriculum(plan, root, steps)
    assert record["resumed"] and record["global_step"] == 4
    (whole,) = run_curriculum(plan, tmp_path / "whole", steps)
    resumed = torch.load(record["checkpoint"], weights_only=True)["state_dict"]
    for k, v in torch.load(whole["checkpoint"], weights_only=True)["state_dict"].items():
        assert torch.allclose(resumed[k], v, atol=1e-6), k
