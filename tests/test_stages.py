"""Stage hand-off (weights only, through `init_from`), trainable globs, learning-rate multipliers, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.cli_helpers import checkpoint_callback, logged_losses, small
from tests.conftest import ROOT
from zoo.cli import ZooCLI
from zoo.optim import WarmupCosine
from zoo.stages import param_groups, set_trainable

PSALM = ROOT / "recipes" / "psalm"


def fit(recipe: Path, tmp: Path, *extra: str, steps: int = 2) -> ZooCLI:
    """A short fit whose `last.ckpt` lands in `tmp/checkpoints` (overriding the recipe's folder if it has one)."""
    if "ModelCheckpoint" in recipe.read_text():
        ckpt = [f"--trainer.callbacks.dirpath={tmp / 'checkpoints'}"]
    else:
        ckpt = checkpoint_callback(tmp)
    return ZooCLI(args=["fit", "--config", str(recipe), *small(tmp, steps), *ckpt, *extra])


def test_curriculum_hands_weights_over_and_freezes_what_the_stage_says(tmp_path: Path) -> None:
    s1 = fit(PSALM / "tiny_stage1.yaml", tmp_path / "s1")
    ckpt1 = tmp_path / "s1" / "checkpoints" / "last.ckpt"
    s2 = ZooCLI(args=["--config", str(PSALM / "tiny_stage2.yaml"), f"--model.init_from={ckpt1}"], run=False)
    before = {k: v.clone() for k, v in s1.model.net.state_dict().items()}
    after = s2.model.net.state_dict()
    shared = [k for k in before if k in after and not k.startswith("head.")]
    assert any(k.startswith("mask_decoder.") for k in shared) and any(k.startswith("encoder.") for k in shared)
    for k in shared:
        assert torch.equal(before[k], after[k]), k
    trainable = {n for n, p in s2.model.net.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in s2.model.net.named_parameters() if n.startswith("bridge.projector.")}

    # Stage 2 trains only the projector: after a fit, everything else still equals stage 1 / its own init.
    s2 = fit(PSALM / "tiny_stage2.yaml", tmp_path / "s2", f"--model.init_from={ckpt1}")
    for k in shared:
        assert torch.equal(before[k], s2.model.net.state_dict()[k].cpu()), k

    # Stage 3 (the joint tiny recipe) starts from stage 2: the projector it trained is carried over.
    ckpt2 = tmp_path / "s2" / "checkpoints" / "last.ckpt"
    s3 = ZooCLI(args=["--config", str(PSALM / "tiny.yaml"), f"--model.init_from={ckpt2}"], run=False)
    for k, v in s2.model.net.state_dict().items():
        assert torch.equal(v, s3.model.net.state_dict()[k]), k


def test_trainable_globs_select_exactly_the_named_parameters() -> None:
    net = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2), "b": torch.nn.ModuleDict({"c": torch.nn.Linear(2, 2)})})
    trained, total = set_trainable(net, ["b.c.weight", "a.*"])
    assert {n for n, p in net.named_parameters() if p.requires_grad} == {"a.weight", "a.bias", "b.c.weight"}
    assert (trained, total) == (10, 12)
    with pytest.raises(ValueError, match="matches no parameter"):
        set_trainable(net, ["decoder.*"])


def test_lr_multipliers_scale_the_groups(tmp_path: Path) -> None:
    cli = ZooCLI(
        args=[
            "fit",
            "--config",
            str(PSALM / "tiny.yaml"),
            *small(tmp_path, 1),
            "--model.lr_multipliers",
            '{"encoder.*": 0.1}',
        ],
    )
    lrs = {round(g["lr_mult"], 3): g for g in cli.trainer.optimizers[0].param_groups}
    encoder_ids = {id(p) for p in cli.model.net.encoder.parameters()}
    assert {id(p) for p in lrs[0.1]["params"]} == encoder_ids
    assert lrs[0.1]["initial_lr"] == pytest.approx(0.1 * lrs[1.0]["initial_lr"])
    groups = param_groups(cli.model.net, {"head.*": 2.0})
    assert sorted(g["lr_mult"] for g in groups) == [1.0, 2.0]


def test_resume_continues_with_the_same_losses(tmp_path: Path) -> None:
    keep_all = ["--trainer.callbacks.save_top_k=-1", "--trainer.callbacks.filename=epoch{epoch}"]
    whole = fit(PSALM / "tiny.yaml", tmp_path / "whole", "--trainer.max_epochs=2", *keep_all, steps=3)
    interrupted_at = tmp_path / "whole" / "checkpoints" / "epochepoch=0.ckpt"  # as if the run died after epoch 0
    resumed = fit(
        PSALM / "tiny.yaml", tmp_path / "resumed", "--trainer.max_epochs=2", f"--ckpt_path={interrupted_at}", steps=3
    )
    assert resumed.trainer.global_step == whole.trainer.global_step == 6
    expected = logged_losses(Path(whole.trainer.log_dir))
    got = logged_losses(Path(resumed.trainer.log_dir))
    assert set(got) == {3, 4, 5}
    for step in got:
        assert got[step] == pytest.approx(expected[step], rel=1e-5), step


def test_lora_from_the_recipe_with_trainable_globs_on_the_adapters() -> None:
    lm = "--model.net.init_args.bridge.init_args.language_model.init_args"
    cli = ZooCLI(
        args=[
            "--config",
            str(PSALM / "tiny.yaml"),
            f"{lm}.lora={{r: 4, alpha: 8}}",
            '--model.trainable=["bridge.lm.*lora_*", "mask_decoder.*"]',
        ],
        run=False,
    )
    trainable = [n for n, p in cli.model.net.named_parameters() if p.requires_grad]
    lora = [n for n in trainable if n.startswith("bridge.lm.")]
    assert lora and all("lora_" in n for n in lora)
    assert {n for n in trainable if not n.startswith("bridge.lm.")} == {
        n for n, _ in cli.model.net.named_parameters() if n.startswith("mask_decoder.")
    }


def test_warmup_cosine_follows_the_trainers_step_count() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = WarmupCosine(optimizer, warmup_ratio=0.1, min_ratio=0.2)
    schedule.set_total_steps(110)  # 11 warm-up steps, then 99 of cosine
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2.0 / 11)  # step 0 of the warm-up
    # cos(pi * 49.5 / 99) = 0: halfway down from 1 to min_ratio.
    assert [schedule._factor(s) for s in (10, 11, 60.5, 110)] == pytest.approx([1.0, 1.0, 0.6, 0.2])
