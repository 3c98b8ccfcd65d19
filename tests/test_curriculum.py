"""`zoo curriculum`: stages in order from the previous weights, configs beside checkpoints, resume after a crash."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import pytest
import yaml

from tests.cli_helpers import ParseOnly
from tests.conftest import ROOT
from zoo.__main__ import main
from zoo.curriculum import load_curriculum, run_curriculum

CURRICULA = sorted((ROOT / "recipes").rglob("*curriculum*.yaml"))
FAST = [  # every stage: 2 steps an epoch, a 2-image validation
    "--trainer.limit_train_batches=2",
    "--trainer.check_val_every_n_epoch=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.val.init_args.num_images=2",
]


class CrashAtEpoch(L.Callback):
    """Simulates a run dying at the start of `epoch` (after the previous epoch's checkpoint was written)."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("path", CURRICULA, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_every_curriculum_names_stages_whose_recipes_parse(path: Path) -> None:
    plan = load_curriculum(path)
    assert len(plan.stages) == 3
    for stage in plan.stages:
        args = [a for config in stage.configs for a in ("--config", config)]
        ParseOnly(args=[*args, *stage.args], run=False)


def tiny_xsam_curriculum(tmp: Path, crash: bool) -> Path:
    """The tiny X-SAM curriculum, stage 2 two epochs long (crashing at the second, if `crash`), the others one."""
    plan = yaml.safe_load((ROOT / "recipes/xsam/tiny_curriculum.yaml").read_text())
    for stage, epochs in zip(plan["stages"], (1, 2, 1), strict=True):
        stage["args"] = [f"--trainer.max_epochs={epochs}"]
    if crash:
        plan["stages"][1]["args"].append(f"--trainer.callbacks+={__name__}.CrashAtEpoch")
    path = tmp / ("crashing.yaml" if crash else "curriculum.yaml")
    path.write_text(yaml.safe_dump(plan))
    return path


def steps_logged(log_dir: Path) -> set[int]:
    rows = csv.DictReader(open(log_dir / "metrics.csv"))
    return {int(r["step"]) for r in rows if r.get("train/loss")}


def test_interrupted_curriculum_resumes_the_unfinished_stage_and_skips_finished_ones(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_curriculum(tiny_xsam_curriculum(tmp_path, crash=True), root, [*FAST, "--trainer.log_every_n_steps=1"])
    stage1, stage2, stage3 = (root / name for name in ("stage1_segmentor", "stage2_alignment", "stage3_mixed"))
    assert (stage1 / "done.json").is_file() and not (stage2 / "done.json").exists() and not stage3.exists()
    assert (stage2 / "checkpoints" / "last.ckpt").is_file()  # epoch 0 of stage 2 was saved before the crash
    stage1_checkpoint = (stage1 / "checkpoints" / "last.ckpt").stat().st_mtime_ns

    records = run_curriculum(
        tiny_xsam_curriculum(tmp_path, crash=False), root, [*FAST, "--trainer.log_every_n_steps=1"]
    )
    assert [r["stage"] for r in records] == ["stage1_segmentor", "stage2_alignment", "stage3_mixed"]
    assert (stage1 / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stage1_checkpoint  # skipped, not re-run
    assert records[1]["resumed"] and records[1]["global_step"] == 4  # 2 epochs x 2 steps in all
    assert steps_logged(Path(records[1]["log_dir"])) == {2, 3}  # the resumed run trained only epoch 1
    assert not records[2]["resumed"] and records[2]["global_step"] == 2

    # Each stage's resolved config sits beside its checkpoint and names the previous stage's weights only.
    for record, previous in zip(records, [None, *records[:-1]], strict=True):
        config = yaml.safe_load((Path(record["checkpoint"]).parent / "config.yaml").read_text())
        assert config["model"]["init_from"] == (previous["checkpoint"] if previous else None)
        assert config["trainer"]["default_root_dir"] == str(root / record["stage"])
    last_results = Path(records[2]["log_dir"]) / "results.json"
    assert records[2]["results"] and records[2]["results"] == json.loads(last_results.read_text())

    # Nothing left to do: a third run with the same definition only reads the records.
    again = run_curriculum(tiny_xsam_curriculum(tmp_path, crash=False), root, [*FAST, "--trainer.log_every_n_steps=1"])
    assert [json.dumps(r, sort_keys=True) for r in again] == [json.dumps(r, sort_keys=True) for r in records]


def test_the_command_line_runs_a_curriculum(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plan = {
        "stages": [{"name": "only", "configs": ["recipes/psalm/tiny_stage1.yaml"], "args": ["--trainer.max_epochs=1"]}]
    }
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(plan))
    main(["curriculum", "--config", str(tmp_path / "one.yaml"), "--root", str(tmp_path / "runs"), *FAST])
    assert (tmp_path / "runs" / "only" / "done.json").is_file()
    assert "only" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"stages": []}, "non-empty `stages`"),
        ({"stages": [{"name": "a", "configs": ["recipes/nope.yaml"]}]}, "nope.yaml"),
        ({"stages": [{"name": "a", "configs": ["recipes/psalm/tiny.yaml"]}] * 2}, "unique"),
        ({"stages": [{"name": "a", "configs": ["recipes/psalm/tiny.yaml"], "epochs": 3}]}, "unknown keys"),
    ],
)
def test_bad_curricula_are_refused_with_the_file_named(tmp_path: Path, plan: dict, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(plan))
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_curriculum(path)
